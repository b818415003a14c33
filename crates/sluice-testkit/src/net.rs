//! Loopback ports and minimal HTTP/1.1 GETs over `std::net`, for readiness probes that must not
//! depend on an async runtime.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral loopback port")
        .port()
}

/// A GET with `Connection: close`, the request already sent.
fn get(port: u16, path: &str) -> Option<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    Some(s)
}

/// Status code of `GET path` on 127.0.0.1:`port`, or None when nothing answers.
pub fn http_get_status(port: u16, path: &str) -> Option<u16> {
    let mut s = get(port, path)?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let head = std::str::from_utf8(&buf[..n]).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

/// Body of `GET path` on 127.0.0.1:`port` (read until the server closes), or None on any
/// failure. Not for chunked answers that need decoding; fine for `contains` checks.
pub fn http_get_body(port: u16, path: &str) -> Option<String> {
    let mut raw = String::new();
    get(port, path)?.read_to_string(&mut raw).ok()?;
    raw.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

//! Loopback ports and minimal HTTP/1.1 GETs over `std::net`, for readiness probes that must not
//! depend on an async runtime.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

/// A loopback port nobody listens on right now, and never handed out before by this process.
///
/// The kernel may give a port it just released to the next `bind(0)`, so two tests of one
/// binary starting servers at once could both get it: one server then fails to bind, and its
/// test talks to the other test's server until that one stops (a flaky failure seen in CI).
/// Remembering the ports given out rules that out within a test binary.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind an ephemeral loopback port")
            .port();
        // A poisoned lock only means another test panicked mid-insert; the set is whole.
        if GIVEN.lock().unwrap_or_else(|p| p.into_inner()).insert(port) {
            return port;
        }
    }
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

/// Body of `GET path` on 127.0.0.1:`port` with a chunked transfer encoding undone (Go servers
/// such as Jaeger's stream large answers in chunks), or None on any failure.
pub fn http_get_decoded(port: u16, path: &str) -> Option<String> {
    let mut raw = Vec::new();
    get(port, path)?.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let body = &raw[split + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return String::from_utf8(body.to_vec()).ok();
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return String::from_utf8(out).ok();
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_chunked_answer_is_decoded() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // Read the whole request first: closing a socket with unread input resets it.
            let mut req = Vec::new();
            let mut buf = [0u8; 256];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n",
            );
        });
        assert_eq!(http_get_decoded(port, "/").as_deref(), Some("{\"a\":1}"));
    }
}

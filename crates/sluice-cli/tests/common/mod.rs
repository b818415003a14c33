//! Helpers shared by the integration tests: locating and running a real `sluice-server` on a
//! free loopback port, killed when the handle drops.

#![allow(dead_code)]

pub use sluice_testkit::{free_port, http_get_status};

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `target/<profile>/` of this test binary (tests live in `target/<profile>/deps/`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

/// The `sluice-server` binary: $SLUICE_SERVER_BIN, else next to this build's binaries
/// (which honours CARGO_TARGET_DIR because the test itself was built there).
pub fn server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SLUICE_SERVER_BIN") {
        return PathBuf::from(p);
    }
    let candidate = profile_dir().join(format!("sluice-server{}", std::env::consts::EXE_SUFFIX));
    assert!(
        candidate.is_file(),
        "sluice-server not found at {}: run `cargo build -p sluice-server` first (or set SLUICE_SERVER_BIN)",
        candidate.display()
    );
    candidate
}

/// A running tiny-model server; killed on drop so a failing test never leaks it.
pub struct Server {
    child: Child,
    pub port: u16,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        Self::start_with_env(extra, &[])
    }

    /// Like [`Server::start`] with extra environment variables (e.g. `OTEL_*`).
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let child = Command::new(server_bin())
            .args(["--model", "builtin:tiny", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .args(extra)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sluice-server");
        let mut server = Server { child, port };
        server.wait_ready(Duration::from_secs(120));
        server
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn wait_ready(&mut self, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sluice-server exited before it was ready: {status}");
            }
            if http_get_status(self.port, "/ready") == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "sluice-server on port {} not ready after {limit:?}",
            self.port
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! A real Jaeger (v2 all-in-one, built from its Go module by `scripts/build-jaeger.sh`) on free
//! loopback ports with in-memory storage: an OTLP/HTTP receiver the code under test exports to,
//! and the query API (`/api/traces`, `/api/services`) tests read the spans back through.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::net::{free_port, http_get_decoded, http_get_status};
use crate::proc::Proc;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `jaeger` binary: `SLUICE_JAEGER_BIN`, else what `scripts/build-jaeger.sh` built (it
/// builds on first use, several minutes cold; `scripts/install-deps.sh` runs it ahead).
pub fn jaeger_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SLUICE_JAEGER_BIN") {
        return PathBuf::from(p);
    }
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/build-jaeger.sh"))
        .output()
        .expect("run scripts/build-jaeger.sh");
    assert!(
        out.status.success(),
        "scripts/build-jaeger.sh failed (it needs Go and the Go module proxy):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let bin = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    assert!(bin.is_file(), "scripts/build-jaeger.sh printed {stdout:?}");
    bin
}

/// Jaeger all-in-one; killed on drop.
pub struct Jaeger {
    proc: Proc,
    otlp_http: u16,
    query: u16,
    _dir: TempDir,
}

impl Jaeger {
    /// Starts Jaeger with `scripts/jaeger-allinone.yaml` on free ports and waits (up to 60 s)
    /// until its health check and its query API answer.
    pub fn start() -> Self {
        let bin = jaeger_binary();
        let dir = tempfile::tempdir().expect("temp dir");
        let (otlp_http, otlp_grpc, query, query_grpc, health) = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        let mut cmd = Command::new(bin);
        cmd.arg("--config")
            .arg(repo_root().join("scripts/jaeger-allinone.yaml"))
            .env("JAEGER_OTLP_HTTP_PORT", otlp_http.to_string())
            .env("JAEGER_OTLP_GRPC_PORT", otlp_grpc.to_string())
            .env("JAEGER_QUERY_HTTP_PORT", query.to_string())
            .env("JAEGER_QUERY_GRPC_PORT", query_grpc.to_string())
            .env("JAEGER_HEALTH_PORT", health.to_string())
            .current_dir(dir.path());
        let proc = Proc::spawn(cmd, dir.path().join("jaeger.log"));
        let mut jaeger = Self {
            proc,
            otlp_http,
            query,
            _dir: dir,
        };
        let start = Instant::now();
        loop {
            let healthy = http_get_status(health, "/status") == Some(200);
            if healthy && http_get_status(query, "/api/services") == Some(200) {
                return jaeger;
            }
            if let Some(status) = jaeger.proc.exited() {
                panic!("jaeger exited with {status}:\n{}", jaeger.proc.log_tail());
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "jaeger not ready within 60 s:\n{}",
                jaeger.proc.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The OTLP/HTTP endpoint, as `OTEL_EXPORTER_OTLP_ENDPOINT` takes it (the SDK appends
    /// `/v1/traces`).
    pub fn otlp_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.otlp_http)
    }

    /// The query API's base URL (what `sluice analyze --jaeger` takes).
    pub fn query_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.query)
    }

    /// The body of `GET path` on the query API (e.g. `/api/traces?service=x`), de-chunked, or
    /// None.
    pub fn get(&self, path: &str) -> Option<String> {
        http_get_decoded(self.query, path)
    }

    /// Waits until `GET path` on the query API returns a body for which `done` holds, and
    /// returns it; panics with the last answer and Jaeger's log after `timeout`. Span export is
    /// batched by the SDK (up to 5 s), so tests wait on the spans, never for a fixed time.
    pub fn wait_for(&self, path: &str, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < timeout {
            if let Some(body) = self.get(path) {
                if done(&body) {
                    return body;
                }
                last = body;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "jaeger never answered {path} as expected within {timeout:?}; last answer: {}\n{}",
            last.chars().take(2000).collect::<String>(),
            self.proc.log_tail()
        );
    }

    /// The tail of Jaeger's own log.
    pub fn log_tail(&self) -> String {
        self.proc.log_tail()
    }
}

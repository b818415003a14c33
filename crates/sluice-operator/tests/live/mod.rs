//! Real processes for live tests: `sluice-server` and Prometheus on free loopback ports (killed
//! on drop), and a small closed-loop streaming load client that measures TTFT itself.

#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use sluice_testkit::{Proc, ScrapeTarget, free_port};
use tempfile::TempDir;

/// Seconds since the epoch.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Nearest-rank percentile of `v` (`q` in 0..1).
pub fn percentile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("workspace root above crates/sluice-operator")
        .to_path_buf()
}

/// The `sluice-server` binary: `SLUICE_SERVER_BIN`, else `$CARGO_TARGET_DIR/debug`, else the
/// workspace's `target/debug`; built with `cargo build -p sluice-server` when missing.
pub fn server_binary() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_SERVER_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "SLUICE_SERVER_BIN={} is not a file",
            p.display()
        );
        return p;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                workspace_root().join(p)
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"));
    let bin = target.join("debug").join("sluice-server");
    if !bin.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "sluice-server"])
            .current_dir(workspace_root())
            .status()
            .expect("failed to run cargo build -p sluice-server");
        assert!(status.success(), "cargo build -p sluice-server failed");
    }
    assert!(
        bin.is_file(),
        "sluice-server binary not found at {}; run `cargo build -p sluice-server` or set SLUICE_SERVER_BIN",
        bin.display()
    );
    bin
}

async fn wait_http_ok(proc: &mut Proc, url: &str, what: &str, timeout: Duration) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = proc.exited() {
            panic!("{what} exited with {status}:\n{}", proc.log_tail());
        }
        if let Ok(r) = http.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not ready at {url} within {timeout:?}:\n{}",
            proc.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A `sluice-server --model builtin:tiny` on a free loopback port.
pub struct Server {
    proc: Proc,
    url: String,
    port: u16,
    _dir: TempDir,
}

impl Server {
    /// Starts the server with extra flags and waits for `/ready`.
    pub async fn start(bin: &Path, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.args(["--model", "builtin:tiny", "--host", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .args(extra)
            .env_remove("SLUICE_API_KEY")
            .env("RUST_LOG", "warn");
        let mut proc = Proc::spawn(cmd, dir.path().join("server.log"));
        let url = format!("http://127.0.0.1:{port}");
        wait_http_ok(
            &mut proc,
            &format!("{url}/ready"),
            "sluice-server",
            Duration::from_secs(60),
        )
        .await;
        Self {
            proc,
            url,
            port,
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `127.0.0.1:PORT`, a Prometheus target.
    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's `/metrics` page.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.url))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        self.proc.exited().is_none()
    }
}

/// Prometheus scraping the given servers every second, each under `namespace` and a `pod` label.
pub struct Prometheus {
    inner: sluice_testkit::Prometheus,
}

impl Prometheus {
    /// Starts Prometheus on a free loopback port and waits for `/-/ready`.
    pub async fn start(targets: &[(&Server, &str)], namespace: &str) -> Self {
        let targets: Vec<ScrapeTarget> = targets
            .iter()
            .map(|(server, pod)| ScrapeTarget::pod(server.target(), namespace, pod))
            .collect();
        // Starting blocks for a second or two; nothing else runs on this test's runtime yet.
        Self {
            inner: tokio::task::block_in_place(|| sluice_testkit::Prometheus::start(&targets)),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.inner.url()
    }

    /// Waits until `n` targets report `up`.
    pub async fn wait_targets_up(&self, n: usize, timeout: Duration) {
        tokio::task::block_in_place(|| self.inner.wait_targets_up(n, timeout));
    }
}

/// Shape of a closed-loop load.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Concurrent clients, each sending its next request when the last one finished.
    pub clients: usize,
    /// `max_tokens` of each request (with `ignore_eos`, so generations are that long).
    pub max_tokens: u32,
    /// The prompt.
    pub prompt: &'static str,
}

/// What the clients measured.
#[derive(Debug, Default)]
pub struct LoadStats {
    /// Client-side TTFT of every completed request, seconds.
    pub ttft: Vec<f64>,
    /// Completed requests.
    pub ok: usize,
    /// Failed requests (transport errors, non-2xx, `event: error`).
    pub errors: usize,
    /// A few failure messages.
    pub error_samples: Vec<String>,
}

/// A running load.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<LoadStats>>,
}

impl Load {
    /// Starts `spec.clients` streaming clients against `base_url`.
    pub fn start(base_url: &str, spec: LoadSpec) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(spec.clients)
            .build()
            .expect("http client");
        let tasks = (0..spec.clients)
            .map(|_| {
                let (stop, http, spec) = (stop.clone(), http.clone(), spec.clone());
                let url = format!("{base_url}/generate/stream");
                tokio::spawn(async move {
                    let mut stats = LoadStats::default();
                    while !stop.load(Ordering::SeqCst) {
                        match one_request(&http, &url, &spec).await {
                            Ok(ttft) => {
                                stats.ok += 1;
                                stats.ttft.push(ttft);
                            }
                            Err(e) => {
                                stats.errors += 1;
                                if stats.error_samples.len() < 5 {
                                    stats.error_samples.push(e);
                                }
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    }
                    stats
                })
            })
            .collect();
        Self { stop, tasks }
    }

    /// Lets every client finish its current request and merges what they measured.
    pub async fn stop(self) -> LoadStats {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = LoadStats::default();
        for t in self.tasks {
            let s = t.await.expect("load client task");
            all.ttft.extend(s.ttft);
            all.ok += s.ok;
            all.errors += s.errors;
            all.error_samples.extend(s.error_samples);
        }
        all
    }
}

/// One streamed request; returns the time from sending it to the first `token` event.
async fn one_request(http: &reqwest::Client, url: &str, spec: &LoadSpec) -> Result<f64, String> {
    let body = serde_json::json!({
        "prompt": spec.prompt, "max_tokens": spec.max_tokens, "ignore_eos": true,
    });
    let sent = Instant::now();
    let resp = http
        .post(url)
        .json(&body)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .map_err(|e| format!("send: {e}"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        return Err(format!(
            "HTTP {status}: {}",
            resp.text().await.unwrap_or_default()
        ));
    }
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut ttft = None;
    let mut done = false;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("stream: {e}"))?;
        buf.push_str(&String::from_utf8_lossy(&chunk));
        if ttft.is_none() && buf.contains("event: token") {
            ttft = Some(sent.elapsed().as_secs_f64());
        }
        if buf.contains("event: error") {
            return Err(format!("event: error in {buf}"));
        }
        done |= buf.contains("event: done");
        // Only the tail can still hold a partial event name.
        if buf.len() > 64 && ttft.is_some() {
            let mut cut = buf.len() - 32;
            while !buf.is_char_boundary(cut) {
                cut += 1;
            }
            buf.drain(..cut);
        }
    }
    if !done {
        return Err("stream ended before `event: done`".into());
    }
    ttft.ok_or_else(|| "no token event".into())
}

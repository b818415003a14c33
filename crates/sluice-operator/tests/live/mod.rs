//! Real processes for live tests: `sluice-server` and Prometheus on free loopback ports (killed
//! on drop), and a small closed-loop streaming load client that measures TTFT itself.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
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

/// The `prometheus` binary: `SLUICE_PROMETHEUS_BIN`, else PATH, else `/usr/bin/prometheus`.
pub fn prometheus_binary() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_PROMETHEUS_BIN") {
        return PathBuf::from(p);
    }
    let from_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("prometheus"))
            .find(|p| p.is_file())
    });
    let bin = from_path.unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"));
    assert!(
        bin.is_file(),
        "prometheus not found on PATH or at /usr/bin/prometheus: install it with \
         scripts/install-deps.sh (Debian package `prometheus`) or set SLUICE_PROMETHEUS_BIN"
    );
    bin
}

/// A child process killed (and reaped) on drop; its output goes to a log file shown on failure.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(mut cmd: Command, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {cmd:?}: {e}"));
        Self { child, log }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut start = text.len().saturating_sub(4000);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text[start..].to_owned()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.log.display(), self.log_tail());
        }
    }
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
    proc: Proc,
    url: String,
    _dir: TempDir,
}

impl Prometheus {
    /// Writes the config, starts Prometheus on a free loopback port and waits for `/-/ready`.
    pub async fn start(targets: &[(&Server, &str)], namespace: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cfg = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for (server, pod) in targets {
            cfg.push_str(&format!(
                "  - job_name: {pod}\n    static_configs:\n      - targets: ['{}']\n        labels:\n          namespace: {namespace}\n          pod: {pod}\n",
                server.target()
            ));
        }
        let cfg_path = dir.path().join("prometheus.yml");
        std::fs::write(&cfg_path, cfg).expect("write prometheus.yml");
        let port = free_port();
        let mut cmd = Command::new(prometheus_binary());
        cmd.arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // The Debian build looks for its console templates under /etc; none are needed.
            .arg(format!(
                "--web.console.templates={}",
                dir.path().join("consoles").display()
            ))
            .arg(format!(
                "--web.console.libraries={}",
                dir.path().join("console_libraries").display()
            ))
            .current_dir(dir.path());
        let mut proc = Proc::spawn(cmd, dir.path().join("prometheus.log"));
        let url = format!("http://127.0.0.1:{port}");
        wait_http_ok(
            &mut proc,
            &format!("{url}/-/ready"),
            "prometheus",
            Duration::from_secs(60),
        )
        .await;
        Self {
            proc,
            url,
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Waits until `n` targets report `up`.
    pub async fn wait_targets_up(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = serde_json::Value::Null;
        while Instant::now() < deadline {
            if let Ok(r) = reqwest::get(format!("{}/api/v1/targets", self.url)).await
                && let Ok(v) = r.json::<serde_json::Value>().await
            {
                let up = v["data"]["activeTargets"]
                    .as_array()
                    .map(|a| a.iter().filter(|t| t["health"] == "up").count())
                    .unwrap_or(0);
                if up >= n {
                    return;
                }
                last = v;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "prometheus targets not up within {timeout:?}: {last}\n{}",
            self.proc.log_tail()
        );
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

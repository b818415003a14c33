//! Helpers shared by the HTTP tests: an in-process server on a loopback port with the real tiny
//! model, SSE parsing and metric reading.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_server::engine::{Engine, EngineModel, Limits};
use sluice_server::http::listen::{self, ListenConfig};
use sluice_server::http::{AppState, HttpConfig, router};
use sluice_server::metrics::Metrics;
use sluice_server::model::quant::QuantizationFlag;
use sluice_server::model::tiny::TinyShape;
use sluice_server::model::{LoadSpec, ModelSource, load};

pub struct Opts {
    pub max_tokens: usize,
    pub max_concurrent: usize,
    pub max_batch: usize,
    pub api_key: Option<String>,
    pub admin_key: Option<String>,
    pub budget: u64,
    pub timeout: Duration,
    pub source: ModelSource,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            max_tokens: 64,
            max_concurrent: 64,
            max_batch: 16,
            api_key: None,
            admin_key: None,
            budget: 1 << 34,
            timeout: Duration::from_secs(60),
            source: ModelSource::Builtin(TinyShape::Tiny),
        }
    }
}

pub struct Server {
    pub url: String,
    pub state: AppState,
}

pub async fn start(opts: Opts) -> Server {
    let spec = LoadSpec {
        source: opts.source.clone(),
        quantization: QuantizationFlag::Auto,
        device: candle_core::Device::Cpu,
        served_name: None,
        hf_home: None,
        kv_cache: Default::default(),
    };
    let loaded = tokio::task::spawn_blocking(move || load(&spec))
        .await
        .unwrap()
        .unwrap();
    let engine = Engine::start(
        Some(EngineModel::serve(loaded)),
        Limits::new(opts.max_tokens, opts.max_concurrent, opts.max_batch),
        Metrics::new(),
        opts.budget,
    );
    let state = AppState::new(
        engine,
        HttpConfig {
            api_key: opts.api_key,
            admin_key: opts.admin_key,
            request_timeout: opts.timeout,
            body_read_timeout: Duration::from_secs(30),
            device: candle_core::Device::Cpu,
            hf_home: None,
            model_root: None,
            default_quantization: QuantizationFlag::Auto,
            kv_cache: Default::default(),
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = router(state.clone());
    let config = ListenConfig {
        header_read_timeout: Duration::from_secs(30),
        max_connections: 1024,
        drain_delay: Duration::ZERO,
        drain_timeout: Duration::from_secs(30),
    };
    tokio::spawn(async move {
        listen::serve(listener, app, &config, None, std::future::pending(), || {}).await
    });
    Server { url, state }
}

/// `/health` answers 200 and a short generation succeeds (with `key` when the server has one).
pub async fn assert_serving(s: &Server, key: Option<&str>) {
    let health = client()
        .get(format!("{}/health", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let mut req = client()
        .post(format!("{}/generate", s.url))
        .json(&serde_json::json!({"prompt": "still serving", "max_tokens": 2}));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    assert_eq!(status, 200, "{}", r.text().await.unwrap_or_default());
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

pub async fn post(url: &str, body: Value) -> (u16, Value) {
    let resp = client().post(url).json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Reads an SSE body into (event name, data) pairs.
pub async fn sse(resp: reqwest::Response) -> Vec<(String, String)> {
    let text = resp.text().await.unwrap();
    parse_sse(&text)
}

pub fn parse_sse(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut event = String::from("message");
        let mut data = Vec::new();
        for line in block.lines() {
            if let Some(e) = line.strip_prefix("event:") {
                event = e.trim().to_string();
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push(d.strip_prefix(' ').unwrap_or(d).to_string());
            }
        }
        if !data.is_empty() {
            out.push((event, data.join("\n")));
        }
    }
    out
}

/// The server's `/metrics` page.
pub async fn metrics_text(base: &str) -> String {
    client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of one sample line (`name{labels}` exactly as exposed).
pub async fn metric(base: &str, series: &str) -> f64 {
    let text = metrics_text(base).await;
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(|v| v.trim().parse::<f64>().unwrap())
        })
        .unwrap_or_else(|| panic!("metric {series} not found"))
}

pub use sluice_testkit::free_port;

pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the real binary on the tiny model with `extra` flags and `env`, waiting until ready.
pub async fn spawn(extra: &[&str], env: &[(&str, &str)]) -> (Proc, String) {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice-server"));
    cmd.args([
        "--model",
        "builtin:tiny",
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
    ])
    .args(extra)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = Proc(cmd.spawn().unwrap());
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // A server that could not start (its port taken, a bad flag) must not leave the test
        // talking to whatever else answers there.
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("sluice-server {extra:?} exited before it was ready: {status}");
        }
        if let Ok(r) = client().get(format!("{url}/ready")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "server did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, url)
}

pub fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

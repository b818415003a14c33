//! Helpers shared by the HTTP tests: an in-process server on a loopback port with the real tiny
//! model, SSE parsing and metric reading.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::Value;
use sluice_server::engine::{Engine, EngineModel, Limits};
use sluice_server::http::{AppState, HttpConfig, router};
use sluice_server::metrics::Metrics;
use sluice_server::model::quant::Quantization;
use sluice_server::model::tiny::TinyShape;
use sluice_server::model::{LoadSpec, ModelSource, load};

pub struct Opts {
    pub max_tokens: usize,
    pub max_concurrent: usize,
    pub max_batch: usize,
    pub api_key: Option<String>,
    pub budget: u64,
    pub timeout: Duration,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            max_tokens: 64,
            max_concurrent: 64,
            max_batch: 16,
            api_key: None,
            budget: 1 << 34,
            timeout: Duration::from_secs(60),
        }
    }
}

pub struct Server {
    pub url: String,
    pub state: AppState,
}

pub async fn start(opts: Opts) -> Server {
    let spec = LoadSpec {
        source: ModelSource::Builtin(TinyShape::Tiny),
        quantization: Quantization::Auto,
        device: candle_core::Device::Cpu,
        served_name: None,
        hf_home: None,
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
            request_timeout: opts.timeout,
            device: candle_core::Device::Cpu,
            hf_home: None,
            default_quantization: Quantization::Auto,
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = router(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { url, state }
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

/// The value of one sample line (`name{labels}` exactly as exposed).
pub async fn metric(base: &str, series: &str) -> f64 {
    let text = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(|v| v.trim().parse::<f64>().unwrap())
        })
        .unwrap_or_else(|| panic!("metric {series} not found"))
}

//! The real binary as a process: flags and environment variables, SIGTERM draining, and a
//! non-streaming client that disconnects.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{client, metric, sigterm, spawn};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_cleanly() {
    let (mut proc, url) = spawn(&["--max-tokens", "4000", "--drain-timeout", "30s"], &[]).await;
    let inflight = tokio::spawn({
        let url = url.clone();
        async move {
            client()
                .post(format!("{url}/generate"))
                .json(&json!({"prompt": "drain me", "max_tokens": 600, "ignore_eos": true}))
                .send()
                .await
                .unwrap()
        }
    });
    // Wait until the request is running, then ask the server to stop.
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&url, "llm_running_sequences").await < 1.0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sigterm(&proc.0);
    let resp = inflight.await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        v["generated_tokens"], 600,
        "the in-flight request finished in full"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = proc.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "server did not exit after draining"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
    assert!(
        client().get(format!("{url}/health")).send().await.is_err(),
        "no longer listening"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_vars_configure_the_server_and_a_dropped_connection_frees_its_slot() {
    let (_proc, url) = spawn(
        &[],
        &[
            ("SLUICE_MAX_CONCURRENT_REQUESTS", "1"),
            ("SLUICE_MAX_TOKENS", "5000"),
            ("SLUICE_MAX_BATCH_SIZE", "1"),
        ],
    )
    .await;
    let limits: serde_json::Value = client()
        .get(format!("{url}/admin/limits"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(limits["max_concurrent_requests"], 1);
    assert_eq!(limits["max_tokens"], 5000);
    // A raw non-streaming request, abandoned mid-generation.
    let addr = url.trim_start_matches("http://").to_string();
    let body = json!({"prompt": "abandon", "max_tokens": 4000, "ignore_eos": true}).to_string();
    let mut sock = TcpStream::connect(&addr).unwrap();
    write!(sock, "POST /generate HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&url, "llm_running_sequences").await < 1.0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(sock);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = client()
            .post(format!("{url}/generate"))
            .json(&json!({"prompt": "x", "max_tokens": 1}))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 429);
        assert!(
            Instant::now() < deadline,
            "the abandoned request kept its slot"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        metric(&url, "llm_requests_total{status=\"cancelled\"}").await,
        1.0
    );
    assert!(metric(&url, "llm_generated_tokens_total").await < 4000.0);
}

#[test]
fn bad_flags_exit_non_zero_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-server"))
        .args(["--quantization", "q3"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown quantization"));
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-server"))
        .args(["--model", "/definitely/missing", "--port", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/definitely/missing"));
}

#[test]
fn export_tiny_writes_loadable_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-server"))
        .args(["export-tiny", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "model.gguf",
    ] {
        assert!(dir.path().join(f).exists(), "{f}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_and_join_the_callers_trace() {
    use std::sync::{Arc, Mutex};
    let bodies: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let store = bodies.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let store = store.clone();
            async move {
                store.lock().unwrap().push(body.to_vec());
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (_proc, url) = spawn(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = client()
        .post(format!("{url}/generate"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&json!({"prompt": "trace me", "max_tokens": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id_bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let names = [
        "request",
        "tokenize_input",
        "queue_wait",
        "prefill",
        "model_generate",
        "decode_output",
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all: Vec<u8> = bodies.lock().unwrap().concat();
        let has = |needle: &[u8]| all.windows(needle.len()).any(|w| w == needle);
        let missing: Vec<_> = names.iter().filter(|n| !has(n.as_bytes())).collect();
        if missing.is_empty() && has(&id_bytes) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "spans missing from OTLP export: {missing:?}, trace id seen: {}",
            has(&id_bytes)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Issue: `/model/load` error messages let an admin-API client probe the filesystem. With
/// `--model-root`, a path outside it is refused before anything is read, with a message that
/// does not echo it; models under the root (and built-in ones) still load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_load_stays_inside_the_model_root() {
    let root = tempfile::tempdir().unwrap();
    let model_dir = root.path().join("tiny");
    let opts = sluice_server::model::tiny::ExportOptions {
        shape: sluice_server::model::tiny::TinyShape::Tiny,
        gguf: None,
        safetensors: true,
    };
    sluice_server::model::tiny::export(&model_dir, &opts).unwrap();
    let root_arg = root.path().display().to_string();
    let (_proc, url) = spawn(&["--model-root", &root_arg, "--drain-delay", "0s"], &[]).await;
    let load = |model: String| {
        let url = url.clone();
        async move {
            let r = client()
                .post(format!("{url}/model/load"))
                .json(&json!({ "model": model }))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    for outside in [
        "/etc/passwd".to_owned(),
        "/definitely/missing.gguf".to_owned(),
        format!("{root_arg}/../../etc"),
        "relative/path".to_owned(),
    ] {
        let (status, body) = load(outside.clone()).await;
        assert_eq!(status, 422, "{outside}: {body}");
        assert!(body.contains("outside the server's model root"), "{body}");
        assert!(!body.contains(&outside), "the path is not echoed: {body}");
    }
    let (status, body) = load(model_dir.display().to_string()).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = load("builtin:tiny".into()).await;
    assert_eq!(status, 200, "{body}");
}

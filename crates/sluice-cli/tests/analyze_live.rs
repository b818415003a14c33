//! `sluice analyze` against real parts: a tiny-model `sluice-server` on loopback exporting its
//! spans over OTLP to a real Jaeger (v2 all-in-one, `scripts/build-jaeger.sh`), a real Prometheus
//! scraping it every second under the labels a Deployment's pod gets in a cluster (`namespace`,
//! `pod=<name>-<hash>-<suffix>`), load from `sluice bench`, and the span breakdown read back
//! through Jaeger's query API. The breakdown arithmetic itself is unit-tested in
//! `analyze::jaeger`.
//!
//! Needs `prometheus` on PATH (Debian package; `scripts/install-deps.sh`) or in
//! `SLUICE_PROMETHEUS_BIN`, Jaeger (built by `scripts/install-deps.sh`, or `SLUICE_JAEGER_BIN`),
//! and `cargo build -p sluice-server`. Every process is killed when the test ends, pass or fail.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use assert_cmd::Command as BinCommand;
use serde_json::Value;
use sluice_testkit::{Jaeger, Prometheus, ScrapeTarget};

const NAMESPACE: &str = "ml";
/// The serving path's spans (`request` → `tokenize_input`, `queue_wait`, `model_generate` →
/// `prefill`; `decode_output`).
const SERVER_OPERATIONS: &[&str] = &[
    "request",
    "tokenize_input",
    "queue_wait",
    "model_generate",
    "prefill",
];
const POD: &str = "chat-5f7d8b9c4-x2x7q";
/// The servers' `OTEL_SERVICE_NAME`, apart from `--service` to exercise `--jaeger-service`.
const TRACE_SERVICE: &str = "chat-traces";
/// A caller's W3C trace context: the server's request span must join this trace.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

/// POSTs a small completion carrying `traceparent` and returns the status line.
fn traced_completion(port: u16) -> String {
    let body = r#"{"model":"sluice-tiny","prompt":"The queue grows","max_tokens":4}"#;
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         traceparent: 00-{TRACE_ID}-{PARENT_SPAN}-01\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer.lines().next().unwrap_or_default().to_string()
}

fn analyze(prom: &Prometheus, extra: &[&str]) -> std::process::Output {
    BinCommand::cargo_bin("sluice")
        .unwrap()
        .args([
            "analyze",
            "--prometheus",
            &prom.url(),
            "--namespace",
            NAMESPACE,
        ])
        .args([
            "--window",
            "1m",
            "--ttft-p95-ms",
            "5000",
            "--tpot-ms",
            "1000",
        ])
        .args(["--quantization-ladder", "f32,q8_0", "--max-tokens", "64"])
        .args(["--max-tokens-floor", "16"])
        .args(extra)
        .output()
        .unwrap()
}

#[ignore = "live tier: needs the prometheus binary; scripts/test.sh runs it"]
#[test]
fn analyze_reads_real_prometheus_and_names_the_bottleneck() {
    let jaeger = Jaeger::start();
    // RUST_LOG quiets the log; the spans are exported all the same (their own filter).
    let server = common::Server::start_with_env(
        &["--max-tokens", "64"],
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                jaeger.otlp_endpoint().as_str(),
            ),
            ("OTEL_SERVICE_NAME", TRACE_SERVICE),
        ],
    );
    // Job `sluice`: the --selector case below reaches the same series by it.
    let prom = Prometheus::start(&[ScrapeTarget {
        job: "sluice".into(),
        ..ScrapeTarget::pod(format!("127.0.0.1:{}", server.port), NAMESPACE, POD)
    }]);
    let jaeger_url = jaeger.query_url();

    // A gentle load: the service meets its (loose) objectives.
    let bench = BinCommand::cargo_bin("sluice")
        .unwrap()
        .args([
            "bench",
            "--url",
            &server.url(),
            "--users",
            "2",
            "--spawn-rate",
            "2",
        ])
        .args([
            "--run-time",
            "10s",
            "--max-tokens",
            "16",
            "--prompt-tokens",
            "16",
        ])
        .args(["--seed", "7"])
        .output()
        .unwrap();
    assert!(
        bench.status.success(),
        "bench failed:\n{}",
        String::from_utf8_lossy(&bench.stderr)
    );
    // llm_ttft_seconds_count{pod="<POD>"}, URL-encoded: the load has been scraped.
    prom.wait_for(
        &format!("llm_ttft_seconds_count%7Bpod%3D%22{POD}%22%7D"),
        POD,
        Duration::from_secs(30),
    );
    // The SDK exports in batches (every 5 s): wait until Jaeger holds the load's traces.
    let traces_path = format!("/api/traces?service={TRACE_SERVICE}&limit=1000&lookback=1h");
    jaeger.wait_for(&traces_path, Duration::from_secs(60), |body| {
        body.matches(r#""operationName":"model_generate""#).count() >= 10
    });
    // A caller's traceparent: the request span is a child of the caller's span, in its trace.
    assert!(traced_completion(server.port).contains(" 200 "));
    let trace = jaeger.wait_for(
        &format!("/api/traces/{TRACE_ID}"),
        Duration::from_secs(60),
        |body| body.contains(r#""operationName":"model_generate""#),
    );
    let t: Value = serde_json::from_str(&trace).unwrap();
    let spans = t["data"][0]["spans"].as_array().unwrap();
    let request = spans
        .iter()
        .find(|s| s["operationName"] == "request")
        .unwrap_or_else(|| panic!("no request span in {trace}"));
    assert_eq!(request["references"][0]["spanID"], PARENT_SPAN, "{trace}");
    assert_eq!(request["references"][0]["traceID"], TRACE_ID, "{trace}");
    // Let a few more scrapes land after the load so rates cover it.
    std::thread::sleep(Duration::from_secs(3));

    let out = analyze(
        &prom,
        &[
            "--service",
            "chat",
            "--jaeger",
            &jaeger_url,
            "--jaeger-service",
            TRACE_SERVICE,
            "--json",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "analyze failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a: Value = serde_json::from_str(&stdout).expect("analyze --json prints JSON");

    // SLIs came from Prometheus through the pod selector.
    let sli = &a["sli"];
    for key in [
        "requestRatePerSecond",
        "ttftP95Seconds",
        "tpotSeconds",
        "errorRatio",
    ] {
        assert_eq!(sli[key]["state"], "known", "{key} unknown: {stdout}");
    }
    assert!(sli["requestRatePerSecond"]["value"].as_f64().unwrap() > 0.0);
    assert_eq!(sli["errorRatio"]["value"].as_f64().unwrap(), 0.0);
    assert_eq!(sli["reportingPods"]["value"].as_f64().unwrap(), 1.0);
    // The verdict is sluice-slo's, on a load that meets the objectives.
    assert_eq!(a["classification"]["class"], "Healthy", "{stdout}");
    assert_eq!(a["plan"]["action"]["type"], "hold", "{stdout}");

    // Correlations ran as range queries over the window.
    let corr = a["correlations"].as_array().unwrap();
    assert_eq!(corr[0]["name"], "TTFT vs load");
    assert!(corr[0]["points"].as_u64().unwrap() >= 1, "{stdout}");
    assert_eq!(
        corr[2]["reading"],
        "no GPU series selected (pass --gpu-selector)"
    );

    // The spans the server exported, read back through Jaeger's query API by analyze: every
    // stage of the serving path is there, and the exclusive shares add up to the whole.
    let spans = &a["spans"];
    assert!(spans["traces"].as_u64().unwrap() >= 10, "{stdout}");
    assert!(spans["total_ms"].as_f64().unwrap() > 0.0, "{stdout}");
    let ops = spans["operations"].as_array().unwrap();
    let names: Vec<&str> = ops
        .iter()
        .map(|o| o["operation"].as_str().unwrap())
        .collect();
    for op in SERVER_OPERATIONS {
        assert!(names.contains(op), "{op} missing from {names:?}");
    }
    let shares: f64 = ops.iter().map(|o| o["share"].as_f64().unwrap()).sum();
    assert!((shares - 1.0).abs() < 1e-6, "shares add up to {shares}");

    // The text form carries the same verdict.
    let text = analyze(&prom, &["--service", "chat"]);
    let text_out = String::from_utf8_lossy(&text.stdout);
    assert!(text.status.success());
    assert!(
        text_out.contains("## SLIs against objectives"),
        "{text_out}"
    );
    assert!(
        text_out.contains("## Bottleneck\nHealthy (rule H1)"),
        "{text_out}"
    );
    assert!(text_out.contains("skipped (no --jaeger)"), "{text_out}");

    // A service with no pods is Unknown, and the remedy holds: never a guess.
    let other = analyze(&prom, &["--service", "cha", "--json"]);
    let o: Value = serde_json::from_slice(&other.stdout).unwrap();
    assert_eq!(o["sli"]["ttftP95Seconds"]["state"], "unknown");
    assert_eq!(o["classification"]["class"], "Unknown");
    assert_eq!(o["plan"]["action"]["type"], "hold");

    // --selector reaches series scraped outside Kubernetes.
    let by_job = analyze(
        &prom,
        &["--service", "x", "--selector", "job=sluice", "--json"],
    );
    let j: Value = serde_json::from_slice(&by_job.stdout).unwrap();
    assert_eq!(j["sli"]["ttftP95Seconds"]["state"], "known");
}

#[test]
fn analyze_rejects_bad_input_with_a_message() {
    let port = common::free_port();
    let unreachable = BinCommand::cargo_bin("sluice")
        .unwrap()
        .args(["analyze", "--service", "chat", "--prometheus"])
        .arg(format!("http://127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(1));
    let err = String::from_utf8_lossy(&unreachable.stderr);
    assert!(err.contains("failed to reach prometheus at"), "{err}");

    let bad_selector = BinCommand::cargo_bin("sluice")
        .unwrap()
        .args(["analyze", "--service", "chat", "--selector", "nolabel"])
        .arg(format!("--prometheus=http://127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert_eq!(bad_selector.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad_selector.stderr);
    assert!(err.contains("invalid --selector \"nolabel\""), "{err}");
}

//! `sluice analyze` against real parts: a tiny-model `sluice-server` on loopback, a real
//! Prometheus scraping it every second under the labels a Deployment's pod gets in a cluster
//! (`namespace`, `pod=<name>-<hash>-<suffix>`), load from `sluice bench`, and a Jaeger query
//! API stand-in that answers `/api/traces` with a fixed set of spans (Jaeger is not packaged
//! for Debian; the breakdown arithmetic itself is unit-tested in `analyze::jaeger`).
//!
//! Needs `prometheus` on PATH (Debian package; `scripts/install-deps.sh`) or in
//! `SLUICE_PROMETHEUS_BIN`, and `cargo build -p sluice-server`. Every process is killed when
//! the test ends, pass or fail.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use assert_cmd::Command as BinCommand;
use serde_json::Value;
use sluice_testkit::{Prometheus, ScrapeTarget};

const NAMESPACE: &str = "ml";
const POD: &str = "chat-5f7d8b9c4-x2x7q";

/// Two traces shaped like the server's spans: 1000 µs and 3000 µs requests.
const TRACES: &str = r#"{"data":[
 {"traceID":"a","spans":[
  {"traceID":"a","spanID":"1","operationName":"POST /generate","references":[],"startTime":0,"duration":1000},
  {"traceID":"a","spanID":"2","operationName":"queue_wait","references":[{"refType":"CHILD_OF","traceID":"a","spanID":"1"}],"startTime":0,"duration":100},
  {"traceID":"a","spanID":"3","operationName":"model_generate","references":[{"refType":"CHILD_OF","traceID":"a","spanID":"1"}],"startTime":100,"duration":850}]},
 {"traceID":"b","spans":[
  {"traceID":"b","spanID":"1","operationName":"POST /generate","references":[],"startTime":0,"duration":3000},
  {"traceID":"b","spanID":"2","operationName":"queue_wait","references":[{"refType":"CHILD_OF","traceID":"b","spanID":"1"}],"startTime":0,"duration":1900},
  {"traceID":"b","spanID":"3","operationName":"model_generate","references":[{"refType":"CHILD_OF","traceID":"b","spanID":"1"}],"startTime":1900,"duration":1000}]}
]}"#;

/// Answers every request with [`TRACES`] and records the request lines.
fn jaeger_stub() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            // Drain the headers.
            let mut h = String::new();
            while reader.read_line(&mut h).map(|n| n > 2).unwrap_or(false) {
                h.clear();
            }
            log.lock().unwrap().push(line.trim().to_string());
            let mut out = &stream;
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{TRACES}",
                TRACES.len()
            );
        }
    });
    (port, seen)
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
    let server = common::Server::start(&["--max-tokens", "64"]);
    // Job `sluice`: the --selector case below reaches the same series by it.
    let prom = Prometheus::start(&[ScrapeTarget {
        job: "sluice".into(),
        ..ScrapeTarget::pod(format!("127.0.0.1:{}", server.port), NAMESPACE, POD)
    }]);
    let (jaeger_port, jaeger_seen) = jaeger_stub();
    let jaeger = format!("http://127.0.0.1:{jaeger_port}");

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
    // Let a few more scrapes land after the load so rates cover it.
    std::thread::sleep(Duration::from_secs(3));

    let out = analyze(
        &prom,
        &[
            "--service",
            "chat",
            "--jaeger",
            &jaeger,
            "--jaeger-service",
            "chat-traces",
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

    // Span breakdown from the Jaeger API: 4000 µs traced, queue_wait 2000 µs of own time.
    let spans = &a["spans"];
    assert_eq!(spans["traces"], 2);
    assert_eq!(spans["total_ms"].as_f64(), Some(4.0));
    let ops = spans["operations"].as_array().unwrap();
    assert_eq!(ops[0]["operation"], "queue_wait");
    assert!((ops[0]["share"].as_f64().unwrap() - 0.5).abs() < 1e-9);
    let seen = jaeger_seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|l| l.starts_with("GET /api/traces?service=chat-traces&")),
        "{seen:?}"
    );

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

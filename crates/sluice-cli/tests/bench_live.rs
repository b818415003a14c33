//! `sluice bench` against a real `sluice-server` on the built-in tiny model (loopback only,
//! short runs). Needs `cargo build -p sluice-server` first; the failure message says so.

mod common;

use assert_cmd::Command;
use serde_json::Value;

use common::Server;

fn bench(server: &Server, args: &[&str]) -> (Option<i32>, Value, String) {
    let out = Command::cargo_bin("sluice")
        .unwrap()
        .args(["bench", "--url", &server.url(), "--json", "--seed", "7"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}); stderr: {stderr}"));
    (out.status.code(), json, stderr)
}

#[test]
fn closed_loop_stream_bench_writes_report_and_plots() {
    let server = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("baseline.md");
    let plots = dir.path().join("plots");
    let (code, json, stderr) = bench(
        &server,
        &[
            "--users",
            "3",
            "--spawn-rate",
            "3",
            "--run-time",
            "3s",
            "--max-tokens",
            "8",
            "--stop-timeout",
            "30s",
            "--fail-on-error",
            "--report",
            report.to_str().unwrap(),
            "--plots",
            plots.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "{stderr}\n{json:#}");
    let s = &json["summary"];
    assert!(s["succeeded"].as_u64().unwrap() > 0);
    assert_eq!(s["failed"], 0);
    // The drain let every request finish.
    assert_eq!(s["cancelled_at_end"], 0);
    assert_eq!(s["ttft_source"], "client");
    assert_eq!(s["ttft"]["count"], s["succeeded"]);
    assert!(s["ttft"]["p50_ms"].as_f64().unwrap() > 0.0);
    assert!(s["tpot_avg_ms"].as_f64().unwrap() > 0.0);
    // max_tokens 8 and no stop sequences: each request made at most 8 tokens.
    let tokens = s["output_tokens"].as_u64().unwrap();
    assert!(tokens <= 8 * s["succeeded"].as_u64().unwrap() && tokens > 0);
    // The server exports its memory; the bench reads it.
    assert!(json["resources"]["memory_peak_mb"].as_f64().unwrap() > 0.0);

    let md = std::fs::read_to_string(&report).unwrap();
    let lines: Vec<&str> = md.lines().collect();
    assert!(
        lines[0].starts_with("# Baseline Performance (Date: ") && lines[0].ends_with(')'),
        "{md}"
    );
    assert_eq!(
        lines[1..7],
        [
            "",
            "## Load Configuration",
            "- Users: 3",
            "- Spawn Rate: 3/s",
            "- Duration: 3s",
            ""
        ]
    );
    assert_eq!(lines[7], "## Results");
    let secs = |line: &str, prefix: &str| {
        line.strip_prefix(prefix)
            .and_then(|v| v.strip_suffix('s'))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{line:?} is not {prefix}<seconds>s in\n{md}"))
    };
    let (p50, p95, p99) = (
        secs(lines[8], "- TTFT P50: "),
        secs(lines[9], "- TTFT P95: "),
        secs(lines[10], "- TTFT P99: "),
    );
    assert!(p50 > 0.0 && p50 <= p95 && p95 <= p99, "{md}");
    assert!(secs(lines[11], "- TPOT Avg: ") > 0.0, "{md}");
    assert!(
        lines[12].starts_with("- Throughput: ") && lines[12].ends_with(" tokens/s)"),
        "{md}"
    );
    // No GPU exporter on a CPU server; the server's own memory gauges are there.
    assert_eq!(lines[13], "- GPU Utilization: unknown");
    assert!(
        lines[14].starts_with("- VRAM Usage: ") && lines[14].contains(" MB / "),
        "{md}"
    );
    assert_eq!(lines.len(), 15, "{md}");
    for f in [
        "ttft_over_time.svg",
        "tpot_over_time.svg",
        "latency_cdf.svg",
    ] {
        let svg = std::fs::read_to_string(plots.join(f)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<text"), "{f}");
    }
}

#[test]
fn every_endpoint_is_measured() {
    let server = Server::start(&[]);
    for endpoint in [
        "generate",
        "generate-stream",
        "completions",
        "completions-stream",
        "chat",
        "chat-stream",
    ] {
        let (code, json, stderr) = bench(
            &server,
            &[
                "--endpoint",
                endpoint,
                "--users",
                "2",
                "--run-time",
                "1s",
                "--max-tokens",
                "4",
                "--stop-timeout",
                "30s",
                "--fail-on-error",
            ],
        );
        assert_eq!(code, Some(0), "{endpoint}: {stderr}");
        let s = &json["summary"];
        assert!(s["succeeded"].as_u64().unwrap() > 0, "{endpoint}");
        assert!(s["output_tokens"].as_u64().unwrap() > 0, "{endpoint}");
        let ttft_known = s["ttft"].is_object();
        let expect_ttft = !matches!(endpoint, "completions" | "chat");
        assert_eq!(ttft_known, expect_ttft, "{endpoint}: {s:#}");
        if endpoint == "generate" {
            assert_eq!(s["ttft_source"], "server");
        }
    }
}

#[test]
fn open_loop_and_trace_replay() {
    let server = Server::start(&[]);
    let (code, json, stderr) = bench(
        &server,
        &[
            "--rate",
            "10",
            "--run-time",
            "2s",
            "--endpoint",
            "chat-stream",
            "--max-tokens",
            "4",
            "--stop-timeout",
            "30s",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(json["load"]["mode"], "poisson");
    assert!(json["summary"]["requests"].as_u64().unwrap() > 0);

    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.csv");
    std::fs::write(
        &trace,
        "TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:50.9951690,396,109
2023-11-16 18:15:51.2224670,879,55
2023-11-16 18:15:51.3910170,91,16
2023-11-16 18:15:52.0000000,20,3
",
    )
    .unwrap();
    let (code, json, stderr) = bench(
        &server,
        &[
            "--trace",
            trace.to_str().unwrap(),
            "--time-scale",
            "0.1",
            "--max-prompt-tokens",
            "32",
            "--max-tokens",
            "8",
            "--fail-on-error",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(json["load"]["mode"], "trace");
    assert_eq!(json["load"]["requests"], 5);
    // Every row was replayed, none lost: the run waits for the last request.
    assert_eq!(json["summary"]["succeeded"], 5);
    // Generated tokens were capped at 8 (the last row asks for 3).
    assert!(json["summary"]["output_tokens"].as_u64().unwrap() <= 4 * 8 + 3);
}

#[test]
#[ignore = "data tier: needs the shared Azure trace beside the checkout; scripts/test.sh runs it"]
fn replays_a_slice_of_the_real_azure_trace() {
    let trace = sluice_testkit::azure_trace()
        .expect("the Azure trace beside the checkout (../shared/data) or at SLUICE_AZURE_TRACE");
    let server = Server::start(&[]);
    // 60 consecutive conversation requests, arrivals 10x faster than recorded; prompts and
    // generations capped to what the tiny model's context holds.
    let (code, json, stderr) = bench(
        &server,
        &[
            "--trace",
            trace.to_str().unwrap(),
            "--trace-offset",
            "1000",
            "--max-requests",
            "60",
            "--time-scale",
            "0.1",
            "--max-prompt-tokens",
            "64",
            "--max-tokens",
            "16",
            "--fail-on-error",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(json["load"]["mode"], "trace");
    assert_eq!(json["load"]["requests"], 60);
    assert_eq!(json["summary"]["succeeded"], 60);
    assert_eq!(json["summary"]["failed"], 0);
}

#[test]
fn overload_failures_are_counted_and_fail_the_run_when_asked() {
    // One admitted request at a time: eight users must see 429s.
    let server = Server::start(&["--max-concurrent-requests", "1"]);
    let (code, json, stderr) = bench(
        &server,
        &[
            "--users",
            "8",
            "--spawn-rate",
            "100",
            "--run-time",
            "2s",
            "--max-tokens",
            "32",
            "--fail-on-error",
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("requests failed (--fail-on-error)"),
        "{stderr}"
    );
    let s = &json["summary"];
    let rejected = s["errors"]["http_429"].as_u64().unwrap_or(0);
    assert!(rejected > 0, "{s:#}");
    assert_eq!(
        s["failed"].as_u64().unwrap(),
        s["errors"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>()
    );
    assert!(
        json["error_examples"]["http_429"]
            .as_str()
            .unwrap()
            .starts_with("429")
    );
}

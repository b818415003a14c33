//! The seed's "Baseline Performance" document, line for line:
//!
//! ```text
//! # Baseline Performance (Date: YYYY-MM-DD)
//!
//! ## Load Configuration
//! - Users: N
//! - Spawn Rate: R/s
//! - Duration: D
//!
//! ## Results
//! - TTFT P50: 0.450s
//! - TTFT P95: 0.892s
//! - TTFT P99: 1.204s
//! - TPOT Avg: 0.045s
//! - Throughput: 8.50 req/s (380.0 tokens/s)
//! - GPU Utilization: 65%             ("unknown" unless a scrape reported it)
//! - VRAM Usage: 18432 MB / 24576 MB (75.0%)   (peak during the run; "unknown" likewise)
//! ```
//!
//! Latencies are in seconds, as the seed writes them. Open-loop and trace runs have no users:
//! their `Users` line says so and the next line states the arrival model. A run with failed
//! requests adds an `- Errors:` line: the report never hides failures.

use std::fmt::Write;

use super::{BenchReport, LoadDescription, fmt_duration, fmt_num};

/// The seed's title line, which other renderings (the demo) look for.
pub const TITLE: &str = "# Baseline Performance";

/// The markdown document for `report`, ending in a newline.
pub fn baseline_markdown(report: &BenchReport) -> String {
    let s = &report.summary;
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "{TITLE} (Date: {})\n", report.date);
    out.push_str(
        "## Load Configuration
",
    );
    for line in load_lines(&report.load) {
        let _ = writeln!(out, "- {line}");
    }
    out.push_str("\n## Results\n");
    let ttft = |pick: fn(&crate::stats::LatencyStats) -> f64| {
        s.ttft
            .as_ref()
            .map_or_else(|| "n/a".to_string(), |t| secs(pick(t)))
    };
    let _ = writeln!(out, "- TTFT P50: {}", ttft(|t| t.p50_ms));
    let _ = writeln!(out, "- TTFT P95: {}", ttft(|t| t.p95_ms));
    let _ = writeln!(out, "- TTFT P99: {}", ttft(|t| t.p99_ms));
    let tpot = s.tpot_avg_ms.map_or_else(|| "n/a".to_string(), secs);
    let _ = writeln!(out, "- TPOT Avg: {tpot}");
    let _ = writeln!(
        out,
        "- Throughput: {:.2} req/s ({:.1} tokens/s)",
        s.throughput_rps, s.output_tokens_per_s
    );
    let r = &report.resources;
    let gpu = r
        .gpu_utilization_pct
        .map_or_else(|| "unknown".to_string(), |g| format!("{g:.0}%"));
    let _ = writeln!(out, "- GPU Utilization: {gpu}");
    let vram = match (r.memory_peak_mb, r.memory_capacity_mb) {
        (Some(used), Some(cap)) if cap > 0.0 => {
            format!("{used:.0} MB / {cap:.0} MB ({:.1}%)", used / cap * 100.0)
        }
        (Some(used), _) => format!("{used:.0} MB"),
        _ => "unknown".to_string(),
    };
    let _ = writeln!(out, "- VRAM Usage: {vram}");
    if s.failed > 0 {
        let kinds: Vec<String> = s.errors.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let _ = writeln!(
            out,
            "- Errors: {} of {} requests failed ({:.1}%): {}",
            s.failed,
            s.requests,
            s.error_rate * 100.0,
            kinds.join(", ")
        );
    }
    out
}

/// Milliseconds as the seed's seconds: 892 ms → "0.892s"; below 10 ms one more digit so a fast
/// TPOT does not round to nothing.
fn secs(ms: f64) -> String {
    if ms < 10.0 {
        format!("{:.4}s", ms / 1000.0)
    } else {
        format!("{:.3}s", ms / 1000.0)
    }
}

fn load_lines(load: &LoadDescription) -> [String; 3] {
    let duration = format!("Duration: {}", fmt_duration(load.run_time()));
    match load {
        LoadDescription::Closed {
            users, spawn_rate, ..
        } => [
            format!("Users: {users}"),
            format!("Spawn Rate: {}/s", fmt_num(*spawn_rate)),
            duration,
        ],
        LoadDescription::Poisson { rate, .. } => [
            "Users: open loop (Poisson arrivals)".to_string(),
            format!("Arrival Rate: {} req/s", fmt_num(*rate)),
            duration,
        ],
        LoadDescription::Trace {
            file,
            requests,
            time_scale,
            ..
        } => [
            "Users: open loop (trace replay)".to_string(),
            format!(
                "Trace: {file} ({requests} requests, time scale {})",
                fmt_num(*time_scale)
            ),
            duration,
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::resources::ResourceUsage;
    use crate::cli::Endpoint;
    use crate::stats::{LatencyStats, Summary};
    use std::collections::BTreeMap;

    fn stats(p50: f64, p95: f64, p99: f64) -> LatencyStats {
        LatencyStats {
            count: 100,
            min_ms: 1.0,
            mean_ms: p50,
            p50_ms: p50,
            p90_ms: p95,
            p95_ms: p95,
            p99_ms: p99,
            max_ms: p99,
        }
    }

    fn report() -> BenchReport {
        BenchReport {
            date: "2024-03-05".into(),
            url: "http://127.0.0.1:8000".into(),
            endpoint: Endpoint::GenerateStream,
            load: LoadDescription::Closed {
                users: 10,
                spawn_rate: 2.0,
                run_time_s: 300.0,
            },
            summary: Summary {
                duration_s: 300.0,
                requests: 2550,
                succeeded: 2550,
                failed: 0,
                error_rate: 0.0,
                errors: BTreeMap::new(),
                cancelled_at_end: 0,
                throughput_rps: 8.5,
                output_tokens: 114_000,
                output_tokens_per_s: 380.0,
                ttft_source: None,
                ttft: Some(stats(450.0, 1200.0, 2100.0)),
                tpot: Some(stats(45.0, 60.0, 70.0)),
                tpot_avg_ms: Some(45.0),
                latency: Some(stats(2000.0, 4000.0, 5000.0)),
            },
            resources: ResourceUsage::default(),
            interrupted: false,
            error_examples: BTreeMap::new(),
            samples: vec![],
        }
    }

    #[test]
    fn matches_the_seed_format_exactly() {
        assert_eq!(
            baseline_markdown(&report()),
            "# Baseline Performance (Date: 2024-03-05)

## Load Configuration
- Users: 10
- Spawn Rate: 2/s
- Duration: 5m

## Results
- TTFT P50: 0.450s
- TTFT P95: 1.200s
- TTFT P99: 2.100s
- TPOT Avg: 0.045s
- Throughput: 8.50 req/s (380.0 tokens/s)
- GPU Utilization: unknown
- VRAM Usage: unknown
"
        );
    }

    #[test]
    fn resource_and_error_lines_appear_when_known() {
        let mut r = report();
        r.resources.gpu_utilization_pct = Some(65.2);
        r.resources.memory_peak_mb = Some(18432.0);
        r.resources.memory_capacity_mb = Some(24576.0);
        r.summary.requests = 120;
        r.summary.failed = 3;
        r.summary.error_rate = 0.025;
        r.summary.errors = BTreeMap::from([("http_429".into(), 2), ("timeout".into(), 1)]);
        r.summary.tpot_avg_ms = Some(4.51);
        let md = baseline_markdown(&r);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(
            lines[11..],
            [
                "- TPOT Avg: 0.0045s",
                "- Throughput: 8.50 req/s (380.0 tokens/s)",
                "- GPU Utilization: 65%",
                "- VRAM Usage: 18432 MB / 24576 MB (75.0%)",
                "- Errors: 3 of 120 requests failed (2.5%): 2 http_429, 1 timeout",
            ]
        );
    }

    #[test]
    fn open_loop_and_trace_load_lines() {
        let mut r = report();
        r.load = LoadDescription::Poisson {
            rate: 2.5,
            run_time_s: 60.0,
        };
        r.summary.ttft = None;
        r.summary.tpot_avg_ms = None;
        let md = baseline_markdown(&r);
        assert!(md.contains(
            "- Users: open loop (Poisson arrivals)\n- Arrival Rate: 2.5 req/s\n- Duration: 1m\n"
        ));
        assert!(md.contains("- TTFT P99: n/a\n- TPOT Avg: n/a\n"));
        r.load = LoadDescription::Trace {
            file: "azure.csv".into(),
            requests: 200,
            time_scale: 0.1,
            run_time_s: 95.4,
        };
        assert!(baseline_markdown(&r).contains(
            "- Users: open loop (trace replay)\n- Trace: azure.csv (200 requests, time scale 0.1)\n- Duration: 1m 35s\n"
        ));
    }
}

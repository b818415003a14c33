//! The seed's "Baseline Performance" markdown section, line for line:
//!
//! ```text
//! ## Baseline Performance (YYYY-MM-DD)
//! - Load: N concurrent users, spawn rate R/s, duration D
//! - TTFT P50: X ms, P95: Y ms, P99: Z ms
//! - TPOT avg: X ms
//! - Throughput: X req/s, Y tokens/s
//! - GPU utilization: X%                 (only when a scrape reported it)
//! - Memory usage: X MB / Y MB (Z%)      (only when a scrape reported it; peak during the run)
//! ```
//!
//! A run with failed requests adds an `- Errors:` line: the report never hides failures.

use std::fmt::Write;

use super::{BenchReport, LoadDescription, fmt_duration, fmt_ms, fmt_num};

/// The markdown section for `report`, ending in a newline.
pub fn baseline_markdown(report: &BenchReport) -> String {
    let s = &report.summary;
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "## Baseline Performance ({})", report.date);
    let _ = writeln!(out, "- Load: {}", load_line(&report.load));
    match &s.ttft {
        Some(t) => {
            let _ = writeln!(
                out,
                "- TTFT P50: {}, P95: {}, P99: {}",
                fmt_ms(t.p50_ms),
                fmt_ms(t.p95_ms),
                fmt_ms(t.p99_ms)
            );
        }
        None => out.push_str("- TTFT P50: n/a, P95: n/a, P99: n/a\n"),
    }
    let tpot = s.tpot_avg_ms.map_or_else(|| "n/a".to_string(), fmt_ms);
    let _ = writeln!(out, "- TPOT avg: {tpot}");
    let _ = writeln!(
        out,
        "- Throughput: {:.2} req/s, {:.1} tokens/s",
        s.throughput_rps, s.output_tokens_per_s
    );
    let r = &report.resources;
    if let Some(gpu) = r.gpu_utilization_pct {
        let _ = writeln!(out, "- GPU utilization: {gpu:.0}%");
    }
    match (r.memory_peak_mb, r.memory_capacity_mb) {
        (Some(used), Some(cap)) if cap > 0.0 => {
            let _ = writeln!(
                out,
                "- Memory usage: {used:.0} MB / {cap:.0} MB ({:.1}%)",
                used / cap * 100.0
            );
        }
        (Some(used), _) => {
            let _ = writeln!(out, "- Memory usage: {used:.0} MB");
        }
        _ => {}
    }
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

fn load_line(load: &LoadDescription) -> String {
    let duration = fmt_duration(load.run_time());
    match load {
        LoadDescription::Closed {
            users, spawn_rate, ..
        } => format!(
            "{users} concurrent users, spawn rate {}/s, duration {duration}",
            fmt_num(*spawn_rate)
        ),
        LoadDescription::Poisson { rate, .. } => format!(
            "open-loop Poisson arrivals at {} req/s, duration {duration}",
            fmt_num(*rate)
        ),
        LoadDescription::Trace {
            file,
            requests,
            time_scale,
            ..
        } => format!(
            "trace replay of {file} ({requests} requests, time scale {}), duration {duration}",
            fmt_num(*time_scale)
        ),
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
            "## Baseline Performance (2024-03-05)
- Load: 10 concurrent users, spawn rate 2/s, duration 5m
- TTFT P50: 450 ms, P95: 1200 ms, P99: 2100 ms
- TPOT avg: 45.0 ms
- Throughput: 8.50 req/s, 380.0 tokens/s
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
        let md = baseline_markdown(&r);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(
            lines[5..],
            [
                "- GPU utilization: 65%",
                "- Memory usage: 18432 MB / 24576 MB (75.0%)",
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
        assert!(md.contains("- Load: open-loop Poisson arrivals at 2.5 req/s, duration 1m\n"));
        assert!(md.contains("- TTFT P50: n/a, P95: n/a, P99: n/a\n- TPOT avg: n/a\n"));
        r.load = LoadDescription::Trace {
            file: "azure.csv".into(),
            requests: 200,
            time_scale: 0.1,
            run_time_s: 95.4,
        };
        assert!(baseline_markdown(&r).contains(
            "- Load: trace replay of azure.csv (200 requests, time scale 0.1), duration 1m 35s\n"
        ));
    }
}

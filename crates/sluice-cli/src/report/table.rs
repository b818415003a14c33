//! The terminal summary printed at the end of a bench.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, Table};

use super::{BenchReport, fmt_duration, fmt_ms};
use crate::bench::sample::TimingSource;
use crate::stats::LatencyStats;

/// The whole summary: totals, latency percentiles, and every error kind with an example.
pub fn render(report: &BenchReport) -> String {
    let s = &report.summary;
    let mut totals = Table::new();
    totals.load_preset(UTF8_FULL_CONDENSED);
    totals.set_header(["", "value"]);
    totals.add_row([
        "target".to_string(),
        format!(
            "POST {}{}",
            report.url.trim_end_matches('/'),
            report.endpoint.path()
        ),
    ]);
    totals.add_row([
        "duration".to_string(),
        fmt_duration(std::time::Duration::from_secs_f64(s.duration_s)),
    ]);
    totals.add_row(["requests".to_string(), s.requests.to_string()]);
    totals.add_row(["succeeded".to_string(), s.succeeded.to_string()]);
    totals.add_row([
        "failed".to_string(),
        format!("{} ({:.2}%)", s.failed, s.error_rate * 100.0),
    ]);
    if s.cancelled_at_end > 0 {
        totals.add_row([
            "cancelled at end".to_string(),
            format!(
                "{} (in flight when the run stopped; see --stop-timeout)",
                s.cancelled_at_end
            ),
        ]);
    }
    totals.add_row([
        "throughput".to_string(),
        format!("{:.2} req/s", s.throughput_rps),
    ]);
    totals.add_row([
        "output tokens".to_string(),
        format!(
            "{} ({:.1} tokens/s)",
            s.output_tokens, s.output_tokens_per_s
        ),
    ]);
    if let Some(avg) = s.tpot_avg_ms {
        totals.add_row(["TPOT avg (token-weighted)".to_string(), fmt_ms(avg)]);
    }
    if let Some(mem) = report.resources.memory_peak_mb {
        let cap = report
            .resources
            .memory_capacity_mb
            .map_or(String::new(), |c| format!(" / {c:.0} MB"));
        totals.add_row([
            "memory peak (vram)".to_string(),
            format!("{mem:.0} MB{cap}"),
        ]);
    }
    if let Some(gpu) = report.resources.gpu_utilization_pct {
        totals.add_row(["GPU utilization".to_string(), format!("{gpu:.0}%")]);
    }

    let mut lat = Table::new();
    lat.load_preset(UTF8_FULL_CONDENSED);
    lat.set_header([
        "latency", "count", "min", "p50", "p90", "p95", "p99", "max", "mean",
    ]);
    let ttft_name = match s.ttft_source {
        Some(TimingSource::Server) => "TTFT (server-reported)",
        _ => "TTFT",
    };
    for (name, st) in [
        (ttft_name, &s.ttft),
        ("TPOT (per request)", &s.tpot),
        ("end-to-end", &s.latency),
    ] {
        lat.add_row(latency_row(name, st.as_ref()));
    }
    for i in 1..9 {
        if let Some(c) = lat.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }

    let mut out = format!("{totals}\n{lat}\n");
    if !s.errors.is_empty() {
        let mut errs = Table::new();
        errs.load_preset(UTF8_FULL_CONDENSED);
        errs.set_header(["error", "count", "example"]);
        for (kind, n) in &s.errors {
            let example = report.error_examples.get(kind).cloned().unwrap_or_default();
            errs.add_row([kind.clone(), n.to_string(), example]);
        }
        out.push_str(&format!("{errs}\n"));
    }
    if report.interrupted {
        out.push_str("interrupted: results cover the run up to Ctrl-C\n");
    }
    out
}

fn latency_row(name: &str, st: Option<&LatencyStats>) -> Vec<String> {
    match st {
        Some(t) => vec![
            name.to_string(),
            t.count.to_string(),
            fmt_ms(t.min_ms),
            fmt_ms(t.p50_ms),
            fmt_ms(t.p90_ms),
            fmt_ms(t.p95_ms),
            fmt_ms(t.p99_ms),
            fmt_ms(t.max_ms),
            fmt_ms(t.mean_ms),
        ],
        None => {
            let mut row = vec![name.to_string(), "0".to_string()];
            row.extend(std::iter::repeat_n("n/a".to_string(), 7));
            row
        }
    }
}

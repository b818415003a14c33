//! Text renderings of `sluice-slo` results shared by `analyze` and `demo`: the SLI table
//! against objectives, the classification with its evidence, and the planned remedy.

use std::fmt::Write;

use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use sluice_slo::{Classification, Plan, Sli, SliValue, SloTargets};

/// One SLI row: name, how to show its value, its objective (same unit) if any.
struct Row<'a> {
    name: &'static str,
    value: &'a SliValue,
    unit: Unit,
    target: Option<f64>,
}

#[derive(Clone, Copy)]
enum Unit {
    Ms,
    Ratio,
    PerSecond,
    Count,
}

fn show(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Ms => crate::report::fmt_ms(v * 1000.0),
        Unit::Ratio => format!("{:.2}%", v * 100.0),
        Unit::PerSecond => format!("{v:.2}/s"),
        Unit::Count => format!("{v:.1}"),
    }
}

fn cell(v: &SliValue, unit: Unit) -> String {
    match v {
        SliValue::Known { value, .. } => show(*value, unit),
        // Reasons can be long; they are listed under the table.
        SliValue::Unknown { .. } => "unknown".into(),
    }
}

fn rows<'a>(sli: &'a Sli, t: &SloTargets) -> Vec<Row<'a>> {
    let r = |name, value, unit, target| Row {
        name,
        value,
        unit,
        target,
    };
    vec![
        r(
            "TTFT P95",
            &sli.ttft_p95_seconds,
            Unit::Ms,
            t.ttft_p95_seconds,
        ),
        r("TPOT", &sli.tpot_seconds, Unit::Ms, t.tpot_seconds),
        r("error ratio", &sli.error_ratio, Unit::Ratio, t.error_ratio),
        r("rejected (429)", &sli.rejection_ratio, Unit::Ratio, None),
        r(
            "internal errors",
            &sli.internal_error_ratio,
            Unit::Ratio,
            None,
        ),
        r(
            "request rate",
            &sli.request_rate_per_second,
            Unit::PerSecond,
            None,
        ),
        r("tokens/s", &sli.tokens_per_second, Unit::PerSecond, None),
        r("queue depth", &sli.queue_depth, Unit::Count, None),
        r(
            "running sequences",
            &sli.running_sequences,
            Unit::Count,
            None,
        ),
        r("queue wait (mean)", &sli.queue_wait_seconds, Unit::Ms, None),
        r(
            "service time (mean)",
            &sli.service_time_seconds,
            Unit::Ms,
            None,
        ),
        r(
            "GPU utilisation",
            &sli.gpu_utilization_ratio,
            Unit::Ratio,
            None,
        ),
        r("reporting pods", &sli.reporting_pods, Unit::Count, None),
    ]
}

fn verdict(v: &SliValue, target: Option<f64>) -> String {
    match (v.value(), target) {
        (Some(v), Some(t)) if v <= t => "met".into(),
        (Some(_), Some(_)) => "VIOLATED".into(),
        (None, Some(_)) => "unknown".into(),
        _ => String::new(),
    }
}

/// SLIs of one or more labelled snapshots side by side, with the objectives.
pub fn sli_table(columns: &[(&str, &Sli)], targets: &SloTargets) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec!["SLI".to_string()];
    for (label, _) in columns {
        header.push((*label).to_string());
    }
    header.push("objective".into());
    table.set_header(header);
    let Some((_, first)) = columns.first() else {
        return String::new();
    };
    // Row i of every column is the same SLI; the first column's row names it.
    let per_column: Vec<Vec<Row>> = columns.iter().map(|(_, s)| rows(s, targets)).collect();
    let mut unknown: Vec<String> = Vec::new();
    for (i, proto) in per_column[0].iter().enumerate() {
        let mut line = vec![proto.name.to_string()];
        for column in &per_column {
            let row = &column[i];
            if let Some(reason) = row.value.unknown_reason() {
                let note = format!("{}: {reason}", row.name);
                if !unknown.contains(&note) {
                    unknown.push(note);
                }
            }
            let v = verdict(row.value, row.target);
            let c = cell(row.value, row.unit);
            line.push(if v.is_empty() {
                c
            } else {
                format!("{c} ({v})")
            });
        }
        line.push(
            proto
                .target
                .map_or(String::new(), |t| format!("<= {}", show(t, proto.unit))),
        );
        table.add_row(line);
    }
    // Memory: one row per type present in the first snapshot.
    for m in &first.memory {
        let mut line = vec![format!("memory {}", m.memory_type)];
        for (_, sli) in columns {
            let mm = sli.memory.iter().find(|x| x.memory_type == m.memory_type);
            line.push(match mm {
                Some(x) => match (
                    x.usage_megabytes.value(),
                    x.capacity_megabytes.value(),
                    x.usage_ratio.value(),
                ) {
                    (Some(u), Some(c), Some(r)) => {
                        format!("{u:.0} / {c:.0} MB ({:.1}%)", r * 100.0)
                    }
                    (Some(u), _, _) => format!("{u:.0} MB"),
                    _ => cell(&x.usage_megabytes, Unit::Count),
                },
                None => "n/a".into(),
            });
        }
        let pressure = sluice_slo::sli::PRESSURE_MEMORY_TYPES.contains(&m.memory_type.as_str());
        line.push(if pressure {
            format!("<= {:.0}%", targets.memory_ratio * 100.0)
        } else {
            String::new()
        });
        table.add_row(line);
    }
    let mut out = format!("{table}\n");
    for note in unknown {
        let _ = writeln!(out, "unknown {note}");
    }
    out
}

/// Class, rule, summary, evidence and the other rules that also fired.
pub fn classification(c: &Classification) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} (rule {}): {}", c.class, c.rule, c.summary);
    for e in &c.evidence {
        let _ = writeln!(out, "  evidence: {e}");
    }
    for s in &c.secondary {
        let _ = writeln!(out, "  also {} (rule {}): {}", s.class, s.rule, s.summary);
    }
    out
}

/// The remedy: the one action, why, and what to do by hand when knobs cannot help.
pub fn remedy(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "action: {} ({:?})", plan.action.describe(), plan.kind);
    let _ = writeln!(out, "reason: {}", plan.reason);
    if let Some(d) = &plan.degraded {
        let _ = writeln!(out, "degraded ({}): {}", d.reason, d.message);
        let _ = writeln!(out, "recommendation: {}", d.recommendation);
    }
    out
}

//! `kubectl sluice status NAME`, rendered from the object alone: conditions, replicas and the
//! settings in effect, each objective against its SLI, the bottleneck, the latest decisions and
//! what the operator is waiting for. Pure: the same object always prints the same text.

use std::fmt::Write as _;

use comfy_table::presets::NOTHING;
use comfy_table::{Cell, Table};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use sluice_api::{InferenceService, InferenceServiceStatus, SloStatus, condition};
use sluice_contract::{DecisionKind, DecisionOutcome, Knob, Objective, ObjectiveState};

/// An objective's value with its unit.
pub fn objective_value(o: Objective, v: f64) -> String {
    match o {
        Objective::TtftP95 | Objective::TpotAvg => seconds(v),
        Objective::VramMaxPercent => format!("{v:.1}%"),
        Objective::ErrorRateMax => format!("{:.3}%", v * 100.0),
    }
}

/// Seconds as people read them: `850ms`, `1.84s`.
pub fn seconds(v: f64) -> String {
    if v.abs() < 1.0 {
        format!("{:.0}ms", v * 1000.0)
    } else {
        format!("{v:.2}s")
    }
}

/// A timestamp to the second, UTC.
pub fn time(t: &Time) -> String {
    t.0.strftime("%Y-%m-%d %H:%M:%SZ").to_string()
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(NOTHING)
        .set_header(header.iter().map(Cell::new));
    t
}

/// A knob as the spec spells it.
pub fn knob(k: Knob) -> &'static str {
    match k {
        Knob::Replicas => "replicas",
        Knob::Quantization => "quantization",
        Knob::MaxTokens => "maxTokens",
    }
}

/// A decision's outcome as status stores it.
pub fn outcome(o: DecisionOutcome) -> &'static str {
    o.into()
}

/// A decision's change in one phrase: `replicas 2 -> 3`, or `hold`.
pub fn change(d: &sluice_api::Decision) -> String {
    match (&d.knob, &d.from, &d.to) {
        (Some(k), Some(from), Some(to)) => format!("{} {from} -> {to}", knob(*k)),
        (Some(k), _, Some(to)) => format!("{} -> {to}", knob(*k)),
        _ => "no change".into(),
    }
}

fn condition_line(out: &mut String, c: &Condition) {
    let _ = writeln!(
        out,
        "  {:<12} {:<8} {}: {}",
        c.type_, c.status, c.reason, c.message
    );
}

/// The whole status page. `decisions` caps the decision list (newest first).
pub fn render(isvc: &InferenceService, decisions: usize) -> String {
    let mut out = String::new();
    let ns = isvc.namespace().unwrap_or_default();
    let _ = writeln!(out, "InferenceService {ns}/{}", isvc.name_any());
    let Some(st) = isvc.status.as_ref() else {
        let _ = writeln!(
            out,
            "\nNo status yet: the operator has not reconciled this object. Is it running and \
             watching namespace {ns}?"
        );
        return out;
    };
    for c in &st.conditions {
        condition_line(&mut out, c);
    }
    let ready = st.ready_replicas.unwrap_or(0);
    let _ = write!(
        out,
        "\nReplicas     {ready} ready of {}",
        st.replicas.unwrap_or(0)
    );
    if let Some(e) = &st.effective {
        let _ = write!(
            out,
            " (in effect: {} replicas, quantization {}, maxTokens {})",
            e.replicas, e.quantization, e.max_tokens
        );
    }
    out.push('\n');
    if let Some(ep) = &st.endpoint {
        let _ = writeln!(out, "Endpoint     {ep}");
    }
    match &st.slo {
        Some(slo) => render_slo(&mut out, slo, decisions),
        None => {
            let _ = writeln!(out, "\nSLO          not evaluated yet");
        }
    }
    let _ = writeln!(out, "\nWaiting for  {}", waiting_for(isvc, st));
    out
}

fn render_slo(out: &mut String, slo: &SloStatus, decisions: usize) {
    let _ = write!(out, "\nSLO          {}", slo.state.as_str());
    if let Some(s) = &slo.slis {
        let _ = write!(out, " (SLIs over {} at {})", s.window, time(&s.observed_at));
    }
    out.push('\n');
    if let Some(summary) = &slo.summary {
        let _ = writeln!(out, "             {summary}");
    }
    if !slo.objectives.is_empty() {
        let mut t = table(&["OBJECTIVE", "TARGET", "NOW", "STATE", "SINCE"]);
        for o in &slo.objectives {
            t.add_row(vec![
                o.name.as_str().to_owned(),
                objective_value(o.name, o.target),
                o.value
                    .map(|v| objective_value(o.name, v))
                    .unwrap_or_else(|| "unknown".into()),
                o.state.as_str().to_owned(),
                o.since.as_ref().map(time).unwrap_or_default(),
            ]);
        }
        let _ = writeln!(out, "{t}");
    }
    if let Some(s) = &slo.slis {
        let mut other = Vec::new();
        let mut push = |label: &str, v: Option<f64>, f: &dyn Fn(f64) -> String| {
            if let Some(v) = v {
                other.push(format!("{label} {}", f(v)));
            }
        };
        push("requests", s.request_rate_per_second, &|v| {
            format!("{v:.2}/s")
        });
        push("queue depth", s.queue_depth, &|v| format!("{v:.1}"));
        push("queue wait", s.queue_wait_seconds, &seconds);
        push("tokens", s.tokens_per_second, &|v| format!("{v:.0}/s"));
        push("rejected", s.rejection_rate, &|v| {
            format!("{:.2}%", v * 100.0)
        });
        push("GPU", s.gpu_utilization, &|v| format!("{:.0}%", v * 100.0));
        push("pods reporting", s.reporting_pods, &|v| format!("{v:.0}"));
        if !other.is_empty() {
            let _ = writeln!(out, "Other SLIs   {}", other.join(", "));
        }
        if !s.unknown.is_empty() {
            let _ = writeln!(out, "Unreadable   {}", s.unknown.join(", "));
        }
    }
    if let Some(b) = &slo.bottleneck {
        let _ = write!(out, "Bottleneck   {}", b.class.as_str());
        if let Some(rule) = &b.rule {
            let _ = write!(out, " (rule {rule})");
        }
        if let Some(since) = &b.since {
            let _ = write!(out, " since {}", time(since));
        }
        out.push('\n');
        if let Some(summary) = &b.summary {
            let _ = writeln!(out, "             {summary}");
        }
    }
    if let Some(d) = &slo.degraded {
        let _ = writeln!(out, "Degraded     {}: {}", d.reason, d.message);
        let _ = writeln!(out, "             What to do: {}", d.recommendation);
    }
    if slo.decisions.is_empty() {
        let _ = writeln!(out, "\nNo decisions yet.");
        return;
    }
    let shown = decisions.min(slo.decisions.len());
    let _ = writeln!(
        out,
        "\nDecisions ({shown} of {}, newest first; `kubectl sluice explain` says why)",
        slo.decisions.len()
    );
    let mut t = table(&["ID", "TIME", "KIND", "CHANGE", "CLASS", "OUTCOME"]);
    for d in slo.decisions.iter().rev().take(decisions) {
        t.add_row(vec![
            d.id.to_string(),
            time(&d.time),
            d.kind.as_str().to_owned(),
            change(d),
            d.class.map(|c| c.as_str().to_owned()).unwrap_or_default(),
            outcome(d.outcome).to_owned(),
        ]);
    }
    let _ = writeln!(out, "{t}");
}

fn find<'a>(st: &'a InferenceServiceStatus, type_: &str) -> Option<&'a Condition> {
    st.conditions.iter().find(|c| c.type_ == type_)
}

/// What the operator waits for before it does anything more, in one sentence.
pub fn waiting_for(isvc: &InferenceService, st: &InferenceServiceStatus) -> String {
    let generation = isvc.metadata.generation.unwrap_or(0);
    if st.observed_generation.unwrap_or(0) < generation {
        return format!(
            "the operator to act on generation {generation} (it last acted on {})",
            st.observed_generation.unwrap_or(0)
        );
    }
    if let Some(c) = find(st, condition::DEGRADED).filter(|c| c.status == "True") {
        return format!(
            "a change to the spec or the cluster: {}: {}",
            c.reason, c.message
        );
    }
    if let Some(c) = find(st, condition::PROGRESSING).filter(|c| c.status == "True") {
        return format!("the rollout to finish: {}", c.message);
    }
    let Some(slo) = &st.slo else {
        return match find(st, condition::SLO_MET) {
            Some(c) if c.status == "Unknown" => format!("SLIs to read: {}", c.message),
            _ => "the first SLO evaluation".into(),
        };
    };
    if let Some(d) = slo
        .decisions
        .iter()
        .rev()
        .find(|d| d.outcome == DecisionOutcome::Pending)
    {
        return format!(
            "decision {} ({}) to roll out and fresh SLIs to judge it",
            d.id,
            change(d)
        );
    }
    if let Some(d) = &slo.degraded {
        return format!(
            "you: no knob can fix this ({}); {}",
            d.reason, d.recommendation
        );
    }
    match slo.state {
        ObjectiveState::Unknown => match find(st, condition::SLO_MET) {
            Some(c) => format!("SLIs it can read: {}", c.message),
            None => "SLIs it can read".into(),
        },
        ObjectiveState::Violated => {
            let advised = slo
                .decisions
                .last()
                .filter(|d| d.outcome == DecisionOutcome::Advised);
            match advised {
                Some(d) => format!(
                    "you: remediation is advisory and it advised {} (decision {})",
                    change(d),
                    d.id
                ),
                None => "the next evaluation: the breach must persist (or a cooldown end) before it acts".into(),
            }
        }
        ObjectiveState::Met | ObjectiveState::NoTraffic => match slo.decisions.last() {
            Some(d)
                if d.kind == DecisionKind::Remediate && d.outcome == DecisionOutcome::Improved =>
            {
                "sustained headroom before it steps back toward the spec".into()
            }
            _ => "nothing: the objectives hold".into(),
        },
    }
}

#[cfg(test)]
pub(crate) mod tests;

//! `kubectl sluice explain NAME`: why the operator decided what it did. One decision from the
//! log (`status.slo.decisions`) with its class, rule, reason, the evidence it compared, the
//! SLIs at the time, and what became of it; then the bottleneck as it stands now. Pure.

use std::fmt::Write as _;

use kube::ResourceExt;
use sluice_api::{Decision, InferenceService};
use sluice_contract::{DecisionKind, Evidence};

use super::status::{change, outcome, seconds, time};

/// `--decision` named an id the log does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("InferenceService {service} has no decision {id} (its log holds {held})")]
pub struct NoSuchDecision {
    pub service: String,
    pub id: u64,
    pub held: String,
}

/// `signal = value op threshold`, or `signal = value` for context.
pub fn evidence(e: &Evidence) -> String {
    match e.threshold {
        Some(t) if !e.op.is_empty() => format!("{} = {:.4} {} {:.4}", e.signal, e.value, e.op, t),
        _ => format!("{} = {:.4}", e.signal, e.value),
    }
}

/// The decision `--decision` names, else the latest that moved a knob, else the latest.
fn pick(decisions: &[Decision], id: Option<u64>) -> Option<&Decision> {
    match id {
        Some(id) => decisions.iter().find(|d| d.id == id),
        None => decisions
            .iter()
            .rev()
            .find(|d| d.knob.is_some() && d.kind != DecisionKind::Hold)
            .or(decisions.last()),
    }
}

/// The explanation page.
pub fn render(isvc: &InferenceService, id: Option<u64>) -> Result<String, NoSuchDecision> {
    let service = format!(
        "{}/{}",
        isvc.namespace().unwrap_or_default(),
        isvc.name_any()
    );
    let mut out = String::new();
    let slo = isvc.status.as_ref().and_then(|s| s.slo.as_ref());
    let decisions = slo.map(|s| s.decisions.as_slice()).unwrap_or(&[]);
    match pick(decisions, id) {
        Some(d) => decision(&mut out, &service, d),
        None if id.is_some() => {
            let held = match (decisions.first(), decisions.last()) {
                (Some(a), Some(b)) => format!("ids {} to {}", a.id, b.id),
                _ => "no decisions".into(),
            };
            return Err(NoSuchDecision {
                service,
                id: id.unwrap_or_default(),
                held,
            });
        }
        None => {
            let _ = writeln!(
                out,
                "InferenceService {service}: the SLO loop has made no decision yet."
            );
        }
    }
    if let Some(b) = slo.and_then(|s| s.bottleneck.as_ref()) {
        let _ = write!(out, "\nNow: {}", b.class.as_str());
        if let Some(rule) = &b.rule {
            let _ = write!(out, " (rule {rule})");
        }
        if let Some(summary) = &b.summary {
            let _ = write!(out, ": {summary}");
        }
        out.push('\n');
        for e in &b.evidence {
            let _ = writeln!(out, "  {e}");
        }
    }
    if let Some(d) = slo.and_then(|s| s.degraded.as_ref()) {
        let _ = writeln!(out, "\nNo knob can fix this ({}): {}", d.reason, d.message);
        let _ = writeln!(out, "What to do: {}", d.recommendation);
    }
    Ok(out)
}

fn decision(out: &mut String, service: &str, d: &Decision) {
    let _ = write!(
        out,
        "InferenceService {service}, decision {} at {}",
        d.id,
        time(&d.time)
    );
    if let Some(mode) = d.mode {
        let mode: &str = mode.into();
        let _ = write!(out, " (mode {mode})");
    }
    let _ = writeln!(out, "\n{}: {}", d.kind.as_str(), change(d));
    if let Some(class) = d.class {
        let _ = write!(out, "Bottleneck: {}", class.as_str());
        if let Some(rule) = &d.rule {
            let _ = write!(out, " (rule {rule}, see docs/slo.md)");
        }
        out.push('\n');
    }
    let _ = writeln!(out, "Why: {}", d.reason);
    if let Some(r) = d.reverts {
        let _ = writeln!(out, "It undoes decision {r}.");
    }
    if !d.evidence.is_empty() {
        let _ = writeln!(out, "Evidence:");
        for e in &d.evidence {
            let _ = writeln!(out, "  {}", evidence(e));
        }
    }
    if let Some(b) = &d.baseline {
        let mut slis = Vec::new();
        if let Some(v) = b.ttft_p95_seconds {
            slis.push(format!("TTFT P95 {}", seconds(v)));
        }
        if let Some(v) = b.tpot_seconds {
            slis.push(format!("TPOT {}", seconds(v)));
        }
        if let Some(v) = b.error_ratio {
            slis.push(format!("errors {:.3}%", v * 100.0));
        }
        if let Some(v) = b.memory_ratio {
            slis.push(format!("memory {:.1}%", v * 100.0));
        }
        if let Some(v) = b.request_rate_per_second {
            slis.push(format!("{v:.2} req/s"));
        }
        slis.push(format!("{} replicas", b.replicas));
        let _ = write!(out, "SLIs then: {}", slis.join(", "));
        if !b.violated.is_empty() {
            let names: Vec<&str> = b.violated.iter().map(|o| o.as_str()).collect();
            let _ = write!(out, "; violated: {}", names.join(", "));
        }
        out.push('\n');
    }
    let _ = write!(out, "Outcome: {}", outcome(d.outcome));
    if let Some(detail) = &d.outcome_detail {
        let _ = write!(out, ": {detail}");
    }
    if let Some(t) = &d.settled_at {
        let _ = write!(out, " (rolled out {})", time(t));
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::status::tests::fixture;

    #[test]
    fn explains_the_latest_knob_move_with_its_evidence() {
        let text = render(&fixture(), None).unwrap();
        assert!(
            text.starts_with("InferenceService apps/chat, decision 7 at 2026-12-04 20:01:00Z (mode Auto)\nRemediate: replicas 2 -> 3\n"),
            "{text}"
        );
        assert!(
            text.contains("Bottleneck: QueueBound (rule Q1, see docs/slo.md)"),
            "{text}"
        );
        assert!(
            text.contains("  queueDepthPerPod = 42.0000 >= 2.0000\n"),
            "{text}"
        );
        assert!(text.contains("SLIs then: TTFT P95 1.84s, errors 0.000%, 12.50 req/s, 2 replicas; violated: ttftP95\n"), "{text}");
        assert!(text.contains("Outcome: Pending\n"), "{text}");
        assert!(
            text.contains("\nNow: QueueBound (rule Q1): the queue grows"),
            "{text}"
        );
    }

    #[test]
    fn an_unknown_decision_id_is_an_error_naming_the_ids_held() {
        let err = render(&fixture(), Some(99)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "InferenceService apps/chat has no decision 99 (its log holds ids 6 to 7)"
        );
        let text = render(&fixture(), Some(6)).unwrap();
        assert!(text.contains("decision 6"), "{text}");
        assert!(text.contains("Hold: no change"), "{text}");
    }
}

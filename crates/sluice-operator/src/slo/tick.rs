//! The SLO loop's thin, effectful part inside a reconcile: decide whether a tick is due, read
//! the SLIs, run the pure [`super::evaluate()`], push `max_tokens` to the pods when the plan
//! acts on it, and hand back what the reconcile must write (status, effective settings) and
//! announce (Events, metrics) once the status write has succeeded.

use std::time::Duration;

use kube::Client;
use kube::runtime::events::EventType;
use sluice_api::{EffectiveSettings, InferenceServiceStatus, RemediationMode, SloStatus};
use sluice_slo::{Action, DecisionKind};
use tracing::{info, warn};

use super::evaluate::{due_in, evaluate, history_seconds, is_due};
use super::{SloLoop, actuate, mapping};
use crate::metrics::Metrics;
use crate::status::Rollout;
use crate::validate::Validated;

/// An Event to publish after the status write.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEvent {
    pub type_: EventType,
    /// Stable CamelCase reason: the action (`ScaleReplicas`, `SetQuantization`, `SetMaxTokens`)
    /// or, for holds and degraded notes, the bottleneck class.
    pub reason: String,
    /// The decision kind (`Remediate`, `StepBack`, `Revert`, `Hold`, `Degraded`).
    pub action: String,
    pub note: String,
}

/// What the reconcile writes and announces for the SLO loop.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    /// `status.effective` to build and write.
    pub effective: EffectiveSettings,
    /// `status.slo` to write; None leaves the stored one.
    pub slo: Option<SloStatus>,
    /// `SLOMet`: status (None = Unknown), reason, message; None leaves the stored one.
    pub condition: Option<(Option<bool>, String, String)>,
    /// Events to publish once status is written.
    pub events: Vec<PendingEvent>,
    /// `(action, class)` labels of decisions to count once status is written.
    pub decisions: Vec<(&'static str, &'static str)>,
    /// When to evaluate again.
    pub requeue: Duration,
}

/// The metric label of an action.
pub fn action_label(a: &Action) -> &'static str {
    match a {
        Action::Hold => "hold",
        Action::ScaleReplicas { .. } => "scale_replicas",
        Action::SetQuantization { .. } => "set_quantization",
        Action::SetMaxTokens { .. } => "set_max_tokens",
    }
}

fn event_reason(a: &Action, class: &str) -> String {
    match a {
        Action::Hold => class.to_owned(),
        Action::ScaleReplicas { .. } => "ScaleReplicas".into(),
        Action::SetQuantization { .. } => "SetQuantization".into(),
        Action::SetMaxTokens { .. } => "SetMaxTokens".into(),
    }
}

fn kind_name(k: DecisionKind) -> &'static str {
    match k {
        DecisionKind::Remediate => "Remediate",
        DecisionKind::StepBack => "StepBack",
        DecisionKind::Revert => "Revert",
        DecisionKind::Hold => "Hold",
        DecisionKind::Degraded => "Degraded",
    }
}

/// Runs the SLO loop for one service if a tick is due. None when the loop is off.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename the arguments
pub async fn run(
    lp: &SloLoop,
    client: &Client,
    metrics: &Metrics,
    v: &Validated,
    eff: EffectiveSettings,
    rollout: Option<&Rollout>,
    old: Option<&InferenceServiceStatus>,
    now: f64,
) -> Option<Tick> {
    if v.remediation.mode == RemediationMode::Off {
        lp.forget(&v.uid);
        metrics.forget_slo(&v.namespace, &v.name);
        return None;
    }
    let old_slo = old.and_then(|s| s.slo.as_ref());
    let idle = |condition| Tick {
        effective: eff.clone(),
        slo: None,
        condition,
        events: Vec::new(),
        decisions: Vec::new(),
        requeue: lp.interval,
    };
    let Some(url) = v
        .slo
        .prometheus_url
        .as_deref()
        .or(lp.prometheus_url.as_deref())
    else {
        // Nothing to poll: only a change of the object (or the resync) can help.
        return Some(Tick {
            requeue: Duration::MAX,
            ..idle(Some((
                None,
                "NoPrometheusUrl".into(),
                "no Prometheus to read SLIs from: set the operator's --prometheus-url or \
                 spec.slo.prometheusUrl"
                    .into(),
            )))
        });
    };
    if !is_due(old_slo, now, lp.interval) {
        return Some(Tick {
            requeue: due_in(old_slo, now, lp.interval),
            ..idle(None)
        });
    }
    let source = mapping::selector(v)
        .map_err(|e| e.to_string())
        .and_then(|sel| lp.sources.source(url, &sel, mapping::window(v)));
    let source = match source {
        Ok(s) => s,
        Err(e) => {
            return Some(idle(Some((
                None,
                "MetricsSourceInvalid".into(),
                format!("failed to create metrics source for {url}: {e}"),
            ))));
        }
    };
    let sli = source.read(now).await;
    let history = lp.remember(&v.uid, sli, history_seconds(v, &eff));
    let mut ev = evaluate(v, &eff, rollout, old_slo, &history, now);
    let class = ev.plan.classification.class.as_str();
    let mut events = Vec::new();
    let mut decisions = Vec::new();

    if let Some(n) = ev.max_tokens_to_push() {
        let report = actuate::push_max_tokens(client, lp.limits.as_ref(), v, n).await;
        metrics
            .max_tokens_pushes
            .with_label_values(&["success"])
            .inc_by(report.updated.len() as u64);
        metrics
            .max_tokens_pushes
            .with_label_values(&["error"])
            .inc_by(report.failed.len() as u64);
        let note = format!("maxTokens {n}: {}", report.describe());
        info!(isvc = %v.name, namespace = %v.namespace, "{note}");
        if !report.failed.is_empty() {
            warn!(isvc = %v.name, namespace = %v.namespace, "{note}");
            events.push(PendingEvent {
                type_: EventType::Warning,
                reason: "MaxTokensPushFailed".into(),
                action: "SetMaxTokens".into(),
                note: format!("{note}; the Deployment args carry it to every pod"),
            });
        }
        // The summary says what happened on the pods, not only what was planned.
        if let Some(s) = ev.slo.summary.as_mut() {
            s.push_str(&format!(" ({})", report.describe()));
        }
    }
    if let Some(d) = ev.recorded() {
        decisions.push((action_label(&d.action), d.class.as_str()));
        let warning = matches!(d.kind, DecisionKind::Degraded)
            || (d.action == Action::Hold && d.class == sluice_slo::Bottleneck::Unknown);
        events.push(PendingEvent {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: event_reason(&d.action, d.class.as_str()),
            action: kind_name(d.kind).into(),
            note: d.reason.clone(),
        });
    }
    metrics.set_slo(&v.namespace, &v.name, &format!("{:?}", ev.slo.state), class);
    let condition = std::mem::take(&mut ev.condition);
    Some(Tick {
        effective: ev.effective,
        slo: Some(ev.slo),
        condition: Some(condition),
        events,
        decisions,
        requeue: lp.interval,
    })
}

//! The SLO loop inside a reconcile, split along the reconcile's stages:
//! [`observe`] decides whether a tick is due and reads the SLIs (the only I/O before the
//! decision), [`decide`] runs the pure [`super::evaluate()`] and says what to write, and [`act`]
//! pushes the run-time settings to the pods and announces — only after status has recorded the
//! decision.

use std::time::Duration;

use kube::Client;
use kube::runtime::events::EventType;
use sluice_api::{InferenceServiceStatus, SloStatus};
use sluice_contract::admin::RuntimeSettings;
use sluice_contract::{Action, AppliedSettings, BottleneckClass, DecisionKind, Mode};
use tracing::{info, warn};

use super::evaluate::{due_in, evaluate, history_seconds, is_due};
use super::{SloLoop, actuate, mapping};
use crate::admin_key::AdminCredentials;
use crate::metrics::{Metrics, Outcome};
use crate::status::Rollout;
use crate::validate::Validated;
use sluice_slo::Sli;

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
    pub effective: AppliedSettings,
    /// `status.slo` to write; None leaves the stored one.
    pub slo: Option<SloStatus>,
    /// `SLOMet`: status (None = Unknown), reason, message; None leaves the stored one.
    pub condition: Option<(Option<bool>, String, String)>,
    /// Events to publish once status is written.
    pub events: Vec<PendingEvent>,
    /// `(action, class)` labels of decisions to count once status is written.
    pub decisions: Vec<(&'static str, &'static str)>,
    /// Run-time settings to push to the ready pods once status is written.
    pub push_settings: Option<RuntimeSettings>,
    /// `(state, class, degraded)` for the SLO gauges, when this tick evaluated.
    pub gauges: Option<(&'static str, &'static str, bool)>,
    /// When to evaluate again.
    pub requeue: Duration,
}

/// What the SLO loop observed for one service this reconcile.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// `remediation.mode: Off`: nothing is read or decided.
    Off,
    /// No Prometheus to read from.
    NoPrometheusUrl,
    /// The service names a Prometheus URL the operator's allow-list does not cover.
    UrlNotAllowed,
    /// The last evaluation is recent; the next is due after `requeue`.
    NotDue { requeue: Duration },
    /// The metrics source could not be created (a bad URL or selector).
    SourceInvalid { message: String },
    /// SLIs were read: the service's history, oldest first, the new snapshot last.
    Read { history: Vec<Sli> },
}

/// Reads the SLIs if a tick is due (the observe stage's SLO part). `eff` sizes the history
/// the planner needs.
#[tracing::instrument(name = "slo_read", skip_all)]
pub async fn observe(lp: &SloLoop, v: &Validated, eff: &AppliedSettings, now: f64) -> Observation {
    if v.remediation.mode == Mode::Off {
        lp.forget(&v.uid);
        return Observation::Off;
    }
    let Some(url) = v
        .slo
        .prometheus_url
        .as_deref()
        .or(lp.prometheus_url.as_deref())
    else {
        return Observation::NoPrometheusUrl;
    };
    if !lp.allows_prometheus_url(url) {
        return Observation::UrlNotAllowed;
    }
    let last = lp.last_read(&v.uid);
    if !is_due(last, now, lp.interval) {
        return Observation::NotDue {
            requeue: due_in(last, now, lp.interval),
        };
    }
    let window = mapping::window(v);
    match lp.fleet_sli(url, window, &v.namespace, &v.name, now).await {
        Some(Ok(sli)) => {
            return Observation::Read {
                history: lp.remember(&v.uid, sli, history_seconds(v, eff)),
            };
        }
        Some(Err(e)) => {
            return Observation::SourceInvalid {
                message: format!("failed to create metrics source for {url}: {e}"),
            };
        }
        None => {}
    }
    let source = mapping::selector(v)
        .map_err(|e| e.to_string())
        .and_then(|sel| lp.sources.source(url, &sel, window));
    match source {
        Ok(source) => {
            let sli = source.read(now).await;
            Observation::Read {
                history: lp.remember(&v.uid, sli, history_seconds(v, eff)),
            }
        }
        Err(e) => Observation::SourceInvalid {
            message: format!("failed to create metrics source for {url}: {e}"),
        },
    }
}

/// What the SLO loop decides for one service (the decide stage's SLO part). Pure. None when the
/// loop is off.
pub fn decide(
    interval: Duration,
    v: &Validated,
    eff: AppliedSettings,
    rollout: Option<&Rollout>,
    old: Option<&InferenceServiceStatus>,
    observation: &Observation,
    now: f64,
) -> Option<Tick> {
    let idle = |condition| Tick {
        effective: eff,
        slo: None,
        condition,
        events: Vec::new(),
        decisions: Vec::new(),
        push_settings: None,
        gauges: None,
        requeue: interval,
    };
    let history = match observation {
        Observation::Off => return None,
        // Nothing to poll: only a change of the object (or the resync) can help.
        Observation::NoPrometheusUrl => {
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
        }
        // A fixed reason: nothing was sent, and nothing about the host is echoed back.
        Observation::UrlNotAllowed => {
            return Some(Tick {
                requeue: Duration::MAX,
                ..idle(Some((
                    None,
                    "PrometheusUrlNotAllowed".into(),
                    "spec.slo.prometheusUrl is not on the operator's allow-list \
                     (--allowed-prometheus-urls, chart value slo.allowedPrometheusUrls); \
                     no SLIs were read"
                        .into(),
                )))
            });
        }
        Observation::NotDue { requeue } => {
            return Some(Tick {
                requeue: *requeue,
                ..idle(None)
            });
        }
        Observation::SourceInvalid { message } => {
            return Some(idle(Some((
                None,
                "MetricsSourceInvalid".into(),
                message.clone(),
            ))));
        }
        Observation::Read { history } => history,
    };
    let old_slo = old.and_then(|s| s.slo.as_ref());
    let mut ev = evaluate(v, &eff, rollout, old_slo, history, now);
    let mut events = Vec::new();
    let mut decisions = Vec::new();
    let push_settings = ev.settings_to_push();
    if let (Some(p), Some(s)) = (push_settings, ev.slo.summary.as_mut()) {
        s.push_str(&format!(
            " (pushing maxTokens {} and quantization {} to the ready pods)",
            p.max_tokens, p.quantization
        ));
    }
    for bad in &ev.unreadable {
        events.push(PendingEvent {
            type_: EventType::Warning,
            reason: "DecisionUnreadable".into(),
            action: DecisionKind::Hold.as_str().into(),
            note: format!("{bad}; left out of the decision log"),
        });
    }
    if let Some(d) = ev.recorded() {
        decisions.push((d.action.label(), d.class.as_str()));
        let warning = matches!(d.kind, DecisionKind::Degraded)
            || (d.action == Action::Hold && d.class == BottleneckClass::Unknown);
        events.push(PendingEvent {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            // A hold is named by the class it held for; a change by its action.
            reason: match d.action {
                Action::Hold => d.class.as_str().into(),
                _ => d.action.event_reason().into(),
            },
            action: d.kind.as_str().into(),
            note: d.reason.clone(),
        });
    }
    let gauges = Some((
        ev.slo.state.as_str(),
        ev.plan.classification.class.as_str(),
        ev.plan.degraded.is_some(),
    ));
    let condition = std::mem::take(&mut ev.condition);
    Some(Tick {
        effective: ev.effective,
        slo: Some(ev.slo),
        condition: Some(condition),
        events,
        decisions,
        push_settings,
        gauges,
        requeue: interval,
    })
}

/// Sets the SLO metrics from a tick: state, bottleneck and objective gauges when it evaluated,
/// a count per decision. With `tick` None (mode Off) it clears the service's SLO series.
pub fn record(metrics: &Metrics, v: &Validated, tick: Option<&Tick>) {
    let Some(tick) = tick else {
        metrics.forget_slo(&v.namespace, &v.name);
        return;
    };
    if let Some((state, class, degraded)) = tick.gauges {
        metrics.set_slo(&v.namespace, &v.name, state, class, degraded);
        metrics.set_objectives(&v.namespace, &v.name, &mapping::targets(v));
    }
    for (action, class) in &tick.decisions {
        metrics.count_decision(&v.namespace, &v.name, action, class);
    }
}

/// Carries out what [`decide`] chose once status has recorded it (the act stage's SLO part):
/// pushes the run-time settings to the ready pods and sets the SLO metrics. Returns Events to
/// publish about the push. With `tick` None (mode Off) it clears the service's SLO gauges.
#[tracing::instrument(name = "slo_push", skip_all)]
pub async fn act(
    lp: &SloLoop,
    client: &Client,
    metrics: &Metrics,
    v: &Validated,
    tick: Option<&Tick>,
    admin: Option<&AdminCredentials>,
) -> Vec<PendingEvent> {
    record(metrics, v, tick);
    let Some(tick) = tick else {
        return Vec::new();
    };
    let Some(settings) = tick.push_settings else {
        return Vec::new();
    };
    let report = actuate::push_settings(client, lp.settings.as_ref(), v, settings, admin).await;
    metrics
        .settings_pushes
        .with_label_values(&[Outcome::Success.as_str()])
        .inc_by(report.updated.len() as u64);
    metrics
        .settings_pushes
        .with_label_values(&[Outcome::Error.as_str()])
        .inc_by(report.failed.len() as u64);
    let note = format!(
        "maxTokens {}, quantization {}: {}",
        settings.max_tokens,
        settings.quantization,
        report.describe()
    );
    if report.failed.is_empty() {
        info!(isvc = %v.name, namespace = %v.namespace, "{note}");
        return Vec::new();
    }
    warn!(isvc = %v.name, namespace = %v.namespace, "{note}");
    vec![PendingEvent {
        type_: EventType::Warning,
        reason: "SettingsPushFailed".into(),
        action: "SetSettings".into(),
        note: format!(
            "{note}; the pods read them from the settings ConfigMap within a minute or so"
        ),
    }]
}

//! The operator's own metrics, in one registry: reconciles by outcome, errors by category,
//! reconcile duration, writes by object kind, and whether this replica leads. Label values are
//! bounded (fixed sets), units are in the names, histogram buckets are explicit.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use sluice_contract::{ACTION_LABELS, BottleneckClass, ObjectiveState};
use sluice_slo::SloTargets;

use crate::error::CATEGORIES;

/// The `outcome` label of the reconcile and settings-push counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 2] = [Outcome::Success, Outcome::Error];

    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Error => "error",
        }
    }
}

/// Kinds written by the operator, the values of the `kind` label.
pub const WRITE_KINDS: &[&str] = &[
    "Deployment",
    "Service",
    "PodDisruptionBudget",
    "ServiceMonitor",
    "PrometheusRule",
    "Status",
];

/// `sluice_operator_slo_bottleneck{namespace, name, class}`.
pub const SLO_BOTTLENECK_METRIC: &str = "sluice_operator_slo_bottleneck";
/// `sluice_operator_slo_actions_total{namespace, name, action}`: knob moves per service (the
/// dashboard's decision annotations).
pub const SLO_ACTIONS_METRIC: &str = "sluice_operator_slo_actions_total";
/// An objective of a service, exported as its own gauge so the unit is in the name: the
/// dashboard draws each as the line its SLI must stay under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    TtftP95,
    Tpot,
    ErrorRatio,
    MemoryRatio,
}

impl Objective {
    pub const ALL: [Objective; 4] = [
        Objective::TtftP95,
        Objective::Tpot,
        Objective::ErrorRatio,
        Objective::MemoryRatio,
    ];

    /// The gauge's name (labels `namespace`, `name`).
    pub const fn metric(self) -> &'static str {
        match self {
            Objective::TtftP95 => "sluice_operator_slo_ttft_p95_objective_seconds",
            Objective::Tpot => "sluice_operator_slo_tpot_objective_seconds",
            Objective::ErrorRatio => "sluice_operator_slo_error_ratio_objective",
            Objective::MemoryRatio => "sluice_operator_slo_memory_ratio_objective",
        }
    }

    fn value(self, t: &SloTargets) -> Option<f64> {
        match self {
            Objective::TtftP95 => t.ttft_p95_seconds,
            Objective::Tpot => t.tpot_seconds,
            Objective::ErrorRatio => t.error_ratio,
            Objective::MemoryRatio => Some(t.memory_ratio),
        }
    }
}

/// Reconcile durations span a cache-hit no-op (milliseconds) to slow API servers (seconds).
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// All operator metrics.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// `sluice_operator_reconciles_total{outcome="success"|"error"}`.
    pub reconciles: IntCounterVec,
    /// `sluice_operator_reconcile_errors_total{category}`.
    pub errors: IntCounterVec,
    /// `sluice_operator_reconcile_duration_seconds`.
    pub duration: Histogram,
    /// `sluice_operator_writes_total{kind}`.
    pub writes: IntCounterVec,
    /// `sluice_operator_leader` (1 while this replica holds the lease).
    pub leader: IntGauge,
    /// `sluice_operator_slo_decisions_total{action, class}`: decision-log entries by the knob
    /// moved (or `hold`) and the bottleneck class at the time.
    pub slo_decisions: IntCounterVec,
    /// `sluice_operator_slo_state{namespace, name, state}`: 1 for the service's current SLO
    /// state, 0 for the others (one series set per InferenceService).
    pub slo_state: IntGaugeVec,
    /// `sluice_operator_slo_bottleneck{namespace, name, class}`: 1 for the current class.
    pub slo_bottleneck: IntGaugeVec,
    /// `sluice_operator_slo_degraded{namespace, name}`: 1 while knobs cannot fix the service's
    /// breach (the `SluiceRemediationExhausted` alert reads it).
    pub slo_degraded: IntGaugeVec,
    /// `sluice_operator_settings_pushes_total{outcome="success"|"error"}`: per-pod run-time
    /// settings updates (`max_tokens`, quantization).
    pub settings_pushes: IntCounterVec,
    /// [`SLO_ACTIONS_METRIC`]: knob moves per service.
    pub slo_actions: IntCounterVec,
    /// The gauge of each of [`Objective::ALL`], in that order.
    pub slo_objectives: Vec<GaugeVec>,
}

impl Metrics {
    /// Creates and registers every metric, with all label values pre-initialised to 0.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new("sluice_operator_reconciles_total", "Reconciles by outcome."),
            &["outcome"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "sluice_operator_reconcile_errors_total",
                "Reconcile errors by category.",
            ),
            &["category"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "sluice_operator_reconcile_duration_seconds",
                "Time one reconcile takes, in seconds.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
        )?;
        let writes = IntCounterVec::new(
            Opts::new(
                "sluice_operator_writes_total",
                "Objects written (applied, deleted or status-patched) by kind.",
            ),
            &["kind"],
        )?;
        let leader = IntGauge::new(
            "sluice_operator_leader",
            "1 while this replica holds the leader lease.",
        )?;
        let slo_decisions = IntCounterVec::new(
            Opts::new(
                "sluice_operator_slo_decisions_total",
                "SLO-loop decisions by action and bottleneck class.",
            ),
            &["action", "class"],
        )?;
        let slo_state = IntGaugeVec::new(
            Opts::new(
                sluice_slo::promql::alerts::SLO_STATE_METRIC,
                "1 for each InferenceService's current SLO state (Met, Violated, NoTraffic, Unknown).",
            ),
            &["namespace", "name", "state"],
        )?;
        let slo_bottleneck = IntGaugeVec::new(
            Opts::new(
                SLO_BOTTLENECK_METRIC,
                "1 for each InferenceService's current bottleneck class.",
            ),
            &["namespace", "name", "class"],
        )?;
        let slo_degraded = IntGaugeVec::new(
            Opts::new(
                sluice_slo::promql::alerts::SLO_DEGRADED_METRIC,
                "1 while no knob can fix an InferenceService's SLO breach (status.degraded is set).",
            ),
            &["namespace", "name"],
        )?;
        let settings_pushes = IntCounterVec::new(
            Opts::new(
                "sluice_operator_settings_pushes_total",
                "Run-time settings updates (max_tokens, quantization) sent to server pods, by outcome.",
            ),
            &["outcome"],
        )?;
        let slo_actions = IntCounterVec::new(
            Opts::new(
                SLO_ACTIONS_METRIC,
                "Knob moves (scale, quantization, max_tokens) per InferenceService.",
            ),
            &["namespace", "name", "action"],
        )?;
        let slo_objectives = Objective::ALL
            .iter()
            .map(|o| {
                GaugeVec::new(
                    Opts::new(
                        o.metric(),
                        "Each InferenceService's objective for this SLI.",
                    ),
                    &["namespace", "name"],
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        for g in &slo_objectives {
            registry.register(Box::new(g.clone()))?;
        }
        registry.register(Box::new(slo_actions.clone()))?;
        registry.register(Box::new(slo_decisions.clone()))?;
        registry.register(Box::new(slo_state.clone()))?;
        registry.register(Box::new(slo_bottleneck.clone()))?;
        registry.register(Box::new(slo_degraded.clone()))?;
        registry.register(Box::new(settings_pushes.clone()))?;
        for a in ACTION_LABELS {
            for c in BottleneckClass::ALL.iter().map(|c| c.as_str()) {
                slo_decisions.with_label_values(&[a, c]);
            }
        }
        for o in Outcome::ALL {
            settings_pushes.with_label_values(&[o.as_str()]);
        }
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(writes.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        for o in Outcome::ALL {
            reconciles.with_label_values(&[o.as_str()]);
        }
        for c in CATEGORIES {
            errors.with_label_values(&[*c]);
        }
        for k in WRITE_KINDS {
            writes.with_label_values(&[*k]);
        }
        Ok(Self {
            registry,
            reconciles,
            errors,
            duration,
            writes,
            leader,
            slo_decisions,
            slo_state,
            slo_bottleneck,
            slo_degraded,
            settings_pushes,
            slo_actions,
            slo_objectives,
        })
    }

    /// Sets a service's objective gauges, and creates its action counters at 0 so the first
    /// move is an increase Prometheus can see.
    pub fn set_objectives(&self, namespace: &str, name: &str, targets: &SloTargets) {
        for (objective, gauge) in Objective::ALL.iter().zip(&self.slo_objectives) {
            match objective.value(targets) {
                Some(v) => gauge.with_label_values(&[namespace, name]).set(v),
                None => {
                    let _ = gauge.remove_label_values(&[namespace, name]);
                }
            }
        }
        for a in ACTION_LABELS.iter().filter(|a| **a != "hold") {
            self.slo_actions.with_label_values(&[namespace, name, a]);
        }
    }

    /// Counts one SLO-loop decision: fleet-wide by action and class, and per service when it
    /// moved a knob.
    pub fn count_decision(&self, namespace: &str, name: &str, action: &str, class: &str) {
        self.slo_decisions.with_label_values(&[action, class]).inc();
        if action != "hold" {
            self.slo_actions
                .with_label_values(&[namespace, name, action])
                .inc();
        }
    }

    /// Sets the one-hot SLO state and bottleneck gauges of a service, and whether it is degraded.
    pub fn set_slo(&self, namespace: &str, name: &str, state: &str, class: &str, degraded: bool) {
        self.slo_degraded
            .with_label_values(&[namespace, name])
            .set(i64::from(degraded));
        for s in ObjectiveState::ALL.iter().map(|s| s.as_str()) {
            self.slo_state
                .with_label_values(&[namespace, name, s])
                .set(i64::from(s == state));
        }
        for c in BottleneckClass::ALL.iter().map(|c| c.as_str()) {
            self.slo_bottleneck
                .with_label_values(&[namespace, name, c])
                .set(i64::from(c == class));
        }
    }

    /// Drops a deleted service's SLO series so the registry does not grow without bound.
    pub fn forget_slo(&self, namespace: &str, name: &str) {
        let _ = self.slo_degraded.remove_label_values(&[namespace, name]);
        for g in &self.slo_objectives {
            let _ = g.remove_label_values(&[namespace, name]);
        }
        for a in ACTION_LABELS {
            let _ = self.slo_actions.remove_label_values(&[namespace, name, a]);
        }
        for s in ObjectiveState::ALL.iter().map(|s| s.as_str()) {
            let _ = self.slo_state.remove_label_values(&[namespace, name, s]);
        }
        for c in BottleneckClass::ALL.iter().map(|c| c.as_str()) {
            let _ = self
                .slo_bottleneck
                .remove_label_values(&[namespace, name, c]);
        }
    }

    /// Prometheus text exposition of the registry.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        // Encoding into a Vec only fails on invalid metric families, which we never build.
        if encoder.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_preinitialised_series() {
        let m = Metrics::new().unwrap();
        m.errors.with_label_values(&["InvalidSpec"]).inc();
        let text = m.render();
        assert!(
            text.contains("sluice_operator_reconcile_errors_total{category=\"InvalidSpec\"} 1")
        );
        assert!(
            text.contains("sluice_operator_reconcile_errors_total{category=\"ApplyFailed\"} 0")
        );
        assert!(text.contains("sluice_operator_reconcile_duration_seconds_bucket{le=\"0.005\"} 0"));
        assert!(text.contains("sluice_operator_writes_total{kind=\"Status\"} 0"));
    }
}

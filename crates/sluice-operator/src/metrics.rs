//! The operator's own metrics, in one registry: reconciles by outcome, errors by category,
//! reconcile duration, writes by object kind, and whether this replica leads. Label values are
//! bounded (fixed sets), units are in the names, histogram buckets are explicit.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use crate::error::CATEGORIES;

/// Kinds written by the operator, the values of the `kind` label.
pub const WRITE_KINDS: &[&str] = &[
    "Deployment",
    "Service",
    "PodDisruptionBudget",
    "ServiceMonitor",
    "Status",
];

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
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(writes.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        for outcome in ["success", "error"] {
            reconciles.with_label_values(&[outcome]);
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
        })
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

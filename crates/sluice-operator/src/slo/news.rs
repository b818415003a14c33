//! Whether an SLO evaluation is worth a status write. Pure.
//!
//! Every write to an InferenceService's status is a request to the apiserver, an etcd write and
//! a watch event to every watcher (the operator itself, GitOps tools, dashboards). Rewriting
//! `status.slo` on every tick would cost one write per service per interval — 67 writes/s for
//! 1,000 services at 15 s — even when nothing happens. So a new evaluation replaces the stored
//! one only when it is news:
//! - anything discrete changed: the overall state, an objective's state, the bottleneck class or
//!   rule, the degraded reason, the decision log, which SLIs are measured at all; or
//! - the stored SLI snapshot is older than [`REFRESH_SECONDS`] and some value has moved by more
//!   than [`MATERIAL_CHANGE`] since.
//!
//! Numbers that jitter within that band (and the sentences quoting them) are not rewritten; the
//! operator's own metrics and the next discrete change carry them. A service whose SLIs stay
//! steady (or stay unmeasurable) therefore costs no writes at all.

use sluice_api::{SliSnapshot, SloStatus};

/// Age after which a stored SLI snapshot is refreshed if its values have moved.
pub const REFRESH_SECONDS: i64 = 300;

/// Relative change of an SLI value that counts as moved (10 %).
pub const MATERIAL_CHANGE: f64 = 0.10;

/// Whether `new` should replace `old` in status at `now` (Unix seconds).
pub fn is_news(old: &SloStatus, new: &SloStatus, now: i64) -> bool {
    if discrete(old) != discrete(new) {
        return true;
    }
    match (&old.slis, &new.slis) {
        (Some(a), Some(b)) => {
            let age = now - a.observed_at.0.as_second();
            age >= REFRESH_SECONDS && values(a).iter().zip(values(b)).any(|(x, y)| moved(*x, y))
        }
        (None, None) => false,
        _ => true,
    }
}

/// Everything in an SLO status except measured numbers and the sentences that quote them.
fn discrete(s: &SloStatus) -> impl PartialEq + use<> {
    (
        s.state,
        s.objectives
            .iter()
            .map(|o| (o.name, o.state, o.target.to_bits(), o.value.is_some()))
            .collect::<Vec<_>>(),
        s.bottleneck.as_ref().map(|b| (b.class, b.rule.clone())),
        s.degraded.as_ref().map(|d| d.reason.clone()),
        s.decisions.clone(),
        s.slis.as_ref().map(|x| {
            (
                x.window.clone(),
                x.unknown.clone(),
                x.memory_type.clone(),
                values(x).map(|v| v.is_some()),
            )
        }),
    )
}

fn values(s: &SliSnapshot) -> [Option<f64>; 11] {
    [
        s.ttft_p95_seconds,
        s.tpot_avg_seconds,
        s.vram_percent,
        s.error_rate,
        s.rejection_rate,
        s.request_rate_per_second,
        s.queue_depth,
        s.queue_wait_seconds,
        s.tokens_per_second,
        s.gpu_utilization,
        s.reporting_pods,
    ]
}

fn moved(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => {
            let scale = a.abs().max(b.abs());
            // Below 1e-9 both are zero for every SLI we measure.
            scale > 1e-9 && (a - b).abs() > MATERIAL_CHANGE * scale
        }
        (None, None) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use sluice_api::ObjectiveState;

    fn snapshot(at: i64, ttft: Option<f64>) -> SliSnapshot {
        SliSnapshot {
            observed_at: Time(jiff::Timestamp::from_second(at).unwrap()),
            window: "2m".into(),
            ttft_p95_seconds: ttft,
            tpot_avg_seconds: None,
            vram_percent: None,
            memory_type: None,
            error_rate: None,
            rejection_rate: None,
            request_rate_per_second: None,
            queue_depth: None,
            queue_wait_seconds: None,
            tokens_per_second: None,
            gpu_utilization: None,
            reporting_pods: None,
            unknown: vec![],
        }
    }

    fn status(state: ObjectiveState, at: i64, ttft: Option<f64>, summary: &str) -> SloStatus {
        SloStatus {
            state,
            slis: Some(snapshot(at, ttft)),
            summary: Some(summary.into()),
            ..SloStatus::default()
        }
    }

    #[test]
    fn what_is_news() {
        use ObjectiveState::{Met, Unknown, Violated};
        let t0 = 1_000_000;
        let old = status(Met, t0, Some(0.50), "TTFT 0.50 s");
        let cases = [
            // (new, now, news?, why)
            (
                status(Met, t0 + 15, Some(0.52), "TTFT 0.52 s"),
                t0 + 15,
                false,
                "jitter, fresh",
            ),
            (
                status(Met, t0 + 15, Some(0.90), "TTFT 0.90 s"),
                t0 + 15,
                false,
                "moved, but fresh",
            ),
            (
                status(Met, t0 + 300, Some(0.52), "TTFT 0.52 s"),
                t0 + 300,
                false,
                "old, jitter only",
            ),
            (
                status(Met, t0 + 300, Some(0.90), "TTFT 0.90 s"),
                t0 + 300,
                true,
                "old and moved",
            ),
            (
                status(Violated, t0 + 15, Some(1.5), "TTFT 1.5 s"),
                t0 + 15,
                true,
                "state changed",
            ),
            (
                status(Met, t0 + 15, None, "no data"),
                t0 + 15,
                true,
                "value vanished",
            ),
            (
                status(Unknown, t0 + 15, None, "no data"),
                t0 + 15,
                true,
                "unknown now",
            ),
        ];
        for (new, now, want, why) in cases {
            assert_eq!(is_news(&old, &new, now), want, "{why}");
        }
        // No data, tick after tick: never news.
        let quiet = status(Unknown, t0, None, "no samples");
        let later = status(Unknown, t0 + 3600, None, "no samples");
        assert!(!is_news(&quiet, &later, t0 + 3600));
    }
}

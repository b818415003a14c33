//! Pure translation between the SLO engine's types and the CRD's status: the SLI snapshot,
//! objective states, bottleneck, decision log (both ways, so a restarted operator resumes from
//! status) and the `SLOMet` condition.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use sluice_api as api;
use sluice_contract::slo::truncate;
use sluice_contract::{
    Action, BottleneckClass, Mode, Objective, ObjectiveState, Outcome, StoredActionError,
};
use sluice_slo as slo;
use sluice_slo::{Plan, Sli};

use crate::status::CondSpec;

/// Decisions kept in status (the CRD allows ten): the loop's own log length.
pub use sluice_slo::control::KEEP_DECISIONS;

/// Seconds since the epoch to a Kubernetes time (whole seconds: what the API server stores).
pub fn time(at: slo::UnixSeconds) -> Time {
    Time(jiff::Timestamp::from_second(at.floor() as i64).unwrap_or_default())
}

fn unix(t: &Time) -> slo::UnixSeconds {
    t.0.as_second() as f64
}

/// `5m`, `90s`: the window as people write it.
pub fn window_text(seconds: u64) -> String {
    if seconds.is_multiple_of(3600) && seconds > 0 {
        format!("{}h", seconds / 3600)
    } else if seconds.is_multiple_of(60) && seconds > 0 {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

/// One engine decision as stored in status: the same vocabulary; the action is stored as its
/// knob and values, the outcome as its kind and detail, times as Kubernetes times.
pub fn decision(d: &slo::Decision) -> api::Decision {
    let (knob, from, to) = match d.action.to_stored() {
        Some((k, f, t)) => (Some(k), Some(f), Some(t)),
        None => (None, None, None),
    };
    api::Decision {
        id: d.id,
        time: time(d.at),
        mode: Some(d.mode),
        kind: d.kind,
        knob,
        from,
        to,
        class: Some(d.class),
        rule: Some(d.rule.clone()),
        reason: truncate(&d.reason, 4096),
        evidence: d.evidence.iter().take(16).cloned().collect(),
        baseline: Some(d.baseline.clone()),
        reverts: d.reverts,
        settled_at: d.settled_at.map(time),
        outcome: d.outcome.kind(),
        outcome_detail: d.outcome.detail().map(|s| truncate(s, 2048)),
    }
}

/// A stored decision back in the engine's terms (the log the planner resumes from). A stored
/// action whose values do not parse (status edited by hand) is an error, not a hold.
pub fn decision_back(d: &api::Decision) -> Result<slo::Decision, StoredActionError> {
    Ok(slo::Decision {
        id: d.id,
        at: unix(&d.time),
        // Decisions stored before the mode was recorded were advisory at most.
        mode: d.mode.unwrap_or(Mode::Advise),
        kind: d.kind,
        action: Action::from_stored(d.knob, d.from.as_deref(), d.to.as_deref())?,
        class: d.class.unwrap_or(BottleneckClass::Unknown),
        rule: d.rule.clone().unwrap_or_default(),
        reason: d.reason.clone(),
        evidence: d.evidence.clone(),
        baseline: d.baseline.clone().unwrap_or_default(),
        reverts: d.reverts,
        settled_at: d.settled_at.as_ref().map(unix),
        outcome: Outcome::from_parts(d.outcome, d.outcome_detail.clone()),
    })
}

/// The stored log in engine terms, oldest first, and the stored decisions that could not be
/// read back (left out of the log, reported by the caller).
pub fn decisions_back(stored: &[api::Decision]) -> (Vec<slo::Decision>, Vec<StoredActionError>) {
    let (ok, bad): (Vec<_>, Vec<_>) = stored.iter().map(decision_back).partition(Result::is_ok);
    let mut log: Vec<slo::Decision> = ok.into_iter().filter_map(Result::ok).collect();
    log.sort_by_key(|d| d.id);
    (log, bad.into_iter().filter_map(Result::err).collect())
}

/// The engine log as stored: newest first, at most [`KEEP_DECISIONS`].
pub fn decisions(log: &[slo::Decision]) -> Vec<api::Decision> {
    let mut v: Vec<api::Decision> = log.iter().map(decision).collect();
    v.sort_by_key(|d| std::cmp::Reverse(d.id));
    v.truncate(KEEP_DECISIONS);
    v
}

/// The SLI snapshot for status: known values only; unknown ones listed with their reason.
pub fn snapshot(sli: &Sli) -> api::SliSnapshot {
    let pressure = sli.memory_pressure();
    let mut unknown: Vec<String> = sli
        .named()
        .into_iter()
        .filter_map(|(n, v)| v.unknown_reason().map(|r| format!("{n}: {r}")))
        .collect();
    if pressure.is_none() {
        unknown.push("memoryRatio: no vram or kv_cache usage ratio".into());
    }
    unknown.truncate(32);
    api::SliSnapshot {
        observed_at: time(sli.at),
        window: window_text(sli.window_seconds),
        ttft_p95_seconds: sli.ttft_p95_seconds.value(),
        tpot_avg_seconds: sli.tpot_seconds.value(),
        vram_percent: pressure.map(|(_, r)| r * 100.0),
        memory_type: pressure.map(|(t, _)| t.to_owned()),
        error_rate: sli.error_ratio.value(),
        rejection_rate: sli.rejection_ratio.value(),
        request_rate_per_second: sli.request_rate_per_second.value(),
        queue_depth: sli.queue_depth.value(),
        queue_wait_seconds: sli.queue_wait_seconds.value(),
        tokens_per_second: sli.tokens_per_second.value(),
        gpu_utilization: sli.gpu_utilization_ratio.value(),
        reporting_pods: sli.reporting_pods.value(),
        unknown,
    }
}

/// The overall SLO state: any violated objective wins, then any unknown one.
pub fn overall(objectives: &[slo::ObjectiveStatus]) -> ObjectiveState {
    use ObjectiveState as S;
    if objectives.iter().any(|o| o.state == S::Violated) {
        S::Violated
    } else if objectives.is_empty() || objectives.iter().any(|o| o.state == S::Unknown) {
        S::Unknown
    } else {
        S::Met
    }
}

/// `status.slo` after one evaluation. `old` carries the `since` times forward; `log` is the
/// decision log after [`sluice_slo::apply_plan`].
pub fn slo_status(
    old: Option<&api::SloStatus>,
    sli: &Sli,
    plan: &Plan,
    log: &[slo::Decision],
) -> api::SloStatus {
    let now = time(plan.at);
    let objectives = plan
        .objectives
        .iter()
        .map(|o| {
            let name = o.objective;
            let st = o.state;
            // Memory is a ratio in the engine and a percentage in the CRD.
            let scale = if name == Objective::VramMaxPercent {
                100.0
            } else {
                1.0
            };
            let since = old
                .and_then(|s| s.objectives.iter().find(|p| p.name == name))
                .filter(|p| p.state == st)
                .and_then(|p| p.since.clone())
                .unwrap_or_else(|| now.clone());
            api::ObjectiveStatus {
                name,
                state: st,
                value: o.value.map(|v| v * scale),
                target: o.target * scale,
                reason: o.reason.clone(),
                since: Some(since),
            }
        })
        .collect();
    let c = &plan.classification;
    let cls = c.class;
    let mut evidence: Vec<String> = c.evidence.iter().map(ToString::to_string).collect();
    for hit in &c.secondary {
        evidence.push(format!(
            "also {} ({}): {}",
            hit.class, hit.rule, hit.summary
        ));
    }
    evidence.truncate(16);
    let since = old
        .and_then(|s| s.bottleneck.as_ref())
        .filter(|b| b.class == cls)
        .and_then(|b| b.since.clone())
        .unwrap_or_else(|| now.clone());
    api::SloStatus {
        state: overall(&plan.objectives),
        slis: Some(snapshot(sli)),
        objectives,
        bottleneck: Some(api::Bottleneck {
            class: cls,
            rule: Some(c.rule.clone()),
            summary: Some(truncate(&c.summary, 1024)),
            evidence,
            since: Some(since),
        }),
        summary: Some(truncate(&plan.reason, 4096)),
        degraded: plan.degraded.as_ref().map(|d| d.bounded()),
        decisions: decisions(log),
    }
}

/// The `SLOMet` condition for a planned tick.
pub fn slo_met(plan: &Plan) -> (Option<bool>, String, String) {
    let st = overall(&plan.objectives);
    let reason = match (&plan.degraded, st) {
        (Some(d), _) => d.reason.clone(),
        (None, ObjectiveState::Met) => "AllObjectivesMet".to_owned(),
        (None, ObjectiveState::Unknown) => "MetricsUnknown".to_owned(),
        (None, _) => plan.classification.class.as_str().to_owned(),
    };
    let status = match st {
        ObjectiveState::Met | ObjectiveState::NoTraffic => Some(true),
        ObjectiveState::Violated => Some(false),
        ObjectiveState::Unknown => None,
    };
    let mut message = plan.reason.clone();
    if let Some(d) = &plan.degraded {
        message = format!("{message}; recommendation: {}", d.recommendation);
    }
    (status, reason, truncate(&message, 2048))
}

/// A condition spec for `SLOMet` with a known status.
pub fn slo_met_spec(status: bool, reason: &str, message: String) -> CondSpec<'_> {
    CondSpec {
        type_: sluice_api::condition::SLO_MET,
        status,
        reason,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine_decision(id: u64, action: Action, outcome: Outcome) -> slo::Decision {
        slo::Decision {
            id,
            at: 1_700_000_000.0 + id as f64,
            mode: Mode::Auto,
            kind: sluice_contract::DecisionKind::Remediate,
            action,
            class: BottleneckClass::QueueBound,
            rule: "Q1".into(),
            reason: "queue".into(),
            evidence: vec![sluice_contract::Evidence::cmp(
                "queueDepthPerPod",
                6.0,
                ">=",
                2.0,
            )],
            baseline: sluice_contract::Baseline {
                violated: vec![Objective::TtftP95],
                ttft_p95_seconds: Some(2.5),
                tpot_seconds: None,
                error_ratio: Some(0.0),
                memory_ratio: Some(0.4),
                request_rate_per_second: Some(12.0),
                replicas: 1,
            },
            reverts: Some(3),
            settled_at: Some(1_700_000_100.0),
            outcome,
        }
    }

    #[test]
    fn decisions_round_trip_through_status() {
        let log = vec![
            engine_decision(
                1,
                Action::ScaleReplicas { from: 1, to: 3 },
                Outcome::Pending,
            ),
            engine_decision(
                2,
                Action::SetQuantization {
                    from: sluice_contract::Quantization::F16,
                    to: sluice_contract::Quantization::Q8_0,
                },
                Outcome::NoEffect {
                    detail: "ttft 2.5 -> 2.4".into(),
                },
            ),
            engine_decision(
                3,
                Action::SetMaxTokens { from: 256, to: 128 },
                Outcome::Advised,
            ),
            engine_decision(4, Action::Hold, Outcome::Noted),
        ];
        let stored = decisions(&log);
        assert_eq!(
            stored.iter().map(|d| d.id).collect::<Vec<_>>(),
            vec![4, 3, 2, 1],
            "newest first"
        );
        // Through JSON, as the API server would store it.
        let json = serde_json::to_value(&stored).unwrap();
        let stored: Vec<api::Decision> = serde_json::from_value(json).unwrap();
        assert_eq!(decisions_back(&stored), (log, vec![]));
    }

    /// Regression: a stored decision whose values did not parse silently became a hold.
    #[test]
    fn a_stored_decision_that_does_not_parse_is_reported_not_read_as_a_hold() {
        let log = vec![
            engine_decision(
                1,
                Action::ScaleReplicas { from: 1, to: 3 },
                Outcome::Pending,
            ),
            engine_decision(
                2,
                Action::SetMaxTokens { from: 256, to: 128 },
                Outcome::Pending,
            ),
        ];
        let mut stored = decisions(&log);
        stored[0].to = Some("many".into());
        let (read, bad) = decisions_back(&stored);
        assert_eq!(read, vec![log[0].clone()]);
        assert_eq!(bad.len(), 1);
        assert!(bad[0].to_string().contains("\"many\""), "{}", bad[0]);
    }

    #[test]
    fn log_in_status_is_capped_at_ten() {
        let log: Vec<_> = (1..=14)
            .map(|i| engine_decision(i, Action::Hold, Outcome::Noted))
            .collect();
        let stored = decisions(&log);
        assert_eq!(stored.len(), KEEP_DECISIONS);
        assert_eq!(stored[0].id, 14);
    }

    #[test]
    fn snapshot_lists_unknowns_and_never_zero_fills() {
        let mut sli = Sli::all_unknown(1_700_000_000.0, 300, "empty result");
        sli.ttft_p95_seconds = slo::SliValue::known(0.42, 1_700_000_000.0);
        sli.memory = vec![slo::MemorySli {
            memory_type: "kv_cache".into(),
            usage_megabytes: slo::SliValue::known(90.0, 1.0),
            capacity_megabytes: slo::SliValue::known(100.0, 1.0),
            usage_ratio: slo::SliValue::known(0.9, 1.0),
        }];
        let s = snapshot(&sli);
        assert_eq!(s.window, "5m");
        assert_eq!(s.ttft_p95_seconds, Some(0.42));
        assert_eq!(s.tpot_avg_seconds, None);
        assert_eq!(s.vram_percent, Some(90.0));
        assert_eq!(s.memory_type.as_deref(), Some("kv_cache"));
        assert!(s.unknown.contains(&"tpotSeconds: empty result".to_owned()));
        assert_eq!(window_text(90), "90s");
        assert_eq!(window_text(7200), "2h");
    }
}

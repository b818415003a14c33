//! Pure translation between the SLO engine's types and the CRD's status: the SLI snapshot,
//! objective states, bottleneck, decision log (both ways, so a restarted operator resumes from
//! status) and the `SLOMet` condition.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use sluice_api as api;
use sluice_slo as slo;
use sluice_slo::{Action, Bottleneck, Plan, Sli};

use crate::status::CondSpec;

/// Decisions kept in status (the CRD allows ten).
pub const KEEP_DECISIONS: usize = 10;

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

/// The engine's class as the CRD spells it (`Healthy` is `None`: no bottleneck).
pub fn class(b: Bottleneck) -> api::BottleneckClass {
    match b {
        Bottleneck::Healthy => api::BottleneckClass::None,
        Bottleneck::ComputeBound => api::BottleneckClass::ComputeBound,
        Bottleneck::MemoryBound => api::BottleneckClass::MemoryBound,
        Bottleneck::IoBound => api::BottleneckClass::IoBound,
        Bottleneck::QueueBound => api::BottleneckClass::QueueBound,
        Bottleneck::SoftwareBound => api::BottleneckClass::SoftwareBound,
        Bottleneck::Unknown => api::BottleneckClass::Unknown,
    }
}

fn class_back(c: api::BottleneckClass) -> Bottleneck {
    match c {
        api::BottleneckClass::None => Bottleneck::Healthy,
        api::BottleneckClass::ComputeBound => Bottleneck::ComputeBound,
        api::BottleneckClass::MemoryBound => Bottleneck::MemoryBound,
        api::BottleneckClass::IoBound => Bottleneck::IoBound,
        api::BottleneckClass::QueueBound => Bottleneck::QueueBound,
        api::BottleneckClass::SoftwareBound => Bottleneck::SoftwareBound,
        api::BottleneckClass::Unknown => Bottleneck::Unknown,
    }
}

fn objective(o: slo::Objective) -> api::Objective {
    match o {
        slo::Objective::TtftP95 => api::Objective::TtftP95,
        slo::Objective::Tpot => api::Objective::TpotAvg,
        slo::Objective::ErrorRatio => api::Objective::ErrorRateMax,
        slo::Objective::MemoryRatio => api::Objective::VramMaxPercent,
    }
}

fn objective_back(o: api::Objective) -> slo::Objective {
    match o {
        api::Objective::TtftP95 => slo::Objective::TtftP95,
        api::Objective::TpotAvg => slo::Objective::Tpot,
        api::Objective::ErrorRateMax => slo::Objective::ErrorRatio,
        api::Objective::VramMaxPercent => slo::Objective::MemoryRatio,
    }
}

fn state(s: slo::ObjectiveState) -> api::ObjectiveState {
    match s {
        slo::ObjectiveState::Met => api::ObjectiveState::Met,
        slo::ObjectiveState::Violated => api::ObjectiveState::Violated,
        slo::ObjectiveState::Unknown => api::ObjectiveState::Unknown,
        slo::ObjectiveState::NoTraffic => api::ObjectiveState::NoTraffic,
    }
}

fn evidence(e: &slo::Evidence) -> api::Evidence {
    api::Evidence {
        signal: e.signal.clone(),
        value: e.value,
        op: e.op.clone(),
        threshold: e.threshold,
    }
}

fn evidence_back(e: &api::Evidence) -> slo::Evidence {
    slo::Evidence {
        signal: e.signal.clone(),
        value: e.value,
        op: e.op.clone(),
        threshold: e.threshold,
    }
}

fn knob_of(a: &Action) -> Option<(api::Knob, String, String)> {
    match a {
        Action::Hold => None,
        Action::ScaleReplicas { from, to } => {
            Some((api::Knob::Replicas, from.to_string(), to.to_string()))
        }
        Action::SetQuantization { from, to } => {
            Some((api::Knob::Quantization, from.clone(), to.clone()))
        }
        Action::SetMaxTokens { from, to } => {
            Some((api::Knob::MaxTokens, from.to_string(), to.to_string()))
        }
    }
}

fn action_back(d: &api::Decision) -> Action {
    let num = |s: &Option<String>| s.as_deref().and_then(|s| s.parse::<u32>().ok());
    match d.knob {
        None => Action::Hold,
        Some(api::Knob::Replicas) => match (num(&d.from), num(&d.to)) {
            (Some(from), Some(to)) => Action::ScaleReplicas { from, to },
            _ => Action::Hold,
        },
        Some(api::Knob::MaxTokens) => match (num(&d.from), num(&d.to)) {
            (Some(from), Some(to)) => Action::SetMaxTokens { from, to },
            _ => Action::Hold,
        },
        Some(api::Knob::Quantization) => match (&d.from, &d.to) {
            (Some(from), Some(to)) => Action::SetQuantization {
                from: from.clone(),
                to: to.clone(),
            },
            _ => Action::Hold,
        },
    }
}

fn kind(k: slo::DecisionKind) -> api::DecisionKind {
    match k {
        slo::DecisionKind::Remediate => api::DecisionKind::Remediate,
        slo::DecisionKind::StepBack => api::DecisionKind::StepBack,
        slo::DecisionKind::Revert => api::DecisionKind::Revert,
        slo::DecisionKind::Hold => api::DecisionKind::Hold,
        slo::DecisionKind::Degraded => api::DecisionKind::Degraded,
    }
}

fn kind_back(k: api::DecisionKind) -> slo::DecisionKind {
    match k {
        api::DecisionKind::Remediate => slo::DecisionKind::Remediate,
        api::DecisionKind::StepBack => slo::DecisionKind::StepBack,
        api::DecisionKind::Revert => slo::DecisionKind::Revert,
        api::DecisionKind::Hold => slo::DecisionKind::Hold,
        api::DecisionKind::Degraded => slo::DecisionKind::Degraded,
    }
}

fn mode_back(m: Option<api::RemediationMode>) -> slo::Mode {
    m.map(super::mapping::mode).unwrap_or(slo::Mode::Advise)
}

fn outcome(o: &slo::Outcome) -> (api::DecisionOutcome, Option<String>) {
    use api::DecisionOutcome as O;
    match o {
        slo::Outcome::Pending => (O::Pending, None),
        slo::Outcome::Advisory => (O::Advised, None),
        slo::Outcome::Noted => (O::Noted, None),
        slo::Outcome::Improved { detail } => (O::Improved, Some(detail.clone())),
        slo::Outcome::NoEffect { detail } => (O::NoEffect, Some(detail.clone())),
        slo::Outcome::Kept { detail } => (O::Kept, Some(detail.clone())),
        slo::Outcome::Regressed { detail } => (O::Regressed, Some(detail.clone())),
        slo::Outcome::Completed { detail } => (O::Completed, Some(detail.clone())),
        slo::Outcome::Inconclusive { detail } => (O::Inconclusive, Some(detail.clone())),
    }
}

fn outcome_back(o: api::DecisionOutcome, detail: Option<&str>) -> slo::Outcome {
    use api::DecisionOutcome as O;
    let detail = detail.unwrap_or_default().to_owned();
    match o {
        O::Pending => slo::Outcome::Pending,
        O::Advised => slo::Outcome::Advisory,
        O::Noted => slo::Outcome::Noted,
        O::Improved => slo::Outcome::Improved { detail },
        O::NoEffect => slo::Outcome::NoEffect { detail },
        O::Kept => slo::Outcome::Kept { detail },
        O::Regressed => slo::Outcome::Regressed { detail },
        O::Completed => slo::Outcome::Completed { detail },
        O::Inconclusive => slo::Outcome::Inconclusive { detail },
    }
}

/// One engine decision as stored in status.
pub fn decision(d: &slo::Decision) -> api::Decision {
    let (knob, from, to) = match knob_of(&d.action) {
        Some((k, f, t)) => (Some(k), Some(f), Some(t)),
        None => (None, None, None),
    };
    let (outcome, outcome_detail) = outcome(&d.outcome);
    let b = &d.baseline;
    api::Decision {
        id: d.id,
        time: time(d.at),
        mode: Some(match d.mode {
            slo::Mode::Off => api::RemediationMode::Off,
            slo::Mode::Advise => api::RemediationMode::Advise,
            slo::Mode::Auto => api::RemediationMode::Auto,
        }),
        kind: kind(d.kind),
        knob,
        from,
        to,
        class: Some(class(d.class)),
        rule: Some(d.rule.clone()),
        reason: truncate(&d.reason, 4096),
        evidence: d.evidence.iter().take(16).map(evidence).collect(),
        baseline: Some(api::DecisionBaseline {
            violated: b.violated.iter().copied().map(objective).collect(),
            ttft_p95_seconds: b.ttft_p95_seconds,
            tpot_seconds: b.tpot_seconds,
            error_ratio: b.error_ratio,
            memory_ratio: b.memory_ratio,
            request_rate_per_second: b.request_rate_per_second,
            replicas: b.replicas,
        }),
        reverts: d.reverts,
        settled_at: d.settled_at.map(time),
        outcome,
        outcome_detail: outcome_detail.map(|s| truncate(&s, 2048)),
    }
}

/// A stored decision back in the engine's terms (the log the planner resumes from).
pub fn decision_back(d: &api::Decision) -> slo::Decision {
    let b = d.baseline.clone().unwrap_or_default();
    slo::Decision {
        id: d.id,
        at: unix(&d.time),
        mode: mode_back(d.mode),
        kind: kind_back(d.kind),
        action: action_back(d),
        class: d.class.map(class_back).unwrap_or(Bottleneck::Unknown),
        rule: d.rule.clone().unwrap_or_default(),
        reason: d.reason.clone(),
        evidence: d.evidence.iter().map(evidence_back).collect(),
        baseline: slo::plan::Baseline {
            violated: b.violated.into_iter().map(objective_back).collect(),
            ttft_p95_seconds: b.ttft_p95_seconds,
            tpot_seconds: b.tpot_seconds,
            error_ratio: b.error_ratio,
            memory_ratio: b.memory_ratio,
            request_rate_per_second: b.request_rate_per_second,
            replicas: b.replicas,
        },
        reverts: d.reverts,
        settled_at: d.settled_at.as_ref().map(unix),
        outcome: outcome_back(d.outcome, d.outcome_detail.as_deref()),
    }
}

/// The stored log in engine terms, oldest first.
pub fn decisions_back(stored: &[api::Decision]) -> Vec<slo::Decision> {
    let mut v: Vec<slo::Decision> = stored.iter().map(decision_back).collect();
    v.sort_by_key(|d| d.id);
    v
}

/// The engine log as stored: newest first, at most [`KEEP_DECISIONS`].
pub fn decisions(log: &[slo::Decision]) -> Vec<api::Decision> {
    let mut v: Vec<api::Decision> = log.iter().map(decision).collect();
    v.sort_by_key(|d| std::cmp::Reverse(d.id));
    v.truncate(KEEP_DECISIONS);
    v
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
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
pub fn overall(objectives: &[slo::ObjectiveStatus]) -> api::ObjectiveState {
    use slo::ObjectiveState as S;
    if objectives.iter().any(|o| o.state == S::Violated) {
        api::ObjectiveState::Violated
    } else if objectives.is_empty() || objectives.iter().any(|o| o.state == S::Unknown) {
        api::ObjectiveState::Unknown
    } else {
        api::ObjectiveState::Met
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
            let name = objective(o.objective);
            let st = state(o.state);
            // Memory is a ratio in the engine and a percentage in the CRD.
            let scale = if name == api::Objective::VramMaxPercent {
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
    let cls = class(c.class);
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
        degraded: plan.degraded.as_ref().map(|d| api::SloDegraded {
            reason: truncate(&d.reason, 64),
            message: truncate(&d.message, 2048),
            recommendation: truncate(&d.recommendation, 2048),
        }),
        decisions: decisions(log),
    }
}

/// The `SLOMet` condition for a planned tick.
pub fn slo_met(plan: &Plan) -> (Option<bool>, String, String) {
    let st = overall(&plan.objectives);
    let reason = match (&plan.degraded, st) {
        (Some(d), _) => d.reason.clone(),
        (None, api::ObjectiveState::Met) => "AllObjectivesMet".to_owned(),
        (None, api::ObjectiveState::Unknown) => "MetricsUnknown".to_owned(),
        (None, _) => plan.classification.class.as_str().to_owned(),
    };
    let status = match st {
        api::ObjectiveState::Met | api::ObjectiveState::NoTraffic => Some(true),
        api::ObjectiveState::Violated => Some(false),
        api::ObjectiveState::Unknown => None,
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

    fn engine_decision(id: u64, action: Action, outcome: slo::Outcome) -> slo::Decision {
        slo::Decision {
            id,
            at: 1_700_000_000.0 + id as f64,
            mode: slo::Mode::Auto,
            kind: slo::DecisionKind::Remediate,
            action,
            class: Bottleneck::QueueBound,
            rule: "Q1".into(),
            reason: "queue".into(),
            evidence: vec![slo::Evidence::cmp("queueDepthPerPod", 6.0, ">=", 2.0)],
            baseline: slo::plan::Baseline {
                violated: vec![slo::Objective::TtftP95],
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
                slo::Outcome::Pending,
            ),
            engine_decision(
                2,
                Action::SetQuantization {
                    from: "f16".into(),
                    to: "q8_0".into(),
                },
                slo::Outcome::NoEffect {
                    detail: "ttft 2.5 -> 2.4".into(),
                },
            ),
            engine_decision(
                3,
                Action::SetMaxTokens { from: 256, to: 128 },
                slo::Outcome::Advisory,
            ),
            engine_decision(4, Action::Hold, slo::Outcome::Noted),
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
        assert_eq!(decisions_back(&stored), log);
    }

    #[test]
    fn log_in_status_is_capped_at_ten() {
        let log: Vec<_> = (1..=14)
            .map(|i| engine_decision(i, Action::Hold, slo::Outcome::Noted))
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

//! Per-objective state, headroom and baselines.
//!
//! Hysteresis lives here: an objective is violated above its target but only has headroom at
//! or below `headroomRatio * target`; in between the planner neither remediates nor steps back.

use super::{Baseline, Objective, ObjectiveState, ObjectiveStatus};
use crate::classify::Thresholds;
use crate::sli::{Sli, SliValue};
use crate::spec::{SloTargets, Tuning};

fn idle(sli: &Sli, th: &Thresholds) -> bool {
    matches!(
        (sli.request_rate_per_second.value(), sli.queue_depth.value()),
        (Some(r), Some(q)) if r <= th.idle_request_rate && q <= 0.0
    )
}

fn status(
    objective: Objective,
    target: f64,
    v: &SliValue,
    headroom_ratio: f64,
    no_traffic: bool,
) -> ObjectiveStatus {
    match v.value() {
        Some(value) => ObjectiveStatus {
            objective,
            target,
            value: Some(value),
            state: if value > target {
                ObjectiveState::Violated
            } else {
                ObjectiveState::Met
            },
            headroom: value <= target * headroom_ratio,
            reason: None,
        },
        None if no_traffic => ObjectiveStatus {
            objective,
            target,
            value: None,
            state: ObjectiveState::NoTraffic,
            headroom: true,
            reason: None,
        },
        None => ObjectiveStatus {
            objective,
            target,
            value: None,
            state: ObjectiveState::Unknown,
            headroom: false,
            reason: v.unknown_reason().map(str::to_owned),
        },
    }
}

/// State of every configured objective in `sli`.
pub fn objective_statuses(
    sli: &Sli,
    targets: &SloTargets,
    tuning: &Tuning,
    th: &Thresholds,
) -> Vec<ObjectiveStatus> {
    let no_traffic = idle(sli, th);
    let h = tuning.headroom_ratio;
    let mut out = Vec::new();
    if let Some(t) = targets.ttft_p95_seconds {
        out.push(status(
            Objective::TtftP95,
            t,
            &sli.ttft_p95_seconds,
            h,
            no_traffic,
        ));
    }
    if let Some(t) = targets.tpot_seconds {
        out.push(status(
            Objective::TpotAvg,
            t,
            &sli.tpot_seconds,
            h,
            no_traffic,
        ));
    }
    if let Some(t) = targets.error_ratio {
        out.push(status(
            Objective::ErrorRateMax,
            t,
            &sli.error_ratio,
            h,
            no_traffic,
        ));
    }
    let mem = match sli.memory_pressure() {
        Some((_, r)) => SliValue::known(r, sli.at),
        None => SliValue::unknown("no vram or kv_cache usage ratio"),
    };
    out.push(status(
        Objective::VramMaxPercent,
        targets.memory_ratio,
        &mem,
        h,
        false,
    ));
    out
}

/// True when the objectives that scale-in affects (latency, errors) have headroom and none is
/// violated or unknown. Memory only needs to be met: it is per pod and mostly weights.
pub fn load_headroom(statuses: &[ObjectiveStatus]) -> bool {
    statuses.iter().all(|s| match s.objective {
        Objective::VramMaxPercent => s.state == ObjectiveState::Met,
        Objective::TtftP95 | Objective::TpotAvg | Objective::ErrorRateMax => {
            s.headroom && s.state != ObjectiveState::Unknown
        }
    })
}

/// True when memory has headroom too (restoring quantization or max_tokens costs memory).
pub fn full_headroom(statuses: &[ObjectiveStatus]) -> bool {
    load_headroom(statuses) && statuses.iter().all(|s| s.headroom)
}

/// Objectives currently violated.
pub fn violated(statuses: &[ObjectiveStatus]) -> Vec<Objective> {
    statuses
        .iter()
        .filter(|s| s.state == ObjectiveState::Violated)
        .map(|s| s.objective)
        .collect()
}

/// Baseline for a decision taken on `sli`.
pub fn baseline(sli: &Sli, statuses: &[ObjectiveStatus], replicas: u32) -> Baseline {
    let value = |o: Objective| {
        statuses
            .iter()
            .find(|s| s.objective == o)
            .and_then(|s| s.value)
    };
    Baseline {
        violated: violated(statuses),
        ttft_p95_seconds: value(Objective::TtftP95).or(sli.ttft_p95_seconds.value()),
        tpot_seconds: value(Objective::TpotAvg).or(sli.tpot_seconds.value()),
        error_ratio: value(Objective::ErrorRateMax).or(sli.error_ratio.value()),
        memory_ratio: value(Objective::VramMaxPercent),
        request_rate_per_second: sli.request_rate_per_second.value(),
        replicas,
    }
}

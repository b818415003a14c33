//! Questions the planner asks of the decision log: what is in flight, which knob is cooling
//! down, which remedy was found not to help, what per-pod load once violated.
//!
//! Only acted decisions (Auto mode) count for cooldowns and blocks: advice changes nothing.

use sluice_contract::{Action, DecisionKind, Knob, Outcome, Quantization};

use super::Decision;
use crate::sli::UnixSeconds;
use crate::spec::{Knobs, Tuning};

/// Direction of a change: relieving load/memory (more replicas, a lower rung, fewer tokens) or
/// restoring toward the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// More capacity per request.
    Relieve,
    /// Back toward the spec.
    Restore,
}

/// The direction of `action` (None for Hold or a quantization outside the ladder).
pub fn direction(action: &Action, knobs: &Knobs) -> Option<Direction> {
    let relieve = match action {
        Action::Hold => return None,
        Action::ScaleReplicas { from, to } => to > from,
        Action::SetMaxTokens { from, to } => to < from,
        Action::SetQuantization { from, to } => {
            let rung = |q: &Quantization| knobs.quantization_ladder.iter().position(|l| l == q);
            rung(to)? > rung(from)?
        }
    };
    Some(if relieve {
        Direction::Relieve
    } else {
        Direction::Restore
    })
}

/// Id for the next decision.
pub fn next_id(decisions: &[Decision]) -> u64 {
    decisions.iter().map(|d| d.id).max().map_or(1, |m| m + 1)
}

/// The change still awaiting rollout or judgement.
pub fn in_flight(decisions: &[Decision]) -> Option<&Decision> {
    decisions
        .iter()
        .rev()
        .find(|d| d.outcome == Outcome::Pending)
}

/// Time of the latest acted change of any knob.
pub fn last_change_at(decisions: &[Decision]) -> Option<UnixSeconds> {
    decisions
        .iter()
        .rev()
        .find(|d| d.acted())
        .map(|d| d.settled_at.unwrap_or(d.at).max(d.at))
}

/// Seconds left before `action` is allowed, and the rule that holds it back.
pub fn cooldown_left(
    decisions: &[Decision],
    action: &Action,
    knobs: &Knobs,
    tuning: &Tuning,
    now: UnixSeconds,
) -> Option<(f64, String)> {
    let knob = action.knob()?;
    let dir = direction(action, knobs)?;
    let last = decisions
        .iter()
        .rev()
        .find(|d| d.acted() && d.action.knob() == Some(knob))?;
    let last_dir = direction(&last.action, knobs);
    let base = match (knob, dir) {
        (Knob::Replicas, Direction::Relieve) => tuning.scale_out_cooldown_seconds,
        (Knob::Replicas, Direction::Restore) => tuning.scale_in_cooldown_seconds,
        (Knob::Quantization, _) => tuning.quantization_cooldown_seconds,
        (Knob::MaxTokens, _) => tuning.max_tokens_cooldown_seconds,
    };
    // The reversal cooldown only delays moving back toward the spec after a relief (scale-in
    // after scale-out); relieving a violation right after a step-back must not wait for it.
    let reversal = dir == Direction::Restore
        && last_dir == Some(Direction::Relieve)
        && last.kind != DecisionKind::Revert;
    let (secs, why) = if reversal {
        (
            base.max(tuning.reversal_cooldown_seconds),
            format!("reversal cooldown after change #{}", last.id),
        )
    } else {
        (base, format!("{knob:?} cooldown after change #{}", last.id))
    };
    let left = last.at + secs as f64 - now;
    (left > 0.0).then_some((left, why))
}

/// A recent decision showing that a change like `action` did not help (remedy) or hurt
/// (step-back), within the block period.
pub fn blocked_by<'a>(
    decisions: &'a [Decision],
    action: &Action,
    knobs: &Knobs,
    tuning: &Tuning,
    now: UnixSeconds,
) -> Option<&'a Decision> {
    let knob = action.knob()?;
    let dir = direction(action, knobs)?;
    decisions.iter().rev().find(|d| {
        d.action.knob() == Some(knob)
            && direction(&d.action, knobs) == Some(dir)
            && now - d.at < tuning.ineffective_block_seconds as f64
            && matches!(
                d.outcome,
                Outcome::NoEffect { .. } | Outcome::Regressed { .. }
            )
    })
}

/// Per-pod request rate at which the service last needed a scale-out: scaling in below that
/// (with headroom) is what keeps an oscillating load from flapping.
pub fn violating_rate_per_pod(decisions: &[Decision]) -> Option<(f64, u64)> {
    decisions.iter().rev().find_map(|d| {
        let Action::ScaleReplicas { from, to } = d.action else {
            return None;
        };
        if d.kind != DecisionKind::Remediate || to <= from || !d.acted() {
            return None;
        }
        let rate = d.baseline.request_rate_per_second?;
        (from > 0 && rate > 0.0).then(|| (rate / from as f64, d.id))
    })
}

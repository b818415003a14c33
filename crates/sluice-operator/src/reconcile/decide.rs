//! Decide: from the validated spec, what was observed and the stored status to the desired
//! state — the settings to build and the SLO loop's tick (its status, condition, Events and the
//! `max_tokens` to push). Pure: every input is an argument, nothing is read or written.

use std::time::Duration;

use sluice_api::InferenceServiceStatus;
use sluice_contract::AppliedSettings;

use super::observe::Observed;
use crate::slo::tick::{self, Tick};
use crate::validate::Validated;

/// Resync period when nothing happens: catches anything a missed watch event left behind.
pub const RESYNC: Duration = Duration::from_secs(300);

/// What this reconcile wants.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    /// The settings to build into the children and record in `status.effective`.
    pub effective: AppliedSettings,
    /// The SLO loop's tick; None when the loop is off.
    pub tick: Option<Tick>,
}

impl Decided {
    /// When to reconcile again without a change.
    pub fn requeue(&self) -> Duration {
        self.tick.as_ref().map_or(RESYNC, |t| t.requeue.min(RESYNC))
    }
}

/// Decides the desired state. The planner works inside the spec's bounds (its knobs are mapped
/// from them), so its choice needs no second clamp. It starts from `observed.current`.
pub fn decide(
    v: &Validated,
    observed: &Observed,
    old: Option<&InferenceServiceStatus>,
    interval: Duration,
    now: f64,
) -> Decided {
    let current = observed.current;
    let tick = tick::decide(
        interval,
        v,
        current,
        observed.rollout.as_ref(),
        old,
        &observed.slo,
        now,
    );
    Decided {
        effective: tick.as_ref().map_or(current, |t| t.effective),
        tick,
    }
}

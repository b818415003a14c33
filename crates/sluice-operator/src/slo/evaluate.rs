//! One SLO tick without I/O: from the validated spec, the settings in effect, the stored status
//! and the SLI history to the engine's plan, the new decision log, the `status.slo` to write and
//! the effective settings to build. Tested on canned snapshots.

use std::time::Duration;

use sluice_api::SloStatus;
use sluice_contract::admin::RuntimeSettings;
use sluice_contract::{Action, AppliedSettings, ObjectiveState, StoredActionError};
use sluice_slo::{Decision, Plan, Sli, control};

use super::{mapping, report};
use crate::status::Rollout;
use crate::validate::Validated;

/// What one tick decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The engine's plan.
    pub plan: Plan,
    /// The decision log after folding the plan in, oldest first.
    pub log: Vec<Decision>,
    /// `status.slo` to write.
    pub slo: SloStatus,
    /// `status.effective` to write: the plan's desired settings when it must act (Auto mode
    /// with a change), the current ones otherwise.
    pub effective: AppliedSettings,
    /// `SLOMet`: status (None = Unknown), reason, message.
    pub condition: (Option<bool>, String, String),
    /// Stored decisions that could not be read back (status edited by hand); left out of the
    /// log and reported.
    pub unreadable: Vec<StoredActionError>,
}

impl Evaluation {
    /// The new decision-log entry, if this tick made one.
    pub fn recorded(&self) -> Option<&Decision> {
        self.plan.record.as_ref()
    }

    /// The run-time settings to push to the pods now, when the plan acts on `max_tokens` or
    /// quantization.
    pub fn settings_to_push(&self) -> Option<RuntimeSettings> {
        match (&self.plan.action, self.plan.act) {
            (Action::SetMaxTokens { .. } | Action::SetQuantization { .. }, true) => {
                Some(crate::build::runtime(&self.effective))
            }
            _ => None,
        }
    }
}

/// True when the last SLI read (`last`, Unix seconds; none since this process started) is at
/// least one interval old. The time lives in the operator's memory, not in status: status is
/// only written when an evaluation is news (`slo::news`), so it is no clock. 1 s of slack absorbs
/// requeue jitter.
pub fn is_due(last: Option<f64>, now: f64, interval: Duration) -> bool {
    match last {
        None => true,
        Some(t) => now - t >= interval.as_secs_f64() - 1.0 || now < t,
    }
}

/// Seconds until the next evaluation is due (at least 1 s).
pub fn due_in(last: Option<f64>, now: f64, interval: Duration) -> Duration {
    let last = last.unwrap_or(now - interval.as_secs_f64());
    let left = (last + interval.as_secs_f64() - now).max(1.0);
    Duration::from_secs_f64(left)
}

/// How long SLI history must reach back for the planner (its reversal and trend guards).
pub fn history_seconds(v: &Validated, eff: &AppliedSettings) -> f64 {
    let spec = mapping::slo_spec(v, eff);
    control::history_seconds(&spec.tuning, mapping::window(v).as_secs())
}

/// Runs one tick. `history` is oldest first with the snapshot just taken last. Pure.
pub fn evaluate(
    v: &Validated,
    eff: &AppliedSettings,
    rollout: Option<&Rollout>,
    old: Option<&SloStatus>,
    history: &[Sli],
    now: f64,
) -> Evaluation {
    let spec = mapping::slo_spec(v, eff);
    let settings = mapping::settings(eff, rollout);
    let (mut log, unreadable) =
        report::decisions_back(old.map(|s| s.decisions.as_slice()).unwrap_or(&[]));
    // The same step the local-process and simulated fleets run (sluice_slo::control).
    let p = control::step(&spec, history, &settings, &mut log, now);
    let effective = if p.act { p.desired } else { *eff };
    let slo = match history.last() {
        Some(sli) => report::slo_status(old, sli, &p, &log),
        None => SloStatus {
            state: ObjectiveState::Unknown,
            summary: Some(p.reason.clone()),
            decisions: report::decisions(&log),
            ..SloStatus::default()
        },
    };
    let condition = report::slo_met(&p);
    Evaluation {
        plan: p,
        log,
        slo,
        effective,
        condition,
        unreadable,
    }
}

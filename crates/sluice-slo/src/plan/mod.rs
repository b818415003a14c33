//! Remediation planner: a pure function from (spec, SLI history, effective settings, decision
//! history, now) to a [`Plan`] holding at most one knob change, its reason and evidence.
//!
//! The caller (the operator's SLO loop) reads SLIs, calls [`plan()`], acts only when
//! [`Plan::act`] is true, and folds the plan into its stored decisions with [`apply_plan`]. All
//! state the planner needs between calls lives in those decisions (in-flight change, cooldowns,
//! remedies found not to help), so a restarted operator resumes from its status.

mod engine;
mod evaluate;
mod ledger;
mod objectives;
mod remedy;

pub use engine::plan;
pub use objectives::objective_statuses;

use serde::{Deserialize, Serialize};

use sluice_contract::{
    Action, AppliedSettings, Baseline, BottleneckClass, DecisionKind, Degraded, Evidence, Mode,
    Objective, ObjectiveState, Outcome,
};

use crate::classify::Classification;
use crate::sli::UnixSeconds;

/// One objective's state for status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectiveStatus {
    /// Which objective.
    pub objective: Objective,
    /// Its target.
    pub target: f64,
    /// Current value when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Met, Violated, Unknown or NoTraffic.
    pub state: ObjectiveState,
    /// True when the value is within `headroomRatio * target` (or there is no traffic).
    pub headroom: bool,
    /// Why the value is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One entry of the decision log (the operator keeps the last ten in status).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// Monotonic id within the service.
    pub id: u64,
    /// When decided.
    pub at: UnixSeconds,
    /// Mode at the time.
    pub mode: Mode,
    /// Why.
    pub kind: DecisionKind,
    /// What.
    pub action: Action,
    /// Class at the time.
    #[serde(with = "sluice_contract::slo::class_by_name")]
    pub class: BottleneckClass,
    /// Classifier rule id.
    pub rule: String,
    /// Sentence for humans (`kubectl describe`).
    pub reason: String,
    /// Values behind it.
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    /// SLIs when decided.
    #[serde(default)]
    pub baseline: Baseline,
    /// For a revert: the id it undoes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverts: Option<u64>,
    /// When the change was seen fully rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_at: Option<UnixSeconds>,
    /// What became of it.
    pub outcome: Outcome,
}

impl Decision {
    /// True when the change was carried out (Auto mode), whatever its outcome.
    pub fn acted(&self) -> bool {
        self.action.is_change() && !matches!(self.outcome, Outcome::Advised | Outcome::Noted)
    }
}

/// A change to an existing decision (settled, judged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionUpdate {
    /// Which decision.
    pub id: u64,
    /// Newly observed settle time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_at: Option<UnixSeconds>,
    /// New outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

/// The planner's answer for one tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// When planned.
    pub at: UnixSeconds,
    /// Mode planned under.
    pub mode: Mode,
    /// BottleneckClass class with rule and evidence.
    pub classification: Classification,
    /// Per-objective state.
    pub objectives: Vec<ObjectiveStatus>,
    /// Why this action.
    pub kind: DecisionKind,
    /// The one change, or Hold.
    pub action: Action,
    /// True only in Auto mode with a change: the caller must carry out `action`.
    pub act: bool,
    /// Settings after the action (equal to the current ones for Hold).
    pub desired: AppliedSettings,
    /// One sentence: class, evidence and what is done or why not.
    pub reason: String,
    /// Set when knobs cannot help.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<Degraded>,
    /// New decision-log entry, when this tick is worth one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<Decision>,
    /// Changes to earlier entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub updates: Vec<DecisionUpdate>,
}

/// Folds a plan into the decision log: applies updates, appends the record, keeps the last
/// `keep` entries (never dropping an in-flight `Pending` one while room remains).
pub fn apply_plan(decisions: &mut Vec<Decision>, plan: &Plan, keep: usize) {
    for u in &plan.updates {
        if let Some(d) = decisions.iter_mut().find(|d| d.id == u.id) {
            if let Some(s) = u.settled_at {
                d.settled_at = Some(s);
            }
            if let Some(o) = &u.outcome {
                d.outcome = o.clone();
            }
        }
    }
    if let Some(r) = &plan.record {
        decisions.push(r.clone());
    }
    while decisions.len() > keep.max(1) {
        let idx = decisions
            .iter()
            .position(|d| d.outcome != Outcome::Pending)
            .unwrap_or(0);
        decisions.remove(idx);
    }
}

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

use crate::classify::{Bottleneck, Classification, Evidence};
use crate::sli::UnixSeconds;
use crate::spec::{Mode, Settings};

/// An objective from [`crate::SloTargets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Objective {
    /// TTFT P95.
    TtftP95,
    /// Mean TPOT.
    Tpot,
    /// Error ratio.
    ErrorRatio,
    /// Worst pod's memory use ratio.
    MemoryRatio,
}

/// Whether an objective is met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ObjectiveState {
    /// At or below target.
    Met,
    /// Above target.
    Violated,
    /// The SLI is unknown.
    Unknown,
    /// No requests in the window, so a latency or error SLI has nothing to measure.
    NoTraffic,
}

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

/// A knob the planner turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Knob {
    /// Replica count.
    Replicas,
    /// Quantization rung.
    Quantization,
    /// `max_tokens` cap.
    MaxTokens,
}

/// What to do now: nothing, or exactly one knob change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Action {
    /// Change nothing.
    Hold,
    /// Set the Deployment's replicas.
    ScaleReplicas {
        /// Current.
        from: u32,
        /// New.
        to: u32,
    },
    /// Roll the Deployment to another quantization (a rolling restart).
    SetQuantization {
        /// Current.
        from: String,
        /// New.
        to: String,
    },
    /// Set `max_tokens` on every ready pod's admin endpoint and in the Deployment args.
    SetMaxTokens {
        /// Current.
        from: u32,
        /// New.
        to: u32,
    },
}

impl Action {
    /// The knob changed, if any.
    pub fn knob(&self) -> Option<Knob> {
        match self {
            Action::Hold => None,
            Action::ScaleReplicas { .. } => Some(Knob::Replicas),
            Action::SetQuantization { .. } => Some(Knob::Quantization),
            Action::SetMaxTokens { .. } => Some(Knob::MaxTokens),
        }
    }

    /// True for a change.
    pub fn is_change(&self) -> bool {
        !matches!(self, Action::Hold)
    }

    /// The change that undoes this one.
    pub fn inverse(&self) -> Action {
        match self.clone() {
            Action::Hold => Action::Hold,
            Action::ScaleReplicas { from, to } => Action::ScaleReplicas { from: to, to: from },
            Action::SetQuantization { from, to } => Action::SetQuantization { from: to, to: from },
            Action::SetMaxTokens { from, to } => Action::SetMaxTokens { from: to, to: from },
        }
    }

    /// `settings` with this change applied.
    pub fn apply(&self, settings: &Settings) -> Settings {
        let mut s = settings.clone();
        match self {
            Action::Hold => {}
            Action::ScaleReplicas { to, .. } => s.replicas = *to,
            Action::SetQuantization { to, .. } => s.quantization = to.clone(),
            Action::SetMaxTokens { to, .. } => s.max_tokens = *to,
        }
        s
    }

    /// True when `settings` already shows this change's new value.
    pub fn is_reflected_in(&self, settings: &Settings) -> bool {
        match self {
            Action::Hold => true,
            Action::ScaleReplicas { to, .. } => settings.replicas == *to,
            Action::SetQuantization { to, .. } => settings.quantization == *to,
            Action::SetMaxTokens { to, .. } => settings.max_tokens == *to,
        }
    }

    /// Short human form, e.g. `replicas 2 -> 4`.
    pub fn describe(&self) -> String {
        match self {
            Action::Hold => "hold".into(),
            Action::ScaleReplicas { from, to } => format!("replicas {from} -> {to}"),
            Action::SetQuantization { from, to } => format!("quantization {from} -> {to}"),
            Action::SetMaxTokens { from, to } => format!("maxTokens {from} -> {to}"),
        }
    }
}

/// Why a decision was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DecisionKind {
    /// A change to relieve a violated objective.
    Remediate,
    /// A change back toward the spec after sustained headroom.
    StepBack,
    /// Undo of an earlier change that did not help (or a step-back that hurt).
    Revert,
    /// Nothing changed, for a reason worth recording (unknown metrics, waiting, cooldown).
    Hold,
    /// Knobs cannot fix this; a recommendation is given instead.
    Degraded,
}

/// What became of a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum Outcome {
    /// Acted; waiting for the rollout and for fresh SLIs to judge it.
    Pending,
    /// Advise mode: reported, not acted.
    Advisory,
    /// A hold or degraded note: nothing to judge.
    Noted,
    /// The change relieved the objective it targeted.
    Improved {
        /// Before/after values.
        detail: String,
    },
    /// The change did not help and was reverted.
    NoEffect {
        /// Before/after values.
        detail: String,
    },
    /// A step-back left the objectives met.
    Kept {
        /// After values.
        detail: String,
    },
    /// A step-back broke an objective and was reverted.
    Regressed {
        /// After values.
        detail: String,
    },
    /// A revert finished rolling out.
    Completed {
        /// What was restored.
        detail: String,
    },
    /// Could not be judged (no rollout, unknown metrics, load changed, settings changed).
    Inconclusive {
        /// Why.
        detail: String,
    },
}

/// SLI values when a decision was made, to judge it later.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Baseline {
    /// Objectives violated at the time (what a remedy must improve).
    #[serde(default)]
    pub violated: Vec<Objective>,
    /// TTFT P95 at the time (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_p95_seconds: Option<f64>,
    /// TPOT at the time (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpot_seconds: Option<f64>,
    /// Error ratio at the time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_ratio: Option<f64>,
    /// Worst memory ratio at the time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_ratio: Option<f64>,
    /// Request rate at the time, to tell a load change from an effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_rate_per_second: Option<f64>,
    /// Replicas at the time (with the request rate, the per-pod load that violated).
    pub replicas: u32,
}

impl Baseline {
    /// Value of one objective at the time.
    pub fn value_of(&self, o: Objective) -> Option<f64> {
        match o {
            Objective::TtftP95 => self.ttft_p95_seconds,
            Objective::Tpot => self.tpot_seconds,
            Objective::ErrorRatio => self.error_ratio,
            Objective::MemoryRatio => self.memory_ratio,
        }
    }
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
    pub class: Bottleneck,
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
        self.action.is_change() && !matches!(self.outcome, Outcome::Advisory | Outcome::Noted)
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

/// Knobs cannot fix the problem; what a human should do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Degraded {
    /// Stable CamelCase reason for a condition or Event (e.g. `IoBound`).
    pub reason: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub recommendation: String,
}

/// The planner's answer for one tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// When planned.
    pub at: UnixSeconds,
    /// Mode planned under.
    pub mode: Mode,
    /// Bottleneck class with rule and evidence.
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
    pub desired: Settings,
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

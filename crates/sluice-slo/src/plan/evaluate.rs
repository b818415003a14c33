//! Judging the change in flight: did it roll out, and did it help?
//!
//! A change is judged only once the settings show it and every pod is ready on it
//! ([`super::Action::is_reflected_in`] and [`crate::Settings::settled`]), and then only on a snapshot
//! taken `evaluationWindows` full windows after that, so no pre-change sample is in the rate
//! window. A change that cannot be judged within `settleTimeoutSeconds` is Inconclusive.
//!
//! - a remedy helped when an objective it targeted is now met or improved by at least
//!   `minImprovementRatio`; otherwise it had no effect and is reverted. Load is the confounder:
//!   a remedy that did not help while load grew by more than `loadChangeToleranceRatio`, or
//!   that "helped" while load fell by more than that, is Inconclusive and kept;
//! - a step-back is kept when every objective is still met, and reverted (Regressed) when one
//!   is violated;
//! - a revert is Completed once it has rolled out.

use super::engine::Ctx;
use super::objectives;
use super::{Decision, DecisionKind, DecisionUpdate, Objective, ObjectiveState, Outcome};
use sluice_contract::BottleneckClass;

/// What the engine should do about the change in flight.
#[derive(Debug, PartialEq)]
pub(super) enum Verdict {
    /// Still rolling out or waiting for post-change SLIs: hold.
    Waiting(String),
    /// Judged (or given up on); planning may go on.
    Judged,
    /// Judged as not helping (or hurting): undo it now.
    Revert(String),
}

/// Update for the decision log plus the verdict.
#[derive(Debug)]
pub(super) struct Evaluation {
    pub update: Option<DecisionUpdate>,
    pub verdict: Verdict,
}

fn judged(d: &Decision, settled_at: Option<f64>, outcome: Outcome, verdict: Verdict) -> Evaluation {
    Evaluation {
        update: Some(DecisionUpdate {
            id: d.id,
            settled_at: if d.settled_at.is_none() {
                settled_at
            } else {
                None
            },
            outcome: Some(outcome),
        }),
        verdict,
    }
}

/// Judges `d` (a Pending decision) against the current tick.
pub(super) fn evaluate(d: &Decision, ctx: &Ctx<'_>) -> Evaluation {
    let t = &ctx.spec.tuning;
    let s = ctx.settings;
    let reflected = d.action.is_reflected_in(&s.applied);
    let newly_settled = d.settled_at.is_none() && reflected && s.settled();
    let settled_at = d.settled_at.or(newly_settled.then_some(ctx.now));
    let timeout = t.settle_timeout_seconds as f64;
    let timed_out = ctx.now - d.at > timeout;
    let unknown = ctx.classification.class == BottleneckClass::Unknown;
    let settle_update = newly_settled.then_some(DecisionUpdate {
        id: d.id,
        settled_at: Some(ctx.now),
        outcome: None,
    });
    let wait = |why: String| Evaluation {
        update: settle_update.clone(),
        verdict: Verdict::Waiting(why),
    };

    let Some(settled) = settled_at else {
        let progress = format!(
            "{} of {} pods ready, rollout {}",
            s.ready_replicas,
            s.applied.replicas,
            if s.rollout_complete {
                "complete"
            } else {
                "in progress"
            }
        );
        if !timed_out {
            return wait(format!("rolling out ({progress})"));
        }
        if reflected && d.kind != DecisionKind::Revert && !unknown {
            // The new setting is in place but pods never became ready on it (e.g. a rung that
            // does not load): undo it rather than wait forever.
            let why = format!("did not roll out within {timeout:.0} s ({progress})");
            return judged(
                d,
                None,
                Outcome::Inconclusive {
                    detail: why.clone(),
                },
                Verdict::Revert(why),
            );
        }
        let detail = if reflected {
            format!("did not roll out within {timeout:.0} s ({progress})")
        } else {
            format!(
                "settings never showed {} within {timeout:.0} s",
                d.action.describe()
            )
        };
        return judged(d, None, Outcome::Inconclusive { detail }, Verdict::Judged);
    };

    if d.kind == DecisionKind::Revert {
        let detail = format!("restored {}", d.action.describe());
        return judged(
            d,
            settled_at,
            Outcome::Completed { detail },
            Verdict::Judged,
        );
    }
    if !reflected {
        let detail = format!(
            "settings changed by someone else before {} could be judged",
            d.action.describe()
        );
        return judged(
            d,
            settled_at,
            Outcome::Inconclusive { detail },
            Verdict::Judged,
        );
    }
    let due = settled + f64::from(t.evaluation_windows) * ctx.current.window_seconds as f64;
    if ctx.current.at < due || unknown {
        if timed_out {
            let detail = if unknown {
                format!("SLIs unknown until {timeout:.0} s after the change")
            } else {
                format!("no post-change SLI window within {timeout:.0} s")
            };
            return judged(
                d,
                settled_at,
                Outcome::Inconclusive { detail },
                Verdict::Judged,
            );
        }
        return wait(if unknown {
            "rolled out; waiting for known SLIs to judge it".into()
        } else {
            format!("rolled out; judging on the SLI window ending at {due:.0}")
        });
    }
    match d.kind {
        DecisionKind::StepBack => judge_step_back(d, ctx, settled_at),
        // A scale-out ahead of a breach (capacity model) had nothing to fix yet: it is kept,
        // never reverted for "no effect"; a later breach is remedied on its own.
        DecisionKind::Remediate if d.class == BottleneckClass::Healthy => {
            let detail = format!(
                "scaled ahead of a breach to {} replicas; class now {}",
                ctx.settings.applied.replicas, ctx.classification.class
            );
            judged(d, settled_at, Outcome::Kept { detail }, Verdict::Judged)
        }
        // Reverts were settled above; holds and degradations change nothing and are never
        // pending. Listed, not wildcarded, so a new kind must say how it is judged.
        DecisionKind::Remediate
        | DecisionKind::Revert
        | DecisionKind::Hold
        | DecisionKind::Degraded => judge_remedy(d, ctx, settled_at),
    }
}

fn value_now(ctx: &Ctx<'_>, o: Objective) -> Option<(f64, f64, ObjectiveState)> {
    ctx.statuses
        .iter()
        .find(|s| s.objective == o)
        .map(|s| (s.value.unwrap_or(f64::NAN), s.target, s.state))
}

fn judge_remedy(d: &Decision, ctx: &Ctx<'_>, settled_at: Option<f64>) -> Evaluation {
    let t = &ctx.spec.tuning;
    let mut parts = Vec::new();
    let mut improved = false;
    let mut no_traffic = false;
    for &o in &d.baseline.violated {
        let before = d.baseline.value_of(o);
        match (before, value_now(ctx, o)) {
            (_, Some((_, _, ObjectiveState::NoTraffic))) => no_traffic = true,
            (Some(b), Some((a, target, _))) if a.is_finite() => {
                improved |= a <= target || a <= b * (1.0 - t.min_improvement_ratio);
                parts.push(format!("{o:?} {b:.4} -> {a:.4} (target {target:.4})"));
            }
            _ => parts.push(format!("{o:?} not comparable")),
        }
    }
    if d.baseline.violated.is_empty() {
        // Remedy for a class without a violated objective (e.g. 429s): the class must go.
        improved = ctx.classification.class != d.class;
        parts.push(format!("class {} -> {}", d.class, ctx.classification.class));
    }
    let growth = match (
        d.baseline.request_rate_per_second,
        ctx.current.request_rate_per_second.value(),
    ) {
        (Some(r0), Some(r1)) if r0 > 0.0 => {
            parts.push(format!("requestRate {r0:.2} -> {r1:.2}"));
            Some(r1 / r0 - 1.0)
        }
        _ => None,
    };
    let detail = parts.join("; ");
    let tol = t.load_change_tolerance_ratio;
    let (outcome, verdict) = if no_traffic {
        (
            Outcome::Inconclusive {
                detail: format!("no traffic to judge by; {detail}"),
            },
            Verdict::Judged,
        )
    } else if improved {
        if growth.is_some_and(|g| g < -tol) {
            (
                Outcome::Inconclusive {
                    detail: format!("load fell by more than {:.0}%: {detail}", tol * 100.0),
                },
                Verdict::Judged,
            )
        } else {
            (Outcome::Improved { detail }, Verdict::Judged)
        }
    } else if growth.is_some_and(|g| g > tol) {
        (
            Outcome::Inconclusive {
                detail: format!("load grew by more than {:.0}%: {detail}", tol * 100.0),
            },
            Verdict::Judged,
        )
    } else {
        let why = format!("it did not help: {detail}");
        (Outcome::NoEffect { detail }, Verdict::Revert(why))
    };
    judged(d, settled_at, outcome, verdict)
}

fn judge_step_back(d: &Decision, ctx: &Ctx<'_>, settled_at: Option<f64>) -> Evaluation {
    let broken = objectives::violated(ctx.statuses);
    let detail: Vec<String> = ctx
        .statuses
        .iter()
        .filter_map(|s| {
            s.value
                .map(|v| format!("{:?} {v:.4} (target {:.4})", s.objective, s.target))
        })
        .collect();
    let detail = detail.join("; ");
    if broken.is_empty() {
        judged(d, settled_at, Outcome::Kept { detail }, Verdict::Judged)
    } else {
        let why = format!("the step-back broke {broken:?}: {detail}");
        judged(
            d,
            settled_at,
            Outcome::Regressed { detail },
            Verdict::Revert(why),
        )
    }
}

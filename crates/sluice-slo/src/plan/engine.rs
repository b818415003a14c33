//! The planner's entry point: one tick from (spec, SLI history, settings, decision log, now) to
//! a [`Plan`].
//!
//! Order of questions, each able to end the tick:
//! 1. mode `Off` → hold, record nothing;
//! 2. spec invalid → hold and say why;
//! 3. a change in flight → judge it ([`super::evaluate`]); while it rolls out or waits for
//!    fresh SLIs, hold; a change that did not help is reverted;
//! 4. class `Unknown` → hold every knob (never scale down) and name the unknown SLIs;
//! 5. I/O- or software-bound → no knob change, a [`Degraded`] recommendation instead;
//! 6. queue-, memory- or compute-bound, confirmed on `triggerSnapshots` snapshots → the first
//!    remedy of the class that is possible, not cooling down and not recently found useless;
//! 7. healthy with headroom for `stepBackAfterWindows` windows → step back one knob.
//!
//! Advise mode walks the same path and reports the result with `act: false`.

use super::evaluate::{self, Verdict};
use super::ledger;
use super::objectives::{self, objective_statuses};
use super::remedy::{self, Candidate};
use super::{Action, Decision, DecisionKind, Degraded, ObjectiveStatus, Outcome, Plan};
use sluice_contract::{BottleneckClass, Mode};

use crate::classify::{Classification, classify};
use crate::sli::{Sli, UnixSeconds};
use crate::spec::{Settings, SloSpec};

/// Everything one tick looks at, borrowed.
pub(super) struct Ctx<'a> {
    pub spec: &'a SloSpec,
    /// Snapshots, oldest first; the last is `current`.
    pub history: &'a [Sli],
    pub current: &'a Sli,
    pub settings: &'a Settings,
    pub decisions: &'a [Decision],
    pub now: UnixSeconds,
    pub classification: &'a Classification,
    pub statuses: &'a [ObjectiveStatus],
}

/// What one tick decided, before mode and recording rules are applied.
pub(super) struct Choice {
    pub kind: DecisionKind,
    pub action: Action,
    pub reason: String,
    pub degraded: Option<Degraded>,
    /// A hold worth a log entry (subject to `recordRepeatSeconds`).
    pub record_hold: bool,
    pub reverts: Option<u64>,
}

impl Choice {
    pub fn hold(reason: impl Into<String>, record: bool) -> Self {
        Self {
            kind: DecisionKind::Hold,
            action: Action::Hold,
            reason: reason.into(),
            degraded: None,
            record_hold: record,
            reverts: None,
        }
    }

    fn change(kind: DecisionKind, action: Action, reason: String) -> Self {
        Self {
            kind,
            action,
            reason,
            degraded: None,
            record_hold: false,
            reverts: None,
        }
    }
}

/// Plans one tick.
///
/// `history` is oldest first with the current snapshot last; it should reach back at least
/// `reversalCooldownSeconds` so the scale-in guard sees the recent peak load. `decisions` is the
/// stored log (any order; ids are monotonic). The caller carries out `action` only when
/// [`Plan::act`] is true, then folds the plan into its log with [`super::apply_plan`].
pub fn plan(
    spec: &SloSpec,
    history: &[Sli],
    settings: &Settings,
    decisions: &[Decision],
    now: UnixSeconds,
) -> Plan {
    let Some((current, earlier)) = history.split_last() else {
        let classification = Classification {
            class: BottleneckClass::Unknown,
            rule: "U0".into(),
            summary: "no SLI snapshot was taken".into(),
            evidence: Vec::new(),
            secondary: Vec::new(),
        };
        let mut out = empty_plan(spec, settings, now, classification, Vec::new());
        if spec.mode != Mode::Off {
            let choice = Choice::hold("holding every knob: no SLI snapshot was taken", true);
            finish(&mut out, choice, spec, settings, decisions, None, now);
        } else {
            out.reason = off_reason();
        }
        return out;
    };
    let classification = classify(current, earlier, &spec.targets, &spec.thresholds);
    let statuses = objective_statuses(current, &spec.targets, &spec.tuning, &spec.thresholds);
    let mut out = empty_plan(spec, settings, now, classification, statuses);
    if spec.mode == Mode::Off {
        out.reason = off_reason();
        return out;
    }
    if let Err(e) = spec.validate() {
        let mut choice = Choice::hold(format!("holding every knob: {e}"), true);
        choice.degraded = Some(Degraded {
            reason: "InvalidSloSpec".into(),
            message: e.to_string(),
            recommendation: "fix the slo section of the InferenceService spec".into(),
        });
        finish(&mut out, choice, spec, settings, decisions, None, now);
        return out;
    }
    let ctx = Ctx {
        spec,
        history,
        current,
        settings,
        decisions,
        now,
        classification: &out.classification,
        statuses: &out.objectives,
    };
    let mut updates = Vec::new();
    let choice = decide(&ctx, &mut updates);
    let baseline = objectives::baseline(current, &out.objectives, settings.applied.replicas);
    out.updates = updates;
    finish(
        &mut out,
        choice,
        spec,
        settings,
        decisions,
        Some(baseline),
        now,
    );
    out
}

fn off_reason() -> String {
    "mode Off: the SLO loop changes nothing and records nothing".into()
}

fn empty_plan(
    spec: &SloSpec,
    settings: &Settings,
    now: UnixSeconds,
    classification: Classification,
    objectives: Vec<ObjectiveStatus>,
) -> Plan {
    Plan {
        at: now,
        mode: spec.mode,
        classification,
        objectives,
        kind: DecisionKind::Hold,
        action: Action::Hold,
        act: false,
        desired: settings.applied,
        reason: String::new(),
        degraded: None,
        record: None,
        updates: Vec::new(),
    }
}

fn decide(ctx: &Ctx<'_>, updates: &mut Vec<super::DecisionUpdate>) -> Choice {
    if let Some(d) = ledger::in_flight(ctx.decisions) {
        let ev = evaluate::evaluate(d, ctx);
        if let Some(u) = ev.update {
            updates.push(u);
        }
        match ev.verdict {
            Verdict::Waiting(why) => {
                return Choice::hold(
                    format!(
                        "change #{} ({}) in flight: {why}; one change at a time",
                        d.id,
                        d.action.describe()
                    ),
                    false,
                );
            }
            Verdict::Revert(why) => {
                let violated = objectives::violated(ctx.statuses);
                let revert = revert_action(&d.action, ctx.settings);
                if let Some(action) = revert.as_ref().filter(|a| a.shrinks())
                    && !violated.is_empty()
                {
                    // Undoing a scale-out during a breach removes capacity the breach may still
                    // need: keep it (the ledger blocks the knob as useless) and go on to the
                    // class's next remedy or an advice.
                    let mut next = decide_class(ctx);
                    next.reason = format!(
                        "keeping change #{} although {why}: {violated:?} still violated, and {} \
                         would shrink capacity during the breach; {}",
                        d.id,
                        action.describe(),
                        next.reason
                    );
                    return next;
                }
                if let Some(action) = revert {
                    let mut c = Choice::change(
                        DecisionKind::Revert,
                        action.clone(),
                        format!(
                            "reverting change #{} with {}: {why}",
                            d.id,
                            action.describe()
                        ),
                    );
                    c.reverts = Some(d.id);
                    return c;
                }
            }
            Verdict::Judged => {}
        }
    }
    decide_class(ctx)
}

/// The class's answer when no change in flight decides the tick.
fn decide_class(ctx: &Ctx<'_>) -> Choice {
    match ctx.classification.class {
        BottleneckClass::Unknown => Choice::hold(
            format!(
                "holding every knob, no scale-down: {} ({})",
                ctx.classification.summary, ctx.classification.rule
            ),
            true,
        ),
        BottleneckClass::IoBound | BottleneckClass::SoftwareBound => degraded(ctx),
        BottleneckClass::QueueBound
        | BottleneckClass::MemoryBound
        | BottleneckClass::ComputeBound => remediate(ctx),
        BottleneckClass::Healthy => match remedy::presize(ctx) {
            Some(candidate) => match pick(ctx, vec![candidate]) {
                Ok(action) => Choice::change(
                    DecisionKind::Remediate,
                    action.clone(),
                    format!(
                        "{}: the request rate needs more replicas than run (capacity model), \
                         scaling ahead of a breach: {}",
                        why_class(ctx.classification),
                        action.describe()
                    ),
                ),
                Err(_) => step_back(ctx),
            },
            None => step_back(ctx),
        },
    }
}

/// The change that restores what `action` changed, from the settings now in effect.
fn revert_action(action: &Action, s: &Settings) -> Option<Action> {
    let a = match action.clone() {
        Action::Hold => return None,
        Action::ScaleReplicas { from, .. } => Action::ScaleReplicas {
            from: s.applied.replicas,
            to: from,
        },
        Action::SetQuantization { from, .. } => Action::SetQuantization {
            from: s.applied.quantization,
            to: from,
        },
        Action::SetMaxTokens { from, .. } => Action::SetMaxTokens {
            from: s.applied.max_tokens,
            to: from,
        },
    };
    (!a.is_reflected_in(&s.applied)).then_some(a)
}

/// Short `class (rule: summary; evidence)` prefix for reasons.
pub(super) fn why_class(c: &Classification) -> String {
    let ev: Vec<String> = c.evidence.iter().take(4).map(|e| e.to_string()).collect();
    if ev.is_empty() {
        format!("{} ({}: {})", c.class, c.rule, c.summary)
    } else {
        format!("{} ({}: {}; {})", c.class, c.rule, c.summary, ev.join(", "))
    }
}

fn degraded(ctx: &Ctx<'_>) -> Choice {
    let c = ctx.classification;
    let (message, recommendation) = if c.class == BottleneckClass::IoBound {
        (
            format!("{}; the accelerator waits on something else", c.summary),
            "check model and weight storage, network and host CPU (tokenization, pre-processing) \
             for the pods; more replicas or smaller models would not help an idle accelerator"
                .to_owned(),
        )
    } else {
        (
            format!(
                "{}; the server itself fails or times out requests",
                c.summary
            ),
            "read the inference server's logs for the failing requests and roll back the last \
             image, model or configuration change; more replicas would only fail more requests"
                .to_owned(),
        )
    };
    let mut choice = Choice::hold(
        format!("{}: not scaling, knobs cannot fix this", why_class(c)),
        true,
    );
    choice.kind = DecisionKind::Degraded;
    choice.degraded = Some(Degraded {
        reason: c.class.as_str().to_owned(),
        message,
        recommendation,
    });
    choice
}

/// How many trailing snapshots, all taken a full window after the last change, share the
/// current class (capped at `need`).
fn confirmations(ctx: &Ctx<'_>, need: usize) -> usize {
    let since = ledger::last_change_at(ctx.decisions);
    let mut n = 0;
    for i in (0..ctx.history.len()).rev() {
        let s = &ctx.history[i];
        if since.is_some_and(|t| s.at - (s.window_seconds as f64) < t) {
            break;
        }
        let class = if i + 1 == ctx.history.len() {
            ctx.classification.class
        } else {
            classify(
                s,
                &ctx.history[..i],
                &ctx.spec.targets,
                &ctx.spec.thresholds,
            )
            .class
        };
        if class != ctx.classification.class {
            break;
        }
        n += 1;
        if n >= need {
            break;
        }
    }
    n
}

fn remediate(ctx: &Ctx<'_>) -> Choice {
    let c = ctx.classification;
    let need = ctx.spec.tuning.trigger_snapshots.max(1) as usize;
    let seen = confirmations(ctx, need);
    if seen < need {
        return Choice::hold(
            format!(
                "{}: seen on {seen} of {need} snapshots since the last change; confirming before acting",
                why_class(c)
            ),
            false,
        );
    }
    let candidates = remedy::remedies(ctx);
    match pick(ctx, candidates) {
        Ok(action) => Choice::change(
            DecisionKind::Remediate,
            action.clone(),
            format!("{}: {}", why_class(c), action.describe()),
        ),
        Err(why) => Choice::hold(format!("{}: no remedy now: {why}", why_class(c)), true),
    }
}

/// The first candidate that is possible, not blocked and not cooling down; else why none is.
fn pick(ctx: &Ctx<'_>, candidates: Vec<Candidate>) -> Result<Action, String> {
    let (k, t) = (&ctx.spec.knobs, &ctx.spec.tuning);
    let mut why = Vec::new();
    for cand in candidates {
        let action = match cand.action {
            Ok(a) => a,
            Err(e) => {
                why.push(format!("{}: {e}", cand.label));
                continue;
            }
        };
        if let Some(d) = ledger::blocked_by(ctx.decisions, &action, k, t, ctx.now) {
            why.push(format!(
                "{}: change #{} like it did not help, blocked for {:.0} s",
                cand.label,
                d.id,
                d.at + t.ineffective_block_seconds as f64 - ctx.now
            ));
            continue;
        }
        if let Some((left, rule)) = ledger::cooldown_left(ctx.decisions, &action, k, t, ctx.now) {
            why.push(format!("{}: {rule}, {left:.0} s left", cand.label));
            continue;
        }
        return Ok(action);
    }
    Err(if why.is_empty() {
        "no knob is allowed".into()
    } else {
        why.join("; ")
    })
}

fn step_back(ctx: &Ctx<'_>) -> Choice {
    let c = ctx.classification;
    match remedy::step_backs(ctx) {
        remedy::StepBack::Nothing(why) => Choice::hold(format!("{}: {why}", why_class(c)), false),
        remedy::StepBack::Candidates(candidates) => match pick(ctx, candidates) {
            Ok(action) => Choice::change(
                DecisionKind::StepBack,
                action.clone(),
                format!(
                    "{}: headroom for {} windows, stepping back {}",
                    why_class(c),
                    ctx.spec.tuning.step_back_after_windows,
                    action.describe()
                ),
            ),
            Err(why) => Choice::hold(format!("{}: not stepping back: {why}", why_class(c)), false),
        },
    }
}

/// True when an identical note (same kind, class and action) was logged within the repeat
/// period, so an unchanged state does not flood the ten-entry log.
fn repeated(
    decisions: &[Decision],
    kind: DecisionKind,
    class: BottleneckClass,
    action: &Action,
    repeat: u64,
    now: UnixSeconds,
) -> bool {
    decisions.iter().max_by_key(|d| d.id).is_some_and(|d| {
        d.kind == kind
            && d.class == class
            && &d.action == action
            && !matches!(d.outcome, super::Outcome::Pending)
            && now - d.at < repeat as f64
    })
}

/// Applies the mode and recording rules to a choice.
fn finish(
    out: &mut Plan,
    choice: Choice,
    spec: &SloSpec,
    settings: &Settings,
    decisions: &[Decision],
    baseline: Option<super::Baseline>,
    now: UnixSeconds,
) {
    let change = choice.action.is_change();
    let auto = spec.mode == Mode::Auto;
    out.kind = choice.kind;
    out.act = auto && change;
    out.desired = choice.action.apply(&settings.applied);
    out.reason = if change && !auto {
        format!("{} (advice only: mode is {:?})", choice.reason, spec.mode)
    } else {
        choice.reason.clone()
    };
    out.degraded = choice.degraded;
    let outcome = match (change, auto) {
        (true, true) => Outcome::Pending,
        (true, false) => Outcome::Advised,
        (false, _) => Outcome::Noted,
    };
    let worth = (change && auto)
        || ((change || choice.record_hold)
            && !repeated(
                decisions,
                choice.kind,
                out.classification.class,
                &choice.action,
                spec.tuning.record_repeat_seconds,
                now,
            ));
    out.action = choice.action;
    if worth {
        out.record = Some(Decision {
            id: ledger::next_id(decisions),
            at: now,
            mode: spec.mode,
            kind: choice.kind,
            action: out.action.clone(),
            class: out.classification.class,
            rule: out.classification.rule.clone(),
            reason: out.reason.clone(),
            evidence: out.classification.evidence.clone(),
            baseline: baseline.unwrap_or_else(|| super::Baseline {
                replicas: settings.applied.replicas,
                ..Default::default()
            }),
            reverts: choice.reverts,
            settled_at: None,
            outcome,
        });
    }
}

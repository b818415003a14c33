//! Which knob changes fit a class, and which step-backs the headroom allows.
//!
//! Candidates come in priority order; the engine takes the first one that is possible, not
//! blocked by an earlier useless attempt and not cooling down. A candidate that cannot be made
//! carries the reason, so a hold can say why nothing was done.

use super::engine::Ctx;
use super::ledger;
use super::objectives::{full_headroom, load_headroom, objective_statuses};
use super::{Action, Objective, ObjectiveState, ObjectiveStatus};
use sluice_contract::BottleneckClass;

/// One possible change, or why it is not possible now.
pub(super) struct Candidate {
    /// Short name for reasons (`scale out`, `quantization`, `maxTokens`).
    pub label: &'static str,
    pub action: Result<Action, String>,
}

/// Step-back candidates, or why there is nothing to step back.
pub(super) enum StepBack {
    Nothing(String),
    Candidates(Vec<Candidate>),
}

/// Remedies for a remediable class, in the order the class prefers them.
pub(super) fn remedies(ctx: &Ctx<'_>) -> Vec<Candidate> {
    match ctx.classification.class {
        // Requests wait for admission: capacity helps, the pod's work does not change.
        BottleneckClass::QueueBound => vec![scale_out(ctx)],
        // A replica cannot shrink a pod's footprint; a lower rung or shorter generations can.
        BottleneckClass::MemoryBound => vec![quantize_down(ctx), clamp_tokens(ctx)],
        // Cheapest first: shorter generations cost nothing to roll out, quantization restarts
        // pods, replicas cost money.
        BottleneckClass::ComputeBound => {
            vec![clamp_tokens(ctx), quantize_down(ctx), spread_batch(ctx)]
        }
        // Neither replicas nor a lighter model fix storage waits or errors (the planner
        // refuses with the class's reason); the rest have nothing to remedy. Listed, not
        // wildcarded, so a new class must choose its remedies here.
        BottleneckClass::IoBound
        | BottleneckClass::SoftwareBound
        | BottleneckClass::Healthy
        | BottleneckClass::Unknown => Vec::new(),
    }
}

/// Replicas the capacity model says carry `rate` req/s: the rate over one replica's capacity
/// times `headroomRatio` (the share of saturation a replica is sized to run at), rounded up.
/// None without a model.
pub(super) fn model_replicas(ctx: &Ctx<'_>, rate: f64) -> Option<u32> {
    let per_replica =
        ctx.spec.capacity?.requests_per_second_per_replica * ctx.spec.tuning.headroom_ratio;
    (per_replica > 0.0 && rate.is_finite() && rate >= 0.0)
        .then(|| (rate / per_replica).ceil().min(f64::from(u32::MAX)) as u32)
}

/// What the capacity model asks for at the current request rate, when that is more than runs.
fn model_shortfall(ctx: &Ctx<'_>) -> Option<u32> {
    let rate = ctx.current.request_rate_per_second.value()?;
    let need = model_replicas(ctx, rate)?;
    need.checked_sub(ctx.settings.applied.replicas)
        .filter(|&n| n > 0)
}

fn scale_out(ctx: &Ctx<'_>) -> Candidate {
    let (s, k, t) = (ctx.settings, &ctx.spec.knobs, &ctx.spec.tuning);
    let action = if s.applied.replicas >= k.max_replicas {
        Err(format!("at maxReplicas {}", k.max_replicas))
    } else {
        // Grow in proportion to the worst latency overshoot (value / target, at most double;
        // by half when only rejections show the queue), or — with a capacity model — to what
        // the request rate needs, whichever is more; at least one and at most maxScaleOutStep
        // pods. Pods still starting are capacity the SLIs do not show yet, so they count
        // against the step.
        let max_step = t.max_scale_out_step.max(1);
        let factor = latency_overshoot(ctx).map_or(1.5, |r| r.min(2.0));
        let reactive =
            ((f64::from(s.applied.replicas) * (factor - 1.0)).ceil() as u32).clamp(1, max_step);
        let starting = s.starting();
        // The model's shortfall is counted from every replica asked for, starting ones
        // included, so they are not subtracted again.
        let sized = model_shortfall(ctx).unwrap_or(0).min(max_step);
        match reactive.saturating_sub(starting).max(sized) {
            0 => Err(format!(
                "{starting} pod(s) still starting already cover the next step"
            )),
            step => Ok(Action::ScaleReplicas {
                from: s.applied.replicas,
                to: (s.applied.replicas + step).min(k.max_replicas),
            }),
        }
    };
    Candidate {
        label: "scale out",
        action,
    }
}

/// Scale-out for a compute-bound service: more replicas only help by splitting batches, so
/// when each pod already decodes about one sequence, a new pod cannot make a stream faster and
/// scaling is refused (an unknown batch does not block it). The batch is the window's average
/// by Little's law (tokens per second × seconds per token = sequences decoding at once), which
/// a momentary `runningSequences` sample is not.
fn spread_batch(ctx: &Ctx<'_>) -> Candidate {
    let cur = ctx.current;
    let decoding = match (cur.tokens_per_second.value(), cur.tpot_seconds.value()) {
        (Some(tps), Some(tpot)) => Some(tps * tpot),
        _ => cur.running_sequences.value(),
    };
    if let (Some(running), Some(pods)) = (decoding, cur.reporting_pods.value())
        && pods > 0.0
        && running / pods < MIN_BATCH_TO_SPREAD
    {
        return Candidate {
            label: "scale out",
            action: Err(format!(
                "each pod decodes {:.1} sequence(s) on average: more replicas cannot make one \
                 stream faster",
                running / pods
            )),
        };
    }
    scale_out(ctx)
}

/// Sequences per pod below which splitting the batch cannot speed up decoding.
const MIN_BATCH_TO_SPREAD: f64 = 1.5;

/// Worst value/target ratio among the violated latency objectives.
fn latency_overshoot(ctx: &Ctx<'_>) -> Option<f64> {
    ctx.statuses
        .iter()
        .filter(|st| {
            st.state == ObjectiveState::Violated
                && matches!(st.objective, Objective::TtftP95 | Objective::TpotAvg)
        })
        .filter_map(|st| st.value.map(|v| v / st.target))
        .max_by(f64::total_cmp)
}

fn rung(ctx: &Ctx<'_>) -> Result<usize, String> {
    let ladder = &ctx.spec.knobs.quantization_ladder;
    if ladder.len() < 2 {
        return Err("quantization is fixed (ladder has fewer than two rungs)".into());
    }
    let q = &ctx.settings.applied.quantization;
    ladder
        .iter()
        .position(|l| l == q)
        .ok_or_else(|| format!("quantization {q:?} is not on the ladder {ladder:?}"))
}

fn quantize_down(ctx: &Ctx<'_>) -> Candidate {
    let ladder = &ctx.spec.knobs.quantization_ladder;
    let action = rung(ctx).and_then(|p| match ladder.get(p + 1) {
        Some(next) => Ok(Action::SetQuantization {
            from: ctx.settings.applied.quantization,
            to: *next,
        }),
        None => Err(format!(
            "already at the lowest rung {}",
            ctx.settings.applied.quantization
        )),
    });
    Candidate {
        label: "quantization",
        action,
    }
}

fn clamp_tokens(ctx: &Ctx<'_>) -> Candidate {
    let cur = ctx.settings.applied.max_tokens;
    let floor = ctx.spec.knobs.max_tokens_floor;
    let action = if cur <= floor {
        Err(format!("maxTokens {cur} already at the floor {floor}"))
    } else {
        let scaled = (f64::from(cur) * ctx.spec.tuning.max_tokens_step_ratio).floor() as u32;
        Ok(Action::SetMaxTokens {
            from: cur,
            to: scaled.min(cur - 1).max(floor),
        })
    };
    Candidate {
        label: "maxTokens",
        action,
    }
}

/// Counts windows of continuous headroom ending now: trailing snapshots taken a full window
/// after the last change, all with headroom, counting only those at least a window apart (a
/// 15 s tick over a 60 s window would otherwise count one minute four times).
fn headroom_windows(ctx: &Ctx<'_>, ok: fn(&[ObjectiveStatus]) -> bool) -> u32 {
    let since = ledger::last_change_at(ctx.decisions);
    let last = ctx.history.len().saturating_sub(1);
    let mut count = 0;
    let mut next_at = f64::INFINITY;
    for (i, s) in ctx.history.iter().enumerate().rev() {
        let window = s.window_seconds as f64;
        if since.is_some_and(|t| s.at - window < t) {
            break;
        }
        let fine = if i == last {
            ok(ctx.statuses)
        } else {
            let st =
                objective_statuses(s, &ctx.spec.targets, &ctx.spec.tuning, &ctx.spec.thresholds);
            ok(&st)
        };
        if !fine {
            break;
        }
        if s.at <= next_at {
            count += 1;
            next_at = s.at - window;
        }
    }
    count
}

/// Highest known request rate within the reversal cooldown before now.
fn recent_peak_rate(ctx: &Ctx<'_>) -> Option<f64> {
    let horizon = ctx.now - ctx.spec.tuning.reversal_cooldown_seconds as f64;
    ctx.history
        .iter()
        .filter(|s| s.at >= horizon)
        .filter_map(|s| s.request_rate_per_second.value())
        .max_by(f64::total_cmp)
}

/// Step-backs in order: scale in, restore quantization, restore `max_tokens`, one knob and
/// one step at a time.
pub(super) fn step_backs(ctx: &Ctx<'_>) -> StepBack {
    let (s, k, t) = (ctx.settings, &ctx.spec.knobs, &ctx.spec.tuning);
    let need = t.step_back_after_windows.max(1);
    let mut out = Vec::new();
    let waiting = |have: u32| format!("headroom for {have} of {need} windows");

    if s.applied.replicas > k.min_replicas {
        let have = headroom_windows(ctx, load_headroom);
        let action = if have < need {
            Err(waiting(have))
        } else {
            scale_in(ctx)
        };
        out.push(Candidate {
            label: "scale in",
            action,
        });
    }
    let quant = rung(ctx).ok().filter(|&p| p > 0);
    let tokens = s.applied.max_tokens < k.max_tokens;
    if quant.is_some() || tokens {
        let have = headroom_windows(ctx, full_headroom);
        if let Some(p) = quant {
            out.push(Candidate {
                label: "restore quantization",
                action: if have < need {
                    Err(waiting(have))
                } else {
                    Ok(Action::SetQuantization {
                        from: s.applied.quantization,
                        to: k.quantization_ladder[p - 1],
                    })
                },
            });
        }
        if tokens {
            let up = (f64::from(s.applied.max_tokens) / t.max_tokens_step_ratio).ceil();
            let to = (up.min(f64::from(k.max_tokens)) as u32).max(s.applied.max_tokens + 1);
            out.push(Candidate {
                label: "restore maxTokens",
                action: if have < need {
                    Err(waiting(have))
                } else {
                    Ok(Action::SetMaxTokens {
                        from: s.applied.max_tokens,
                        to: to.min(k.max_tokens),
                    })
                },
            });
        }
    }
    if out.is_empty() {
        StepBack::Nothing("all objectives met; settings are at the spec".into())
    } else {
        StepBack::Candidates(out)
    }
}

/// Scale-out ahead of a breach: with a capacity model, a healthy service whose request rate
/// already needs more replicas than run (and start) gets them now, before its queue shows it.
pub(super) fn presize(ctx: &Ctx<'_>) -> Option<Candidate> {
    model_shortfall(ctx)?;
    let mut c = scale_out(ctx);
    c.label = "scale out ahead";
    Some(c)
}

/// One replica fewer, unless the recent peak load would then reach the per-pod rate that last
/// needed a scale-out (less the headroom), or exceed what the capacity model says the fewer
/// replicas carry: that is what stops an oscillating load from flapping.
fn scale_in(ctx: &Ctx<'_>) -> Result<Action, String> {
    let s = ctx.settings;
    let to = s.applied.replicas - 1;
    if let Some(peak) = recent_peak_rate(ctx)
        && let Some(need) = model_replicas(ctx, peak)
        && need > to
    {
        return Err(format!(
            "the capacity model needs {need} replica(s) for the peak of the last {} s ({peak:.2} req/s)",
            ctx.spec.tuning.reversal_cooldown_seconds
        ));
    }
    if let (Some((violating, id)), Some(peak)) = (
        ledger::violating_rate_per_pod(ctx.decisions),
        recent_peak_rate(ctx),
    ) {
        let limit = violating * ctx.spec.tuning.headroom_ratio;
        let per_pod = peak / f64::from(to);
        if per_pod > limit {
            return Err(format!(
                "the peak of the last {} s ({peak:.2} req/s) would be {per_pod:.2} req/s per pod on {to} pods, above {limit:.2} (headroom x the {violating:.2} per pod that needed scale-out #{id})",
                ctx.spec.tuning.reversal_cooldown_seconds
            ));
        }
    }
    Ok(Action::ScaleReplicas {
        from: s.applied.replicas,
        to,
    })
}

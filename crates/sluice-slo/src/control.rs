//! The one control loop: observe SLIs → classify → plan → act → verify/revert → log, generic over
//! the fleet it controls.
//!
//! Every fleet runs the same code: the Kubernetes operator (its reconcile stages call
//! [`remember`], [`step`] and [`history_seconds`] between its observe and act stages, because
//! acting there means an SSA apply and a status write), local `sluice-server` processes (`sluice
//! demo`) and the simulator (`sluice simulate`) through [`ControlLoop::tick`] over a [`Fleet`].
//! Classification, planning, verification of changes in flight and reverts all live in
//! [`crate::plan()`]; this module only owns the loop's memory (SLI history and decision log) and
//! the order of the steps, so no fleet carries policy of its own.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use sluice_contract::Action;

use crate::plan::{Decision, Plan, apply_plan, plan};
use crate::sli::{Sli, UnixSeconds};
use crate::spec::{Settings, SloSpec, Tuning};

/// Decisions kept in the log, as the operator keeps them in status.
pub const KEEP_DECISIONS: usize = 10;

/// Most snapshots kept: an hour at a 15 s interval, enough for the planner's reversal and
/// scale-in guards.
pub const HISTORY_CAP: usize = 240;

/// What a fleet reports at one tick: the settings in force and the SLIs over the last window.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// Replicas, quantization and `max_tokens` in force, and how far a rollout got.
    pub settings: Settings,
    /// The SLI snapshot; unreadable values are `Unknown`, never 0.
    pub sli: Sli,
}

/// A fleet the loop controls: what is running, its SLIs, and a way to apply one change.
///
/// Implementations carry no policy: they report and they obey.
pub trait Fleet {
    /// Why observing or applying failed.
    type Error: std::fmt::Display;

    /// Reads the settings in force and the SLIs at `now`.
    fn observe(&mut self, now: UnixSeconds) -> impl Future<Output = Result<Observed, Self::Error>>;

    /// Carries out `action`, after which the fleet runs with `desired`.
    fn apply(
        &mut self,
        action: &Action,
        desired: &Settings,
        now: UnixSeconds,
    ) -> impl Future<Output = Result<(), Self::Error>>;
}

/// How long SLI history must reach back for the planner (its reversal and step-back guards) with
/// SLI windows of `window_seconds`.
pub fn history_seconds(tuning: &Tuning, window_seconds: u64) -> f64 {
    let headroom = u64::from(tuning.step_back_after_windows + 1) * window_seconds;
    tuning
        .reversal_cooldown_seconds
        .max(headroom)
        .max(window_seconds) as f64
}

/// Appends `sli` to `history` (oldest first), keeping snapshots younger than `keep_seconds` and
/// at most [`HISTORY_CAP`].
pub fn remember(history: &mut Vec<Sli>, sli: Sli, keep_seconds: f64) {
    let now = sli.at;
    history.push(sli);
    history.retain(|s| now - s.at <= keep_seconds);
    if history.len() > HISTORY_CAP {
        let drop = history.len() - HISTORY_CAP;
        history.drain(..drop);
    }
}

/// One pure step: plans on `history` (the new snapshot last) and folds the plan into `log`.
/// The caller carries out the plan's action only when [`Plan::act`] is true.
pub fn step(
    spec: &SloSpec,
    history: &[Sli],
    settings: &Settings,
    log: &mut Vec<Decision>,
    now: UnixSeconds,
) -> Plan {
    let p = plan(spec, history, settings, log, now);
    apply_plan(log, &p, KEEP_DECISIONS);
    p
}

/// What one tick did.
#[derive(Debug, Clone, PartialEq)]
pub struct TickReport {
    /// What the fleet reported.
    pub observed: Observed,
    /// The planner's answer.
    pub plan: Plan,
    /// Set when the plan acted and the fleet failed to apply it.
    pub apply_error: Option<String>,
}

/// The loop's memory for one service: its spec, SLI history and decision log.
#[derive(Debug, Clone)]
pub struct ControlLoop {
    /// Objectives, knobs and tuning.
    pub spec: SloSpec,
    /// Length of an SLI window (seconds), sizing the history kept.
    pub window_seconds: u64,
    history: Vec<Sli>,
    log: Vec<Decision>,
}

impl ControlLoop {
    /// A loop with no history and an empty decision log.
    pub fn new(spec: SloSpec, window_seconds: u64) -> Self {
        Self {
            spec,
            window_seconds,
            history: Vec::new(),
            log: Vec::new(),
        }
    }

    /// The decision log, oldest first.
    pub fn decisions(&self) -> &[Decision] {
        &self.log
    }

    /// The SLI history, oldest first.
    pub fn history(&self) -> &[Sli] {
        &self.history
    }

    /// One tick: observe, plan (which also verifies and, if need be, reverts the change in
    /// flight), act when the plan says so, and log. An observation failure skips the tick and is
    /// returned; an apply failure is reported and the change stays in the log, where the planner
    /// judges it like any other (it never rolls out, so it times out as inconclusive).
    pub async fn tick<F: Fleet>(
        &mut self,
        fleet: &mut F,
        now: UnixSeconds,
    ) -> Result<TickReport, F::Error> {
        let observed = fleet.observe(now).await?;
        let keep = history_seconds(&self.spec.tuning, self.window_seconds);
        remember(&mut self.history, observed.sli.clone(), keep);
        let plan = step(
            &self.spec,
            &self.history,
            &observed.settings,
            &mut self.log,
            now,
        );
        let mut apply_error = None;
        if plan.act {
            let desired = Settings {
                applied: plan.desired,
                ..observed.settings
            };
            if let Err(e) = fleet.apply(&plan.action, &desired, now).await {
                apply_error = Some(e.to_string());
            }
        }
        Ok(TickReport {
            observed,
            plan,
            apply_error,
        })
    }

    /// [`ControlLoop::tick`] for a fleet whose futures complete without waiting (the
    /// simulator's): polls once and returns. Panics if the fleet's future is not ready, which
    /// would be a bug in a synchronous fleet.
    pub fn tick_now<F: Fleet>(
        &mut self,
        fleet: &mut F,
        now: UnixSeconds,
    ) -> Result<TickReport, F::Error> {
        let mut fut = pin!(self.tick(fleet, now));
        match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(r) => r,
            Poll::Pending => panic!("tick_now: the fleet's future waited; use tick().await"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sli::SliValue;
    use crate::spec::{Knobs, SloTargets};
    use sluice_contract::{AppliedSettings, Mode, Quantization};

    /// A queue-bound fleet: TTFT stays high until it runs three replicas.
    struct Toy {
        settings: Settings,
        applied: Vec<Action>,
    }

    impl Fleet for Toy {
        type Error = String;

        async fn observe(&mut self, now: UnixSeconds) -> Result<Observed, String> {
            let mut sli = Sli::all_unknown(now, 60, "toy");
            let short = self.settings.applied.replicas < 3;
            let k = |v: f64| SliValue::known(v, now);
            sli.ttft_p95_seconds = k(if short { 4.0 } else { 0.2 });
            sli.tpot_seconds = k(0.01);
            sli.error_ratio = k(0.0);
            sli.rejection_ratio = k(0.0);
            sli.internal_error_ratio = k(0.0);
            sli.request_rate_per_second = k(5.0);
            sli.queue_depth = k(if short { 40.0 } else { 0.0 });
            sli.queue_wait_seconds = k(if short { 3.5 } else { 0.0 });
            sli.service_time_seconds = k(0.5);
            sli.running_sequences = k(4.0);
            sli.tokens_per_second = k(100.0);
            sli.reporting_pods = k(f64::from(self.settings.ready_replicas));
            sli.memory = vec![crate::sli::MemorySli {
                memory_type: "kv_cache".into(),
                usage_megabytes: k(100.0),
                capacity_megabytes: k(1000.0),
                usage_ratio: k(0.1),
            }];
            Ok(Observed {
                settings: self.settings,
                sli,
            })
        }

        async fn apply(
            &mut self,
            action: &Action,
            desired: &Settings,
            _: f64,
        ) -> Result<(), String> {
            self.applied.push(action.clone());
            self.settings.applied = desired.applied;
            self.settings.ready_replicas = desired.applied.replicas;
            Ok(())
        }
    }

    #[test]
    fn one_tick_observes_plans_acts_and_logs() {
        let spec = SloSpec {
            mode: Mode::Auto,
            targets: SloTargets {
                ttft_p95_seconds: Some(1.0),
                ..SloTargets::default()
            },
            knobs: Knobs {
                min_replicas: 1,
                max_replicas: 4,
                quantization_ladder: vec![Quantization::F16],
                max_tokens: 256,
                max_tokens_floor: 256,
            },
            tuning: Tuning::default(),
            thresholds: Default::default(),
            capacity: None,
        };
        let mut fleet = Toy {
            settings: Settings {
                applied: AppliedSettings {
                    replicas: 1,
                    quantization: Quantization::F16,
                    max_tokens: 256,
                },
                ready_replicas: 1,
                rollout_complete: true,
            },
            applied: Vec::new(),
        };
        let mut lp = ControlLoop::new(spec, 60);
        let mut t = 0.0;
        let mut last = String::new();
        while fleet.applied.is_empty() && t < 600.0 {
            t += 15.0;
            let r = lp.tick_now(&mut fleet, t).unwrap();
            assert!(r.apply_error.is_none());
            last = r.plan.reason;
        }
        assert!(
            matches!(fleet.applied[..], [Action::ScaleReplicas { from: 1, to }] if to > 1),
            "{:?}: {last}",
            fleet.applied
        );
        assert!(fleet.settings.applied.replicas > 1);
        assert!(lp.decisions().iter().any(|d| d.action == fleet.applied[0]));
        // The history is bounded by time.
        assert!(lp.history().len() <= HISTORY_CAP);
    }
}

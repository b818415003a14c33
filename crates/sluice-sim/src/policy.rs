//! The autoscaling policies compared: `sluice` (the operator's own loop and planner, through the
//! same [`ControlLoop`] the operator runs), `hpa` (the Kubernetes HPA algorithm on a
//! concurrency or utilisation target), `keda` (a queue-length target fed to the same HPA
//! algorithm, as KEDA's Prometheus scaler does) and `static` (fixed replicas).
//!
//! The HPA follows `pkg/controller/podautoscaler`: desired = ceil(ratio × ready pods) where ratio
//! is the metric over its target, no change within the 10 % tolerance; while pods are still
//! starting, a scale-up is re-checked with them counted at zero (and dropped if that flips it);
//! the default behaviour limits a scale-up to max(+100 %, +4 pods) per 15 s and a scale-down to
//! the highest recommendation of the last 300 s (the stabilisation window).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use sluice_contract::{Action, BottleneckClass};
use sluice_slo::ControlLoop;

use crate::fleet::{LoopFleet, Next, SimFleet};

/// One change a policy made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Taken {
    /// Seconds from the start.
    pub at: f64,
    /// The change.
    pub action: Action,
    /// The bottleneck the policy named (class-blind policies name none: `Unknown`).
    #[serde(with = "sluice_contract::slo::class_by_name")]
    pub class: BottleneckClass,
    /// Why, in the policy's words.
    pub reason: String,
}

/// A policy ticking at the loop's interval.
pub trait Policy {
    /// Name in reports.
    fn name(&self) -> String;
    /// Reads what it reads at `now` and changes the fleet; returns the events the change
    /// scheduled and what it did.
    fn tick(&mut self, fleet: &mut SimFleet, now: f64) -> (Vec<(f64, Next)>, Vec<Taken>);
}

/// The operator's loop.
#[derive(Debug)]
pub struct Sluice {
    lp: ControlLoop,
    /// `sluice`, or `sluice-model` when the spec carries a capacity model (model-based sizing).
    name: &'static str,
}

impl Sluice {
    /// The loop over `spec` with SLI windows of `window_seconds`.
    pub fn new(spec: sluice_slo::SloSpec, window_seconds: u64) -> Self {
        let name = if spec.capacity.is_some() {
            "sluice-model"
        } else {
            "sluice"
        };
        Self {
            lp: ControlLoop::new(spec, window_seconds),
            name,
        }
    }
}

impl Policy for Sluice {
    fn name(&self) -> String {
        self.name.into()
    }

    fn tick(&mut self, fleet: &mut SimFleet, now: f64) -> (Vec<(f64, Next)>, Vec<Taken>) {
        let mut lf = LoopFleet {
            fleet,
            scheduled: Vec::new(),
        };
        let report = match self.lp.tick_now(&mut lf, now) {
            Ok(r) => r,
            Err(e) => match e {},
        };
        let taken = report
            .plan
            .act
            .then(|| Taken {
                at: now,
                action: report.plan.action.clone(),
                class: report.plan.classification.class,
                reason: report.plan.reason.clone(),
            })
            .into_iter()
            .collect();
        (lf.scheduled, taken)
    }
}

/// What the HPA scales on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "metric", rename_all = "camelCase")]
pub enum HpaMetric {
    /// Average in-flight requests per pod (`llm_in_flight_requests`) at this target.
    Concurrency {
        /// Target per pod.
        target: f64,
    },
    /// Average busy share of each pod's step loop (CPU or GPU utilisation) at this target
    /// (0..1).
    Utilization {
        /// Target share.
        target: f64,
    },
    /// KEDA: total waiting requests (`llm_queue_depth`) per replica at this target.
    QueueLength {
        /// Target per replica.
        target: f64,
    },
}

/// The HPA algorithm (KEDA is this with [`HpaMetric::QueueLength`]).
#[derive(Debug, Clone)]
pub struct Hpa {
    metric: HpaMetric,
    min: u32,
    max: u32,
    /// (time, recommendation) of the last 300 s.
    recommendations: VecDeque<(f64, u32)>,
    window_seconds: f64,
}

/// The HPA's tolerance around a ratio of 1.
pub const HPA_TOLERANCE: f64 = 0.1;
/// The HPA's default scale-down stabilisation window.
pub const HPA_DOWN_STABILISATION_SECONDS: f64 = 300.0;

impl Hpa {
    /// An HPA between `min` and `max` replicas; utilisation is averaged over `window_seconds`.
    pub fn new(metric: HpaMetric, min: u32, max: u32, window_seconds: f64) -> Self {
        Self {
            metric,
            min: min.max(1),
            max: max.max(min.max(1)),
            recommendations: VecDeque::new(),
            window_seconds,
        }
    }

    /// The raw recommendation from the metric (before behaviour limits).
    fn recommend(&self, fleet: &SimFleet, now: f64) -> u32 {
        let current = fleet.replicas();
        let ready = fleet.ready();
        let unready = current.saturating_sub(ready);
        if ready == 0 {
            return current;
        }
        let (sum, target, per_pod) = match self.metric {
            HpaMetric::Concurrency { target } => (fleet.in_flight().0, target, true),
            HpaMetric::Utilization { target } => {
                let r = fleet.records.read(now - self.window_seconds, now);
                let busy = (r.busy_seconds / self.window_seconds).min(f64::from(ready));
                (busy, target, true)
            }
            HpaMetric::QueueLength { target } => (fleet.queue_depth(), target, false),
        };
        if !per_pod {
            // AverageValue over the scale target: desired = ceil(total / target).
            let ratio = sum / (target * f64::from(current.max(1)));
            if (ratio - 1.0).abs() <= HPA_TOLERANCE {
                return current;
            }
            return (sum / target).ceil() as u32;
        }
        let ratio = sum / (target * f64::from(ready));
        if (ratio - 1.0).abs() <= HPA_TOLERANCE {
            return current;
        }
        if ratio > 1.0 && unready > 0 {
            // Starting pods count as idle; if that undoes the scale-up, hold.
            let with_unready = sum / (target * f64::from(ready + unready));
            if with_unready <= 1.0 + HPA_TOLERANCE {
                return current;
            }
            return (with_unready * f64::from(ready + unready)).ceil() as u32;
        }
        (ratio * f64::from(ready)).ceil() as u32
    }
}

impl Policy for Hpa {
    fn name(&self) -> String {
        match self.metric {
            HpaMetric::Concurrency { target } => format!("hpa (concurrency {target})"),
            HpaMetric::Utilization { target } => format!("hpa (utilisation {target})"),
            HpaMetric::QueueLength { target } => format!("keda (queue {target})"),
        }
    }

    fn tick(&mut self, fleet: &mut SimFleet, now: f64) -> (Vec<(f64, Next)>, Vec<Taken>) {
        let current = fleet.replicas();
        let raw = self.recommend(fleet, now).clamp(self.min, self.max);
        self.recommendations.push_back((now, raw));
        while self
            .recommendations
            .front()
            .is_some_and(|&(t, _)| now - t > HPA_DOWN_STABILISATION_SECONDS)
        {
            self.recommendations.pop_front();
        }
        let desired = if raw < current {
            // Scale down only to the highest recommendation of the stabilisation window.
            let stable = self
                .recommendations
                .iter()
                .map(|r| r.1)
                .max()
                .unwrap_or(raw);
            stable.min(current)
        } else {
            // Default scale-up policies: +100 % or +4 pods per 15 s, whichever is more.
            raw.min(current.saturating_mul(2).max(current + 4))
        };
        if desired == current {
            return (Vec::new(), Vec::new());
        }
        let action = Action::ScaleReplicas {
            from: current,
            to: desired,
        };
        let events = fleet.act(&action, now);
        let taken = Taken {
            at: now,
            action,
            class: BottleneckClass::Unknown,
            reason: format!("{} recommends {raw}", self.name()),
        };
        (events, vec![taken])
    }
}

/// Fixed replicas: changes nothing.
#[derive(Debug, Clone, Copy)]
pub struct Static;

impl Policy for Static {
    fn name(&self) -> String {
        "static".into()
    }

    fn tick(&mut self, _: &mut SimFleet, _: f64) -> (Vec<(f64, Next)>, Vec<Taken>) {
        (Vec::new(), Vec::new())
    }
}

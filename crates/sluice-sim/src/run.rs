//! The discrete-event loop: arrivals, step ends, pods becoming Ready, swaps completing and the
//! policy's ticks, in time order (ties in the order they were scheduled), so a run is a pure
//! function of its inputs and seed.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use sluice_contract::AppliedSettings;

use crate::fleet::{Next, SimFleet};
use crate::policy::Policy;
use crate::profile::Profile;
use crate::report::{Objectives, RunResult, Sample};
use crate::workload::Arrival;

/// How a run is set up.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// Seconds simulated; arrivals after it are dropped.
    pub duration: f64,
    /// Seconds between two policy ticks (the operator's SLO interval).
    pub interval: f64,
    /// SLI window the loop reads (the service's `slo.window`).
    pub window: f64,
    /// Length of a report window (5 minutes in the comparison).
    pub report_window: f64,
    /// The objectives windows are judged against.
    pub objectives: Objectives,
    /// Knobs at the start (all pods Ready).
    pub initial: AppliedSettings,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Tick,
    Step { pod: usize, started: f64 },
    Ready(usize),
    Swap(usize),
}

#[derive(Debug, Clone, Copy)]
struct Event {
    at: f64,
    seq: u64,
    kind: Kind,
}

impl PartialEq for Event {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Event {
    fn cmp(&self, o: &Self) -> Ordering {
        self.at.total_cmp(&o.at).then(self.seq.cmp(&o.seq))
    }
}

struct Queue {
    heap: BinaryHeap<Reverse<Event>>,
    seq: u64,
}

impl Queue {
    fn push(&mut self, at: f64, kind: Kind) {
        self.seq += 1;
        self.heap.push(Reverse(Event {
            at,
            seq: self.seq,
            kind,
        }));
    }

    fn schedule(&mut self, events: Vec<(f64, Next)>) {
        for (at, n) in events {
            self.push(
                at,
                match n {
                    Next::Ready(i) => Kind::Ready(i),
                    Next::Swap(i) => Kind::Swap(i),
                },
            );
        }
    }
}

fn start(fleet: &mut SimFleet, q: &mut Queue, pod: usize, now: f64) {
    if let Some(end) = fleet.start_step(pod, now) {
        q.push(end, Kind::Step { pod, started: now });
    }
}

/// Runs `policy` over `arrivals` (sorted by time) against replicas of `profile`.
pub fn run(
    profile: &Profile,
    arrivals: &[Arrival],
    policy: &mut dyn Policy,
    cfg: &RunConfig,
) -> RunResult {
    let mut fleet = SimFleet::new(profile.clone(), cfg.initial, cfg.window, cfg.interval);
    let mut q = Queue {
        heap: BinaryHeap::new(),
        seq: 0,
    };
    q.push(cfg.interval, Kind::Tick);
    let mut samples = Vec::new();
    let mut taken = Vec::new();
    let mut next = 0usize;
    loop {
        let arrival = arrivals
            .get(next)
            .filter(|a| a.at <= cfg.duration)
            .map(|a| a.at);
        let event = q.heap.peek().map(|e| e.0.at);
        let now = match (arrival, event) {
            (None, None) => break,
            (Some(a), Some(e)) if a <= e => a,
            (Some(a), None) => a,
            (_, Some(e)) => e,
        };
        if now > cfg.duration {
            break;
        }
        if arrival == Some(now) {
            let a = arrivals[next];
            next += 1;
            if let Some(pod) = fleet.arrive(&a, now) {
                start(&mut fleet, &mut q, pod, now);
            }
            continue;
        }
        let Reverse(ev) = q.heap.pop().expect("peeked");
        match ev.kind {
            Kind::Step { pod, started } => {
                if !fleet.end_step(pod, now, now - started) {
                    start(&mut fleet, &mut q, pod, now);
                }
            }
            Kind::Ready(pod) => fleet.pod_ready(pod),
            Kind::Swap(pod) => {
                if fleet.swap_done(pod, now) {
                    start(&mut fleet, &mut q, pod, now);
                }
            }
            Kind::Tick => {
                let sli = fleet.sli(now);
                let (events, did) = policy.tick(&mut fleet, now);
                q.schedule(events);
                taken.extend(did);
                samples.push(Sample {
                    at: now,
                    replicas: fleet.replicas(),
                    ready: fleet.ready(),
                    pods: fleet.pods_running(),
                    ttft_p95_seconds: sli.ttft_p95_seconds.value(),
                    quantization: fleet.applied().quantization,
                    max_tokens: fleet.applied().max_tokens,
                });
                fleet.roll_memory();
                q.push(now + cfg.interval, Kind::Tick);
            }
        }
    }
    RunResult::new(policy.name(), &fleet, cfg, samples, taken)
}

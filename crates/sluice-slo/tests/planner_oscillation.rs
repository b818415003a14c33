//! Planner against a simulated service over an hour of 15 s ticks: an oscillating load must not
//! make it flap, a sustained drop must still be given back, and every plan must stay in bounds.
//!
//! The service model is a plain queue: each ready pod serves `CAPACITY` req/s with a fixed
//! service time; TTFT is prefill plus the M/M/1 wait `service * rho / (1 - rho)`, which is
//! enough to make the classifier see a backlog (Q1) when utilisation is high.

mod common;

use common::*;
use sluice_contract::{Action, Mode, Quantization};
use sluice_slo::{Decision, Settings, Sli, SliValue, apply_plan, plan};

const TICK: f64 = 15.0;
const CAPACITY: f64 = 4.0;
const SERVICE: f64 = 0.5;
/// New pods take three ticks to become ready.
const STARTUP: f64 = 45.0;

fn observe(at: f64, rate: f64, ready: u32) -> Sli {
    let rho = rate / (f64::from(ready.max(1)) * CAPACITY);
    let wait = if rho >= 0.95 {
        10.0
    } else {
        SERVICE * rho / (1.0 - rho)
    };
    let mut s = sli(
        at,
        Sym {
            // Finished requests: a saturated service completes only what it can serve.
            rate: rate.min(f64::from(ready) * CAPACITY),
            ttft: 0.2 + wait,
            wait,
            service: SERVICE,
            queue: rate * wait,
            pods: f64::from(ready),
            ..OK
        },
    );
    s.gpu_utilization_ratio = SliValue::unknown("cpu server");
    s
}

struct Run {
    /// (time, from, to) of every replica change carried out.
    changes: Vec<(f64, u32, u32)>,
    /// Ticks with the TTFT objective violated.
    violated_ticks: usize,
    log: Vec<Decision>,
}

/// Runs the Auto planner for `seconds` against `load(t)` starting from `replicas`.
fn simulate(seconds: f64, replicas: u32, load: impl Fn(f64) -> f64) -> Run {
    let s = spec(Mode::Auto);
    let mut set = settings(replicas, "f16", 1024);
    let mut ready_at: Vec<f64> = vec![0.0; replicas as usize];
    let mut history: Vec<Sli> = Vec::new();
    let mut log = Vec::new();
    let mut changes = Vec::new();
    let mut violated_ticks = 0;
    let mut now = 0.0;
    while now < seconds {
        now += TICK;
        set.ready_replicas = ready_at.iter().filter(|&&t| t <= now).count() as u32;
        let snap = observe(now, load(now), set.ready_replicas);
        violated_ticks += usize::from(snap.ttft_p95_seconds.value().unwrap() > 1.0);
        history.push(snap);
        // The operator keeps about twenty minutes of snapshots.
        if history.len() > 80 {
            history.remove(0);
        }
        let p = plan(&s, &history, &set, &log, now);
        apply_plan(&mut log, &p, 10);
        assert!(p.desired.replicas >= s.knobs.min_replicas);
        assert!(p.desired.replicas <= s.knobs.max_replicas);
        assert_eq!(p.desired.quantization, Quantization::F16, "{}", p.reason);
        if !p.act {
            continue;
        }
        if let Action::ScaleReplicas { from, to } = p.action {
            changes.push((now, from, to));
            ready_at.truncate(to as usize);
            while ready_at.len() < to as usize {
                ready_at.push(now + STARTUP);
            }
        }
        set = Settings {
            applied: p.desired,
            ready_replicas: set.ready_replicas.min(p.desired.replicas),
            ..set
        };
    }
    Run {
        changes,
        violated_ticks,
        log,
    }
}

fn reversals(changes: &[(f64, u32, u32)]) -> usize {
    let dirs: Vec<bool> = changes.iter().map(|&(_, f, t)| t > f).collect();
    dirs.windows(2).filter(|w| w[0] != w[1]).count()
}

#[test]
fn an_oscillating_load_does_not_flap() {
    // 12 req/s for four minutes, 3 req/s for four minutes, for an hour. Serving 12 req/s within
    // the TTFT objective takes five pods; 3 req/s fits on one.
    for period in [240.0, 360.0, 600.0] {
        let load = |t: f64| {
            if ((t / period) as u64).is_multiple_of(2) {
                12.0
            } else {
                3.0
            }
        };
        let run = simulate(3600.0, 2, load);
        let outs = run.changes.iter().filter(|c| c.2 > c.1).count();
        assert!(
            outs >= 1,
            "period {period}: never scaled out: {:#?}",
            run.log
        );
        let rev = reversals(&run.changes);
        eprintln!(
            "period {period}: {rev} reversals, {} violated ticks, changes {:?}",
            run.violated_ticks, run.changes
        );
        // A naive autoscaler would reverse on every phase change (about 3600 / period).
        assert!(
            rev <= 2,
            "period {period}: {rev} reversals: {:?}",
            run.changes
        );
        // Relief arrives: after the first ten minutes the objective holds nearly always.
        let ticks = (3600.0 / TICK) as usize;
        assert!(
            run.violated_ticks < ticks / 5,
            "period {period}: TTFT violated on {} of {ticks} ticks: {:?}",
            run.violated_ticks,
            run.changes
        );
    }
}

#[test]
fn a_sustained_drop_is_given_back_one_replica_at_a_time() {
    // Twenty minutes of 12 req/s, then 2 req/s for the rest of the hour.
    let run = simulate(3600.0, 2, |t| if t < 1200.0 { 12.0 } else { 2.0 });
    let ins: Vec<_> = run.changes.iter().filter(|c| c.2 < c.1).collect();
    assert!(!ins.is_empty(), "never scaled in: {:?}", run.changes);
    assert!(ins.iter().all(|c| c.1 - c.2 == 1), "{ins:?}");
    eprintln!("drop: {:?}", run.changes);
    // After the drop, not before the headroom window has passed, and down to minReplicas.
    let after: Vec<_> = ins.iter().filter(|c| c.0 > 1200.0).collect();
    assert!(after[0].0 >= 1200.0 + 240.0, "{ins:?}");
    assert_eq!(run.changes.last().unwrap().2, 1, "{:?}", run.changes);
    assert_eq!(reversals(&run.changes), 1, "{:?}", run.changes);
    assert!(
        run.violated_ticks < 20,
        "{} {:?}",
        run.violated_ticks,
        run.changes
    );
}

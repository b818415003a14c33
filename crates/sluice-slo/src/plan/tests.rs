//! Planner tests: table-driven per class, plus the safety rules (unknown, modes, cooldowns,
//! step-back, reverts, bounds). The oscillating-load simulation lives in `tests/planner.rs`.

use super::*;
use crate::classify::Bottleneck;
use crate::sli::{MemorySli, Sli, SliValue};
use crate::spec::{Knobs, Mode, Settings, SloSpec, SloTargets, Tuning};

const W: u64 = 60;

/// Symptom knobs for one snapshot.
#[derive(Clone, Copy)]
struct Sym {
    rate: f64,
    ttft: f64,
    tpot: f64,
    queue: f64,
    wait: f64,
    service: f64,
    gpu: Option<f64>,
    mem: f64,
    err: f64,
    internal: f64,
    rejected: f64,
    pods: f64,
}

const OK: Sym = Sym {
    rate: 4.0,
    ttft: 0.3,
    tpot: 0.02,
    queue: 0.0,
    wait: 0.01,
    service: 1.0,
    gpu: None,
    mem: 0.5,
    err: 0.0,
    internal: 0.0,
    rejected: 0.0,
    pods: 2.0,
};

fn sli(at: f64, s: Sym) -> Sli {
    let k = |v: f64| SliValue::known(v, at);
    let mut out = Sli::all_unknown(at, W, "unused");
    out.ttft_p95_seconds = k(s.ttft);
    out.tpot_seconds = k(s.tpot);
    out.request_rate_per_second = k(s.rate);
    out.error_ratio = k(s.err);
    out.internal_error_ratio = k(s.internal);
    out.rejection_ratio = k(s.rejected);
    out.queue_depth = k(s.queue);
    out.running_sequences = k(4.0);
    out.tokens_per_second = k(100.0);
    out.queue_wait_seconds = k(s.wait);
    out.service_time_seconds = k(s.service);
    out.gpu_utilization_ratio = match s.gpu {
        Some(g) => k(g),
        None => SliValue::unknown("no DCGM exporter"),
    };
    out.reporting_pods = k(s.pods);
    out.memory = vec![MemorySli {
        memory_type: "kv_cache".into(),
        usage_megabytes: k(s.mem * 1000.0),
        capacity_megabytes: k(1000.0),
        usage_ratio: k(s.mem),
    }];
    out
}

fn spec(mode: Mode) -> SloSpec {
    SloSpec {
        mode,
        targets: SloTargets {
            ttft_p95_seconds: Some(1.0),
            tpot_seconds: Some(0.05),
            error_ratio: Some(0.01),
            memory_ratio: 0.85,
        },
        knobs: Knobs {
            min_replicas: 1,
            max_replicas: 8,
            quantization_ladder: vec!["f16".into(), "q8_0".into(), "q4_0".into()],
            max_tokens: 1024,
            max_tokens_floor: 128,
        },
        tuning: Tuning::default(),
        thresholds: Default::default(),
    }
}

fn settings(replicas: u32, quant: &str, max_tokens: u32) -> Settings {
    Settings {
        replicas,
        ready_replicas: replicas,
        rollout_complete: true,
        quantization: quant.into(),
        max_tokens,
    }
}

/// `n` snapshots of the same symptoms, one per window, the last at `end`.
fn steady(end: f64, n: usize, s: Sym) -> Vec<Sli> {
    (0..n)
        .map(|i| sli(end - (n - 1 - i) as f64 * W as f64, s))
        .collect()
}

fn queue() -> Sym {
    Sym {
        ttft: 3.0,
        queue: 12.0,
        wait: 2.0,
        ..OK
    }
}
fn memory() -> Sym {
    Sym { mem: 0.95, ..OK }
}
fn compute() -> Sym {
    Sym {
        ttft: 1.5,
        tpot: 0.09,
        gpu: Some(0.97),
        ..OK
    }
}
fn io() -> Sym {
    Sym {
        ttft: 1.5,
        gpu: Some(0.2),
        ..OK
    }
}
fn software() -> Sym {
    Sym {
        err: 0.08,
        internal: 0.08,
        ..OK
    }
}

#[test]
fn each_class_gets_its_remedy() {
    struct Case {
        name: &'static str,
        sym: Sym,
        set: Settings,
        class: Bottleneck,
        action: Action,
        degraded: Option<&'static str>,
    }
    let cases = [
        Case {
            name: "queue -> scale out by half",
            sym: queue(),
            set: settings(2, "f16", 1024),
            class: Bottleneck::QueueBound,
            action: Action::ScaleReplicas { from: 2, to: 3 },
            degraded: None,
        },
        Case {
            name: "memory -> next rung",
            sym: memory(),
            set: settings(2, "f16", 1024),
            class: Bottleneck::MemoryBound,
            action: Action::SetQuantization {
                from: "f16".into(),
                to: "q8_0".into(),
            },
            degraded: None,
        },
        Case {
            name: "memory at the last rung -> clamp maxTokens",
            sym: memory(),
            set: settings(2, "q4_0", 1024),
            class: Bottleneck::MemoryBound,
            action: Action::SetMaxTokens {
                from: 1024,
                to: 512,
            },
            degraded: None,
        },
        Case {
            name: "compute -> clamp maxTokens first",
            sym: compute(),
            set: settings(2, "f16", 1024),
            class: Bottleneck::ComputeBound,
            action: Action::SetMaxTokens {
                from: 1024,
                to: 512,
            },
            degraded: None,
        },
        Case {
            name: "compute at the floor -> quantization",
            sym: compute(),
            set: settings(2, "f16", 128),
            class: Bottleneck::ComputeBound,
            action: Action::SetQuantization {
                from: "f16".into(),
                to: "q8_0".into(),
            },
            degraded: None,
        },
        Case {
            name: "compute at floor and last rung -> replicas",
            sym: compute(),
            set: settings(2, "q4_0", 128),
            class: Bottleneck::ComputeBound,
            action: Action::ScaleReplicas { from: 2, to: 3 },
            degraded: None,
        },
        Case {
            name: "io -> no scaling, degraded",
            sym: io(),
            set: settings(2, "f16", 1024),
            class: Bottleneck::IoBound,
            action: Action::Hold,
            degraded: Some("IoBound"),
        },
        Case {
            name: "software -> no scaling, degraded",
            sym: software(),
            set: settings(2, "f16", 1024),
            class: Bottleneck::SoftwareBound,
            action: Action::Hold,
            degraded: Some("SoftwareBound"),
        },
        Case {
            name: "healthy at spec -> hold",
            sym: OK,
            set: settings(1, "f16", 1024),
            class: Bottleneck::Healthy,
            action: Action::Hold,
            degraded: None,
        },
    ];
    for c in cases {
        let p = plan(
            &spec(Mode::Auto),
            &steady(1000.0, 3, c.sym),
            &c.set,
            &[],
            1000.0,
        );
        assert_eq!(p.classification.class, c.class, "{}: {}", c.name, p.reason);
        assert_eq!(p.action, c.action, "{}: {}", c.name, p.reason);
        assert_eq!(p.act, c.action.is_change(), "{}", c.name);
        assert_eq!(p.desired, c.action.apply(&c.set), "{}", c.name);
        assert_eq!(
            p.degraded.as_ref().map(|d| d.reason.as_str()),
            c.degraded,
            "{}",
            c.name
        );
        if let Some(d) = &p.degraded {
            assert!(
                !d.recommendation.is_empty() && !d.message.is_empty(),
                "{}",
                c.name
            );
            assert_eq!(p.kind, DecisionKind::Degraded);
        }
        if c.action.is_change() {
            let r = p.record.as_ref().expect("a change is recorded");
            assert_eq!(r.outcome, Outcome::Pending, "{}", c.name);
            assert_eq!(r.kind, DecisionKind::Remediate, "{}", c.name);
            assert_eq!(r.rule, p.classification.rule, "{}", c.name);
            assert!(!r.evidence.is_empty(), "{}", c.name);
        }
    }
}

#[test]
fn unknown_metrics_hold_every_knob_and_never_scale_down() {
    let s = spec(Mode::Auto);
    // Over-provisioned and at reduced settings: every step-back would be tempting.
    let set = settings(6, "q4_0", 256);
    let mut partly = sli(1000.0, OK);
    partly.request_rate_per_second = SliValue::unknown("stale: last sample 130 s old");
    let cases = [
        (
            "source down",
            vec![Sli::all_unknown(1000.0, W, "connection refused")],
        ),
        ("rate stale", vec![partly]),
        ("no snapshot", vec![]),
    ];
    for (name, mut hist) in cases {
        // Earlier windows with full headroom do not count once the current one is unknown.
        let mut h = steady(940.0, 10, Sym { rate: 0.5, ..OK });
        h.append(&mut hist);
        let h = if name == "no snapshot" { Vec::new() } else { h };
        let p = plan(&s, &h, &set, &[], 1000.0);
        assert_eq!(p.classification.class, Bottleneck::Unknown, "{name}");
        assert_eq!(p.action, Action::Hold, "{name}");
        assert!(!p.act, "{name}");
        assert_eq!(p.desired, set, "{name}");
        assert!(
            p.reason.contains("no scale-down") || p.reason.contains("no SLI"),
            "{name}: {}",
            p.reason
        );
        let r = p.record.expect("an unknown hold is recorded");
        assert_eq!(r.kind, DecisionKind::Hold);
        assert_eq!(r.outcome, Outcome::Noted);
    }
    let p = plan(
        &s,
        &[Sli::all_unknown(1000.0, W, "connection refused")],
        &set,
        &[],
        1000.0,
    );
    assert!(
        p.reason
            .contains("requestRatePerSecond (connection refused)"),
        "{}",
        p.reason
    );
}

#[test]
fn off_mode_does_nothing_and_records_nothing() {
    for sym in [queue(), memory(), OK] {
        let set = settings(3, "q8_0", 512);
        let p = plan(
            &spec(Mode::Off),
            &steady(1000.0, 10, sym),
            &set,
            &[],
            1000.0,
        );
        assert_eq!(p.action, Action::Hold);
        assert!(!p.act);
        assert!(p.record.is_none() && p.updates.is_empty());
        assert_eq!(p.desired, set);
    }
    assert!(
        plan(&spec(Mode::Off), &[], &settings(1, "f16", 8), &[], 1.0)
            .record
            .is_none()
    );
}

#[test]
fn advise_reports_the_same_plan_but_never_acts() {
    for sym in [queue(), memory(), compute()] {
        let set = settings(2, "f16", 1024);
        let auto = plan(
            &spec(Mode::Auto),
            &steady(1000.0, 3, sym),
            &set,
            &[],
            1000.0,
        );
        let adv = plan(
            &spec(Mode::Advise),
            &steady(1000.0, 3, sym),
            &set,
            &[],
            1000.0,
        );
        assert!(auto.act);
        assert!(!adv.act);
        assert_eq!(adv.action, auto.action);
        assert_eq!(adv.record.as_ref().unwrap().outcome, Outcome::Advisory);
        // Advice is not repeated in the log every tick.
        let log = vec![adv.record.clone().unwrap()];
        let again = plan(
            &spec(Mode::Advise),
            &steady(1015.0, 3, sym),
            &set,
            &log,
            1015.0,
        );
        assert!(!again.act);
        assert!(again.record.is_none());
    }
}

#[test]
fn a_class_must_persist_for_trigger_snapshots() {
    let s = spec(Mode::Auto);
    let set = settings(2, "f16", 1024);
    let mut h = steady(940.0, 3, OK);
    h.push(sli(1000.0, queue()));
    let p = plan(&s, &h, &set, &[], 1000.0);
    assert_eq!(p.classification.class, Bottleneck::QueueBound);
    assert_eq!(p.action, Action::Hold, "{}", p.reason);
    assert!(p.reason.contains("1 of 2"), "{}", p.reason);
    h.push(sli(1060.0, queue()));
    assert!(plan(&s, &h, &set, &[], 1060.0).act);
}

/// Runs one Auto tick and folds it into the log, returning the plan.
fn tick(s: &SloSpec, h: &[Sli], set: &Settings, log: &mut Vec<Decision>, now: f64) -> Plan {
    let p = plan(s, h, set, log, now);
    apply_plan(log, &p, 10);
    p
}

#[test]
fn one_change_in_flight_then_judged_improved() {
    let s = spec(Mode::Auto);
    let mut log = Vec::new();
    let mut set = settings(2, "f16", 1024);
    let mut h = steady(1000.0, 3, queue());
    let p = tick(&s, &h, &set, &mut log, 1000.0);
    assert_eq!(p.action, Action::ScaleReplicas { from: 2, to: 3 });
    // Rolling out: one pod not ready yet. Still queue-bound, but nothing else happens.
    set.replicas = 3;
    set.ready_replicas = 2;
    h.push(sli(1015.0, queue()));
    let p = tick(&s, &h, &set, &mut log, 1015.0);
    assert_eq!(p.action, Action::Hold);
    assert!(p.reason.contains("in flight"), "{}", p.reason);
    // Ready: settle time noted, judged only a full window later.
    set.ready_replicas = 3;
    h.push(sli(1030.0, queue()));
    let p = tick(&s, &h, &set, &mut log, 1030.0);
    assert_eq!(p.action, Action::Hold);
    assert_eq!(log[0].settled_at, Some(1030.0));
    h.push(sli(1090.0, OK));
    let p = tick(&s, &h, &set, &mut log, 1090.0);
    assert!(
        matches!(log[0].outcome, Outcome::Improved { .. }),
        "{:?}",
        log[0].outcome
    );
    assert_eq!(p.action, Action::Hold);
}

#[test]
fn an_ineffective_change_is_reverted_and_not_retried() {
    let s = spec(Mode::Auto);
    let mut log = Vec::new();
    let mut set = settings(2, "f16", 1024);
    let mut h = steady(1000.0, 3, memory());
    let p = tick(&s, &h, &set, &mut log, 1000.0);
    assert_eq!(
        p.action,
        Action::SetQuantization {
            from: "f16".into(),
            to: "q8_0".into()
        }
    );
    set = p.desired.clone();
    h.push(sli(1015.0, memory()));
    tick(&s, &h, &set, &mut log, 1015.0);
    // A window later memory is just as full.
    h.push(sli(1080.0, memory()));
    let p = tick(&s, &h, &set, &mut log, 1080.0);
    assert!(
        matches!(log[0].outcome, Outcome::NoEffect { .. }),
        "{:?}",
        log[0].outcome
    );
    assert_eq!(p.kind, DecisionKind::Revert);
    assert_eq!(
        p.action,
        Action::SetQuantization {
            from: "q8_0".into(),
            to: "f16".into()
        }
    );
    assert!(p.act);
    assert_eq!(p.record.as_ref().unwrap().reverts, Some(1));
    set = p.desired.clone();
    h.push(sli(1095.0, memory()));
    tick(&s, &h, &set, &mut log, 1095.0);
    assert!(
        matches!(log[1].outcome, Outcome::Completed { .. }),
        "{:?}",
        log[1].outcome
    );
    // Next remedy for memory: not quantization again (blocked), but the maxTokens clamp.
    let mut now = 1095.0;
    let p = loop {
        now += 15.0;
        h.push(sli(now, memory()));
        let p = tick(&s, &h, &set, &mut log, now);
        if p.act || now > 3000.0 {
            break p;
        }
    };
    assert_eq!(
        p.action,
        Action::SetMaxTokens {
            from: 1024,
            to: 512
        },
        "{}",
        p.reason
    );
}

#[test]
fn cooldowns_are_respected() {
    let s = spec(Mode::Auto);
    let mut log = Vec::new();
    let mut set = settings(2, "f16", 1024);
    // Each replica helps, but not enough: TTFT falls as 6 s / replicas.
    let load = |r: u32| Sym {
        ttft: 6.0 / f64::from(r),
        ..queue()
    };
    let mut h = steady(1000.0, 3, load(2));
    let mut outs = Vec::new();
    let mut now = 1000.0;
    while now < 1600.0 {
        let p = tick(&s, &h, &set, &mut log, now);
        if p.act {
            outs.push(now);
            set = p.desired.clone();
            // The new pods become ready by the next tick.
            set.ready_replicas = set.replicas;
        }
        now += 15.0;
        h.push(sli(now, load(set.replicas)));
    }
    assert!(
        log.iter().all(|d| d.kind != DecisionKind::Revert),
        "{log:#?}"
    );
    assert!(outs.len() >= 2, "{outs:?}");
    for w in outs.windows(2) {
        assert!(
            w[1] - w[0] >= s.tuning.scale_out_cooldown_seconds as f64,
            "{outs:?}"
        );
    }
    assert!(set.replicas <= s.knobs.max_replicas);
}

#[test]
fn clamps_stay_on_the_floor_and_the_ladder() {
    let mut s = spec(Mode::Auto);
    s.tuning.max_tokens_cooldown_seconds = 0;
    s.tuning.quantization_cooldown_seconds = 0;
    let mut set = settings(8, "f16", 1000);
    let mut seen = Vec::new();
    for i in 0..20 {
        // A fresh log each time: only the bounds are under test.
        let now = 1000.0 + i as f64 * 100.0;
        let p = plan(&s, &steady(now, 3, compute()), &set, &[], now);
        match &p.action {
            Action::SetMaxTokens { to, .. } => assert!(*to >= s.knobs.max_tokens_floor),
            Action::SetQuantization { to, .. } => assert!(s.knobs.quantization_ladder.contains(to)),
            Action::ScaleReplicas { to, .. } => panic!("at max replicas, got scale to {to}"),
            Action::Hold => {}
        }
        seen.push(p.action.clone());
        set = p.desired;
    }
    assert_eq!(set.max_tokens, 128);
    assert_eq!(set.quantization, "q4_0");
    assert!(seen.last().unwrap() == &Action::Hold);
}

#[test]
fn step_back_only_after_the_headroom_window() {
    let s = spec(Mode::Auto);
    let set = settings(4, "f16", 1024);
    let calm = Sym { rate: 1.0, ..OK };
    for (windows, expect) in [(1, false), (4, false), (5, true), (8, true)] {
        let p = plan(&s, &steady(5000.0, windows, calm), &set, &[], 5000.0);
        assert_eq!(p.act, expect, "{windows} windows: {}", p.reason);
        if expect {
            assert_eq!(p.kind, DecisionKind::StepBack);
            assert_eq!(p.action, Action::ScaleReplicas { from: 4, to: 3 });
        }
    }
    // 15 s ticks over 60 s windows: sixteen snapshots (225 s) are not five windows yet,
    // seventeen (240 s) are.
    let ticks: Vec<Sli> = (0..17)
        .map(|i| sli(5000.0 - 240.0 + 15.0 * i as f64, calm))
        .collect();
    assert!(!plan(&s, &ticks[1..], &set, &[], 5000.0).act);
    assert!(plan(&s, &ticks, &set, &[], 5000.0).act);
    // Met but without headroom (TTFT at 0.9 of target): no step-back.
    let tight = Sym { ttft: 0.9, ..calm };
    assert!(!plan(&s, &steady(5000.0, 10, tight), &set, &[], 5000.0).act);
}

#[test]
fn step_back_order_is_replicas_then_quantization_then_max_tokens() {
    let s = spec(Mode::Auto);
    let calm = Sym {
        rate: 1.0,
        mem: 0.3,
        ..OK
    };
    let h = steady(5000.0, 6, calm);
    let p = plan(&s, &h, &settings(2, "q4_0", 256), &[], 5000.0);
    assert_eq!(p.action, Action::ScaleReplicas { from: 2, to: 1 });
    let p = plan(&s, &h, &settings(1, "q4_0", 256), &[], 5000.0);
    assert_eq!(
        p.action,
        Action::SetQuantization {
            from: "q4_0".into(),
            to: "q8_0".into()
        }
    );
    let p = plan(&s, &h, &settings(1, "f16", 256), &[], 5000.0);
    assert_eq!(p.action, Action::SetMaxTokens { from: 256, to: 512 });
    let p = plan(&s, &h, &settings(1, "f16", 1024), &[], 5000.0);
    assert_eq!(p.action, Action::Hold);
}

#[test]
fn a_step_back_that_breaks_an_objective_is_reverted() {
    let s = spec(Mode::Auto);
    let calm = Sym { rate: 1.0, ..OK };
    let mut h = steady(5000.0, 6, calm);
    let mut set = settings(3, "f16", 1024);
    let mut log = Vec::new();
    let p = tick(&s, &h, &set, &mut log, 5000.0);
    assert_eq!(p.kind, DecisionKind::StepBack);
    set = p.desired.clone();
    h.push(sli(5015.0, calm));
    tick(&s, &h, &set, &mut log, 5015.0);
    h.push(sli(5080.0, queue()));
    let p = tick(&s, &h, &set, &mut log, 5080.0);
    assert!(
        matches!(log[0].outcome, Outcome::Regressed { .. }),
        "{:?}",
        log[0].outcome
    );
    assert_eq!(p.kind, DecisionKind::Revert);
    assert_eq!(p.action, Action::ScaleReplicas { from: 2, to: 3 });
}

#[test]
fn holds_are_not_repeated_in_the_log() {
    let s = spec(Mode::Auto);
    let mut log = Vec::new();
    let set = settings(2, "f16", 1024);
    let mut recorded = 0;
    for i in 0..40 {
        let now = 1000.0 + 15.0 * i as f64;
        let p = tick(&s, &[sli(now, io())], &set, &mut log, now);
        recorded += usize::from(p.record.is_some());
    }
    // 600 s of ticks with a 600 s repeat period: recorded once (twice at the boundary).
    assert!((1..=2).contains(&recorded), "{recorded}");
}

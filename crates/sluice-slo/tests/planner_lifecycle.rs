//! Planner over several ticks: one change in flight, judging, reverts, cooldowns, step-back
//! and the decision log.

mod common;

use common::*;
use sluice_contract::{Action, DecisionKind, Mode, Outcome, Quantization};
use sluice_slo::{Sli, plan};

#[test]
fn one_change_in_flight_then_judged_improved() {
    let s = spec(Mode::Auto);
    let mut log = Vec::new();
    let mut set = settings(2, "f16", 1024);
    let mut h = steady(1000.0, 3, queue());
    let p = tick(&s, &h, &set, &mut log, 1000.0);
    assert_eq!(p.action, Action::ScaleReplicas { from: 2, to: 4 });
    // Rolling out: pods not ready yet. Still queue-bound, but nothing else happens.
    set.applied.replicas = 4;
    set.ready_replicas = 3;
    h.push(sli(1015.0, queue()));
    let p = tick(&s, &h, &set, &mut log, 1015.0);
    assert_eq!(p.action, Action::Hold);
    assert!(p.reason.contains("in flight"), "{}", p.reason);
    // Ready: settle time noted, judged only a full window later.
    set.ready_replicas = 4;
    h.push(sli(1030.0, queue()));
    let p = tick(&s, &h, &set, &mut log, 1030.0);
    assert_eq!(p.action, Action::Hold);
    assert_eq!(log[0].settled_at, Some(1030.0));
    h.push(sli(1075.0, OK));
    let p = tick(&s, &h, &set, &mut log, 1075.0);
    assert_eq!(log[0].outcome, Outcome::Pending);
    assert!(
        p.reason.contains("judging on the SLI window"),
        "{}",
        p.reason
    );
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
            from: Quantization::F16,
            to: Quantization::Q8_0
        }
    );
    set.applied = p.desired;
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
            from: Quantization::Q8_0,
            to: Quantization::F16
        }
    );
    assert!(p.act);
    assert_eq!(p.record.as_ref().unwrap().reverts, Some(1));
    set.applied = p.desired;
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
            set.applied = p.desired;
            // The new pods become ready by the next tick.
            set.ready_replicas = set.applied.replicas;
        }
        now += 15.0;
        h.push(sli(now, load(set.applied.replicas)));
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
    assert!(set.applied.replicas <= s.knobs.max_replicas);
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
            from: Quantization::Q4_0,
            to: Quantization::Q8_0
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
    set.applied = p.desired;
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

#[test]
fn an_ineffective_scale_out_is_kept_while_the_objective_is_violated() {
    let s = spec(Mode::Auto);
    let mut log = Vec::new();
    let mut set = settings(2, "f16", 1024);
    let mut h = steady(1000.0, 3, queue());
    let p = tick(&s, &h, &set, &mut log, 1000.0);
    assert_eq!(p.action, Action::ScaleReplicas { from: 2, to: 4 });
    set.applied = p.desired;
    set.ready_replicas = 4;
    h.push(sli(1015.0, queue()));
    tick(&s, &h, &set, &mut log, 1015.0);
    // A window later TTFT is just as bad at the same load: the scale-out did not help.
    let mut now = 1015.0;
    let mut seen = Vec::new();
    while now < 2500.0 {
        now += 15.0;
        h.push(sli(now, queue()));
        let p = tick(&s, &h, &set, &mut log, now);
        assert!(
            !p.action.shrinks() && p.kind != DecisionKind::Revert,
            "at {now}: {:?}: {}",
            p.action,
            p.reason
        );
        if p.act {
            set.applied = p.desired;
        }
        seen.push(p.reason);
    }
    assert!(
        matches!(log[0].outcome, Outcome::NoEffect { .. }),
        "{:?}",
        log[0].outcome
    );
    assert!(
        seen.iter()
            .any(|r| r.contains("keeping change #1") && r.contains("still violated")),
        "{seen:#?}"
    );
    assert!(set.applied.replicas >= 4, "{:?}", set.applied);
}

#[test]
fn an_ineffective_scale_out_without_a_violated_objective_is_still_reverted() {
    // The counterpart: a queue seen only as 429s (every objective met) gets a scale-out; when
    // the 429s stay, nothing is breached, so the useless capacity is given back as before.
    let s = spec(Mode::Auto);
    let mut log = Vec::new();
    let mut set = settings(4, "f16", 1024);
    let rejecting = common::Sym {
        rejected: 0.1,
        err: 0.005,
        ..OK
    };
    let mut h = steady(1000.0, 3, rejecting);
    let p = tick(&s, &h, &set, &mut log, 1000.0);
    assert_eq!(
        p.action,
        Action::ScaleReplicas { from: 4, to: 6 },
        "{}",
        p.reason
    );
    set.applied = p.desired;
    set.ready_replicas = 6;
    let mut now = 1000.0;
    let p = loop {
        now += 15.0;
        h.push(sli(now, rejecting));
        let p = tick(&s, &h, &set, &mut log, now);
        if p.act || now > 2500.0 {
            break p;
        }
    };
    assert_eq!(p.kind, DecisionKind::Revert, "{}", p.reason);
    assert_eq!(p.action, Action::ScaleReplicas { from: 6, to: 4 });
}

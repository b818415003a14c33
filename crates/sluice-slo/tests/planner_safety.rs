//! Planner safety rules around judging and undoing changes: load changes, stuck rollouts,
//! unknown metrics mid-flight, reversal cooldown, the scale-in guard and invalid specs.

mod common;

use common::*;
use sluice_contract::{Action, BottleneckClass, DecisionKind, Mode, Outcome, Quantization};
use sluice_slo::{Settings, Sli, Tuning};

/// Starts a quantization change for memory pressure at t=1000 and rolls it out at t=1015.
fn quantized() -> (
    sluice_slo::SloSpec,
    Vec<Sli>,
    sluice_slo::Settings,
    Vec<sluice_slo::Decision>,
) {
    let s = spec(Mode::Auto);
    let mut log = Vec::new();
    let set = settings(2, "f16", 1024);
    let mut h = steady(1000.0, 3, memory());
    let p = tick(&s, &h, &set, &mut log, 1000.0);
    assert_eq!(
        p.action,
        Action::SetQuantization {
            from: Quantization::F16,
            to: Quantization::Q8_0
        }
    );
    let set = Settings {
        applied: p.desired,
        ..set
    };
    h.push(sli(1015.0, memory()));
    tick(&s, &h, &set, &mut log, 1015.0);
    assert_eq!(log[0].settled_at, Some(1015.0));
    (s, h, set, log)
}

#[test]
fn no_improvement_under_a_load_surge_is_inconclusive_not_reverted() {
    let (s, mut h, set, mut log) = quantized();
    h.push(sli(
        1080.0,
        Sym {
            rate: 8.0,
            ..memory()
        },
    ));
    let p = tick(&s, &h, &set, &mut log, 1080.0);
    match &log[0].outcome {
        Outcome::Inconclusive { detail } => assert!(detail.contains("load grew"), "{detail}"),
        o => panic!("{o:?}"),
    }
    assert_ne!(p.kind, DecisionKind::Revert, "{}", p.reason);
}

#[test]
fn improvement_only_because_load_fell_is_inconclusive() {
    let (s, mut h, set, mut log) = quantized();
    h.push(sli(1080.0, Sym { rate: 1.0, ..OK }));
    tick(&s, &h, &set, &mut log, 1080.0);
    match &log[0].outcome {
        Outcome::Inconclusive { detail } => assert!(detail.contains("load fell"), "{detail}"),
        o => panic!("{o:?}"),
    }
}

#[test]
fn an_improvement_is_kept() {
    let (s, mut h, set, mut log) = quantized();
    h.push(sli(1080.0, Sym { mem: 0.6, ..OK }));
    let p = tick(&s, &h, &set, &mut log, 1080.0);
    assert!(
        matches!(log[0].outcome, Outcome::Improved { .. }),
        "{:?}",
        log[0].outcome
    );
    assert!(!p.act);
}

#[test]
fn unknown_metrics_mid_flight_hold_and_time_out_without_a_revert() {
    let (s, mut h, set, mut log) = quantized();
    let mut now = 1015.0;
    while now < 1000.0 + s.tuning.settle_timeout_seconds as f64 + 30.0 {
        now += 15.0;
        h.push(Sli::all_unknown(now, W, "connection refused"));
        let p = tick(&s, &h, &set, &mut log, now);
        assert!(!p.act, "{now}: {}", p.reason);
        assert_eq!(p.desired, set.applied);
    }
    match &log[0].outcome {
        Outcome::Inconclusive { detail } => assert!(detail.contains("unknown"), "{detail}"),
        o => panic!("{o:?}"),
    }
}

#[test]
fn a_rollout_that_never_completes_is_reverted_after_the_timeout() {
    let s = spec(Mode::Auto);
    let mut log = Vec::new();
    let mut h = steady(1000.0, 3, memory());
    let p = tick(&s, &h, &settings(2, "f16", 1024), &mut log, 1000.0);
    // The new rung never gets ready (say it does not load).
    let mut set = Settings {
        applied: p.desired,
        ..settings(2, "f16", 1024)
    };
    set.rollout_complete = false;
    set.ready_replicas = 1;
    let mut now = 1000.0;
    let p = loop {
        now += 15.0;
        h.push(sli(now, memory()));
        let p = tick(&s, &h, &set, &mut log, now);
        if p.act || now > 2000.0 {
            break p;
        }
        assert!(p.reason.contains("rolling out"), "{}", p.reason);
    };
    assert!(now > 1000.0 + s.tuning.settle_timeout_seconds as f64);
    assert_eq!(p.kind, DecisionKind::Revert);
    assert_eq!(
        p.action,
        Action::SetQuantization {
            from: Quantization::Q8_0,
            to: Quantization::F16
        }
    );
    assert!(matches!(log[0].outcome, Outcome::Inconclusive { .. }));
}

#[test]
fn scale_in_waits_for_the_reversal_cooldown_after_a_scale_out() {
    let s = spec(Mode::Auto);
    let mut log = Vec::new();
    let mut set = settings(2, "f16", 1024);
    let mut h = steady(1000.0, 3, queue());
    let p = tick(&s, &h, &set, &mut log, 1000.0);
    set.applied = p.desired;
    set.ready_replicas = set.applied.replicas;
    // Load vanishes right away: plenty of headroom, but the scale-out was only just made.
    let calm = Sym { rate: 0.5, ..OK };
    let mut now = 1000.0;
    let mut first_in = None;
    while now < 2400.0 {
        now += 15.0;
        h.push(sli(now, calm));
        let p = tick(&s, &h, &set, &mut log, now);
        if p.act && p.kind == DecisionKind::StepBack {
            first_in = Some(now);
            break;
        }
    }
    let t = first_in.expect("scaled in eventually");
    assert!(
        t >= 1000.0 + s.tuning.reversal_cooldown_seconds as f64,
        "{t}"
    );
}

#[test]
fn scale_in_is_refused_when_the_recent_peak_would_not_fit() {
    let s = spec(Mode::Auto);
    let set = settings(4, "f16", 1024);
    // Scale-out #1 happened at 8 req/s on 2 pods (4 req/s per pod), long ago.
    let mut log = Vec::new();
    let h = steady(
        100.0,
        3,
        Sym {
            rate: 8.0,
            ..queue()
        },
    );
    let p = tick(&s, &h, &settings(2, "f16", 1024), &mut log, 100.0);
    log[0].outcome = Outcome::Improved {
        detail: "test".into(),
    };
    assert_eq!(p.action, Action::ScaleReplicas { from: 2, to: 4 });
    // Now quiet with headroom, but 9 req/s was seen five minutes ago: on 3 pods that is
    // 3 req/s per pod, above 0.7 x 4.
    let mut h = steady(5000.0, 10, Sym { rate: 2.0, ..OK });
    h[4].request_rate_per_second = sluice_slo::SliValue::known(9.0, h[4].at);
    h[4].ttft_p95_seconds = sluice_slo::SliValue::known(0.5, h[4].at);
    let p = sluice_slo::plan(&s, &h[5..], &set, &log, 5000.0);
    assert!(p.act, "{}", p.reason);
    let mut both = h.clone();
    both.truncate(10);
    let p = sluice_slo::plan(&s, &both, &set, &log, 5000.0);
    assert!(!p.act);
    assert!(p.reason.contains("per pod"), "{}", p.reason);
}

#[test]
fn an_invalid_spec_holds_and_says_why() {
    let mut s = spec(Mode::Auto);
    s.knobs.max_tokens_floor = 4096;
    let p = sluice_slo::plan(
        &s,
        &steady(1000.0, 3, queue()),
        &settings(2, "f16", 1024),
        &[],
        1000.0,
    );
    assert!(!p.act);
    assert_eq!(p.action, Action::Hold);
    assert!(p.reason.contains("maxTokensFloor"), "{}", p.reason);
    assert_eq!(p.degraded.unwrap().reason, "InvalidSloSpec");
}

#[test]
fn trigger_snapshots_after_a_change_ignore_pre_change_windows() {
    // One change judged Improved at 1090; the class is still memory-bound but the next remedy
    // waits for two snapshots whose windows start after the change.
    let s = sluice_slo::SloSpec {
        tuning: Tuning {
            max_tokens_cooldown_seconds: 0,
            ..Tuning::default()
        },
        ..spec(Mode::Auto)
    };
    let mut log = Vec::new();
    let mut set = settings(2, "q4_0", 1024);
    let mut h = steady(1000.0, 3, memory());
    let p = tick(&s, &h, &set, &mut log, 1000.0);
    assert_eq!(
        p.action,
        Action::SetMaxTokens {
            from: 1024,
            to: 512
        }
    );
    set.applied = p.desired;
    let mut acted = Vec::new();
    let mut now = 1000.0;
    while now < 1300.0 {
        now += 15.0;
        // Improved by more than 10 % but still over the objective.
        h.push(sli(now, Sym { mem: 0.853, ..OK }));
        let p = tick(&s, &h, &set, &mut log, now);
        assert_eq!(p.classification.class, BottleneckClass::MemoryBound);
        if p.act {
            acted.push(now);
            set.applied = p.desired;
        }
    }
    let settled = log[0].settled_at.unwrap();
    assert!(
        matches!(log[0].outcome, Outcome::Improved { .. }),
        "{:?}",
        log[0].outcome
    );
    // Two snapshots whose whole window follows the change: settle + W and one tick later.
    assert_eq!(
        acted[0],
        settled + W as f64 + 15.0,
        "{acted:?} settled {settled}"
    );
}

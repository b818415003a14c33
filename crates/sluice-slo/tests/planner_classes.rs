//! Planner: each class from its symptom pattern, and the rules that keep it from acting
//! (unknown metrics, Off, Advise, trigger snapshots, bounds).

mod common;

use common::*;
use sluice_contract::{Action, BottleneckClass, DecisionKind, Mode, Outcome, Quantization};
use sluice_slo::{Settings, Sli, SliValue, plan};

#[test]
fn each_class_gets_its_remedy() {
    struct Case {
        name: &'static str,
        sym: Sym,
        set: Settings,
        class: BottleneckClass,
        action: Action,
        degraded: Option<&'static str>,
    }
    let cases = [
        Case {
            name: "queue, TTFT 3x target -> scale out, at most double",
            sym: queue(),
            set: settings(2, "f16", 1024),
            class: BottleneckClass::QueueBound,
            action: Action::ScaleReplicas { from: 2, to: 4 },
            degraded: None,
        },
        Case {
            name: "queue, TTFT 1.2x target -> one more pod",
            sym: Sym {
                ttft: 1.2,
                ..queue()
            },
            set: settings(4, "f16", 1024),
            class: BottleneckClass::QueueBound,
            action: Action::ScaleReplicas { from: 4, to: 5 },
            degraded: None,
        },
        Case {
            name: "queue with a pod still starting -> it counts toward the step",
            sym: queue(),
            set: Settings {
                ready_replicas: 2,
                ..settings(3, "f16", 1024)
            },
            class: BottleneckClass::QueueBound,
            action: Action::ScaleReplicas { from: 3, to: 5 },
            degraded: None,
        },
        Case {
            name: "queue with two pods starting -> they cover the step",
            sym: Sym {
                ttft: 1.2,
                ..queue()
            },
            set: Settings {
                ready_replicas: 2,
                ..settings(4, "f16", 1024)
            },
            class: BottleneckClass::QueueBound,
            action: Action::Hold,
            degraded: None,
        },
        Case {
            name: "queue at maxReplicas -> hold, never another knob",
            sym: queue(),
            set: settings(8, "f16", 1024),
            class: BottleneckClass::QueueBound,
            action: Action::Hold,
            degraded: None,
        },
        Case {
            name: "queue seen only as 429s -> scale out by half",
            sym: Sym {
                rejected: 0.1,
                err: 0.005,
                ..OK
            },
            set: settings(4, "f16", 1024),
            class: BottleneckClass::QueueBound,
            action: Action::ScaleReplicas { from: 4, to: 6 },
            degraded: None,
        },
        Case {
            name: "compute on a GPU in the middle band -> still compute (C2)",
            sym: Sym {
                gpu: Some(0.6),
                ..compute()
            },
            set: settings(2, "f16", 1024),
            class: BottleneckClass::ComputeBound,
            action: Action::SetMaxTokens {
                from: 1024,
                to: 512,
            },
            degraded: None,
        },
        Case {
            name: "memory -> next rung",
            sym: memory(),
            set: settings(2, "f16", 1024),
            class: BottleneckClass::MemoryBound,
            action: Action::SetQuantization {
                from: Quantization::F16,
                to: Quantization::Q8_0,
            },
            degraded: None,
        },
        Case {
            name: "memory at the last rung -> clamp maxTokens",
            sym: memory(),
            set: settings(2, "q4_0", 1024),
            class: BottleneckClass::MemoryBound,
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
            class: BottleneckClass::ComputeBound,
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
            class: BottleneckClass::ComputeBound,
            action: Action::SetQuantization {
                from: Quantization::F16,
                to: Quantization::Q8_0,
            },
            degraded: None,
        },
        Case {
            name: "compute at floor and last rung -> replicas (TPOT 1.8x target)",
            sym: compute(),
            set: settings(2, "q4_0", 128),
            class: BottleneckClass::ComputeBound,
            action: Action::ScaleReplicas { from: 2, to: 4 },
            degraded: None,
        },
        Case {
            name: "io -> no scaling, degraded",
            sym: io(),
            set: settings(2, "f16", 1024),
            class: BottleneckClass::IoBound,
            action: Action::Hold,
            degraded: Some("IoBound"),
        },
        Case {
            name: "software -> no scaling, degraded",
            sym: software(),
            set: settings(2, "f16", 1024),
            class: BottleneckClass::SoftwareBound,
            action: Action::Hold,
            degraded: Some("SoftwareBound"),
        },
        Case {
            name: "healthy at spec -> hold",
            sym: OK,
            set: settings(1, "f16", 1024),
            class: BottleneckClass::Healthy,
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
        assert_eq!(p.desired, c.action.apply(&c.set.applied), "{}", c.name);
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
        assert_eq!(p.classification.class, BottleneckClass::Unknown, "{name}");
        assert_eq!(p.action, Action::Hold, "{name}");
        assert!(!p.act, "{name}");
        assert_eq!(p.desired, set.applied, "{name}");
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
        assert_eq!(p.desired, set.applied);
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
        assert_eq!(adv.record.as_ref().unwrap().outcome, Outcome::Advised);
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
    assert_eq!(p.classification.class, BottleneckClass::QueueBound);
    assert_eq!(p.action, Action::Hold, "{}", p.reason);
    assert!(p.reason.contains("1 of 2"), "{}", p.reason);
    h.push(sli(1060.0, queue()));
    assert!(plan(&s, &h, &set, &[], 1060.0).act);
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
        set.applied = p.desired;
    }
    assert_eq!(set.applied.max_tokens, 128);
    assert_eq!(set.applied.quantization, Quantization::Q4_0);
    assert!(seen.last().unwrap() == &Action::Hold);
}

#[test]
fn compute_bound_with_one_stream_per_pod_is_not_scaled() {
    // TPOT over target while each pod decodes a single sequence: a new pod would decode its
    // own single sequence just as slowly, so the planner holds and says why.
    let mut h = steady(1000.0, 3, compute());
    for s in &mut h {
        // 20 tokens/s at 0.09 s per token: 1.8 sequences decoding on 2 pods.
        s.tokens_per_second = SliValue::known(20.0, s.at);
    }
    let p = plan(
        &spec(Mode::Auto),
        &h,
        &settings(2, "q4_0", 128),
        &[],
        1000.0,
    );
    assert_eq!(p.classification.class, BottleneckClass::ComputeBound);
    assert_eq!(p.action, Action::Hold, "{}", p.reason);
    assert!(
        p.reason.contains("cannot make one stream faster"),
        "{}",
        p.reason
    );
}

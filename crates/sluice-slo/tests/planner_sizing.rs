//! Planner: model-based sizing. With a capacity model (one replica's saturation rate) the
//! planner sizes a scale-out from the request rate in one step, scales ahead of a breach, keeps
//! the replicas the recent peak needs on scale-in, and keeps a scale-ahead instead of reverting
//! it for "no effect". Without one, nothing changes (the reactive table tests still hold).

mod common;

use common::*;
use sluice_contract::{Action, BottleneckClass, DecisionKind, Mode, Outcome};
use sluice_slo::{CapacityModel, Decision, Settings, SloSpec, apply_plan, plan};

/// A replica saturates at 2 req/s; sized at `headroomRatio` 0.7, it carries 1.4 req/s.
fn sized(mode: Mode) -> SloSpec {
    SloSpec {
        capacity: Some(CapacityModel {
            requests_per_second_per_replica: 2.0,
        }),
        ..spec(mode)
    }
}

#[test]
fn scale_out_is_sized_from_the_rate_in_one_step() {
    struct Case {
        name: &'static str,
        sym: Sym,
        set: Settings,
        action: Action,
    }
    let cases = [
        Case {
            name: "queue at 7 req/s on 2 pods: the model needs ceil(7 / 1.4) = 5, more than 2x",
            sym: Sym {
                rate: 7.0,
                ..queue()
            },
            set: settings(2, "f16", 1024),
            action: Action::ScaleReplicas { from: 2, to: 5 },
        },
        Case {
            name: "queue at 20 req/s: the model's 15 is held to maxScaleOutStep (4)",
            sym: Sym {
                rate: 20.0,
                ..queue()
            },
            set: settings(2, "f16", 1024),
            action: Action::ScaleReplicas { from: 2, to: 6 },
        },
        Case {
            name: "queue at 2 req/s: the model asks for 2, the overshoot for more: reactive wins",
            sym: Sym {
                rate: 2.0,
                ..queue()
            },
            set: settings(2, "f16", 1024),
            action: Action::ScaleReplicas { from: 2, to: 4 },
        },
        Case {
            name: "starting pods count once: 5 asked for (2 starting), the model needs 6",
            sym: Sym {
                rate: 8.0,
                ttft: 1.2,
                ..queue()
            },
            set: Settings {
                ready_replicas: 3,
                ..settings(5, "f16", 1024)
            },
            action: Action::ScaleReplicas { from: 5, to: 6 },
        },
    ];
    for c in cases {
        let p = plan(
            &sized(Mode::Auto),
            &steady(1000.0, 3, c.sym),
            &c.set,
            &[],
            1000.0,
        );
        assert_eq!(
            p.classification.class,
            BottleneckClass::QueueBound,
            "{}",
            c.name
        );
        assert_eq!(p.action, c.action, "{}: {}", c.name, p.reason);
        assert!(p.act, "{}", c.name);
    }
}

#[test]
fn a_healthy_service_is_scaled_ahead_of_the_breach() {
    // 5 req/s on 2 pods, latency still fine: the model needs 4.
    let sym = Sym { rate: 5.0, ..OK };
    let p = plan(
        &sized(Mode::Auto),
        &steady(1000.0, 3, sym),
        &settings(2, "f16", 1024),
        &[],
        1000.0,
    );
    assert_eq!(p.classification.class, BottleneckClass::Healthy);
    assert_eq!(p.kind, DecisionKind::Remediate, "{}", p.reason);
    assert_eq!(p.action, Action::ScaleReplicas { from: 2, to: 4 });
    assert!(p.reason.contains("ahead of a breach"), "{}", p.reason);

    // Without a model the same snapshots change nothing.
    let reactive = plan(
        &spec(Mode::Auto),
        &steady(1000.0, 3, sym),
        &settings(2, "f16", 1024),
        &[],
        1000.0,
    );
    assert_eq!(reactive.action, Action::Hold, "{}", reactive.reason);

    // Enough replicas for the rate: nothing to do ahead.
    let enough = plan(
        &sized(Mode::Auto),
        &steady(1000.0, 3, sym),
        &settings(4, "f16", 1024),
        &[],
        1000.0,
    );
    assert!(
        !matches!(enough.action, Action::ScaleReplicas { to: 5.., .. }),
        "{:?}: {}",
        enough.action,
        enough.reason
    );
}

#[test]
fn a_scale_ahead_is_kept_not_reverted_for_no_effect() {
    let spec = sized(Mode::Auto);
    let sym = Sym { rate: 5.0, ..OK };
    let mut log: Vec<Decision> = Vec::new();
    let first = plan(
        &spec,
        &steady(1000.0, 3, sym),
        &settings(2, "f16", 1024),
        &log,
        1000.0,
    );
    assert_eq!(first.action, Action::ScaleReplicas { from: 2, to: 4 });
    apply_plan(&mut log, &first, 10);
    // Rolled out (settled on the first tick that sees it), then judged a full window later:
    // still healthy, nothing "improved".
    let mut judged = first.clone();
    for later in [1000.0 + W as f64, 1000.0 + 3.0 * W as f64] {
        judged = plan(
            &spec,
            &steady(later, 3, sym),
            &settings(4, "f16", 1024),
            &log,
            later,
        );
        apply_plan(&mut log, &judged, 10);
    }
    let d = log
        .iter()
        .find(|d| d.id == first.record.as_ref().unwrap().id);
    assert!(
        matches!(d.unwrap().outcome, Outcome::Kept { .. }),
        "{:?}",
        d.unwrap().outcome
    );
    assert_ne!(judged.kind, DecisionKind::Revert, "{}", judged.reason);
}

#[test]
fn scale_in_keeps_what_the_recent_peak_needs() {
    // Long healthy headroom at 1 req/s now, but 5 req/s within the reversal cooldown: 4 pods
    // are what that peak needs, so 4 stay.
    let spec = sized(Mode::Auto);
    let now = 10_000.0;
    let quiet = Sym {
        rate: 1.0,
        ttft: 0.1,
        tpot: 0.01,
        mem: 0.2,
        ..OK
    };
    let mut history = steady(now, 8, quiet);
    history[0].request_rate_per_second = sluice_slo::SliValue::known(5.0, history[0].at);
    let p = plan(&spec, &history, &settings(4, "f16", 1024), &[], now);
    assert_eq!(p.action, Action::Hold, "{}", p.reason);
    assert!(p.reason.contains("capacity model needs 4"), "{}", p.reason);

    // Once the peak has left the cooldown horizon, one pod goes.
    let calm = steady(now, 8, quiet);
    let p = plan(&spec, &calm, &settings(4, "f16", 1024), &[], now);
    assert_eq!(
        p.action,
        Action::ScaleReplicas { from: 4, to: 3 },
        "{}",
        p.reason
    );
}

#[test]
fn a_capacity_that_is_not_positive_is_refused() {
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let s = SloSpec {
            capacity: Some(CapacityModel {
                requests_per_second_per_replica: bad,
            }),
            ..spec(Mode::Auto)
        };
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("requestsPerSecondPerReplica"), "{err}");
    }
}

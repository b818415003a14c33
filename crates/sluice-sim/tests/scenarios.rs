//! Scenario tests of the simulator under each policy: determinism, a queue-bound step that the
//! operator's loop scales out of, a memory-bound service fixed without replicas, a service that
//! no replica count can fix, and the HPA's tolerance and stabilisation.

use sluice_contract::{Action, AppliedSettings, BottleneckClass, Quantization};
use sluice_sim::profile::{Point, Variant};
use sluice_sim::{
    Hpa, HpaMetric, Objectives, Pattern, Policy, Profile, RunConfig, RunResult, ServiceKnobs,
    Sluice, Static, TokenMix, operator_spec, run, workload,
};

fn pts(v: &[(f64, f64)]) -> Vec<Point> {
    v.iter().map(|&(x, seconds)| Point { x, seconds }).collect()
}

/// A GPU-like replica: ~25 req/s of short requests at full batch.
fn profile() -> Profile {
    let variant = |q, scale: f64, weights: u64| Variant {
        quantization: q,
        prefill: pts(&[(16.0, 0.004 * scale), (2048.0, 0.12 * scale)]),
        decode_step: pts(&[
            (1.0, 0.012 * scale),
            (16.0, 0.020 * scale),
            (32.0, 0.030 * scale),
        ]),
        weight_bytes: weights,
        kv_bytes_per_token: 128 << 10,
        swap_seconds: 5.0,
    };
    Profile {
        name: "test-gpu".into(),
        source: "made up for tests".into(),
        start_seconds: 60.0,
        max_concurrent_requests: 64,
        max_batch_size: 32,
        memory_budget_bytes: 24 << 30,
        context_length: 4096,
        gpu: true,
        variants: vec![
            variant(Quantization::F16, 1.0, 14 << 30),
            variant(Quantization::Q8_0, 0.75, 7 << 30),
            variant(Quantization::Q4_0, 0.6, 4 << 30),
        ],
    }
}

const SLO: Objectives = Objectives {
    ttft_p95_seconds: Some(1.0),
    tpot_seconds: Some(0.05),
    error_ratio: Some(0.01),
};

fn knobs(ladder: Vec<Quantization>, max_tokens: u32, floor: u32) -> ServiceKnobs {
    ServiceKnobs {
        min_replicas: 1,
        max_replicas: 8,
        ladder,
        max_tokens,
        max_tokens_floor: floor,
    }
}

fn cfg(duration: f64, replicas: u32, max_tokens: u32) -> RunConfig {
    RunConfig {
        duration,
        interval: 15.0,
        window: 60.0,
        report_window: 300.0,
        objectives: SLO,
        initial: AppliedSettings {
            replicas,
            quantization: Quantization::F16,
            max_tokens,
        },
    }
}

fn sluice(k: &ServiceKnobs) -> Sluice {
    Sluice::new(operator_spec(&SLO, k), 60)
}

fn step_load() -> Vec<sluice_sim::Arrival> {
    let mix = TokenMix {
        prompt_tokens: 200,
        output_tokens: 60,
        spread: 0.5,
    };
    workload::synthetic(
        &Pattern::Step {
            from: 5.0,
            to: 60.0,
            at: 600.0,
        },
        &mix,
        2400.0,
        3,
    )
}

fn scale_ups(r: &RunResult) -> Vec<(u32, u32)> {
    r.actions
        .iter()
        .filter_map(|t| match t.action {
            Action::ScaleReplicas { from, to } => Some((from, to)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_run_is_a_pure_function_of_its_inputs() {
    let a = step_load();
    let k = knobs(vec![Quantization::F16], 1024, 1024);
    let one = run(&profile(), &a, &mut sluice(&k), &cfg(2400.0, 1, 1024));
    let two = run(&profile(), &a, &mut sluice(&k), &cfg(2400.0, 1, 1024));
    assert_eq!(one, two);
}

#[test]
fn a_queue_bound_step_is_scaled_out_of_and_beats_static() {
    let a = step_load();
    let k = knobs(vec![Quantization::F16], 1024, 1024);
    let c = cfg(2400.0, 1, 1024);
    let s = run(&profile(), &a, &mut sluice(&k), &c);
    let fixed = run(&profile(), &a, &mut Static, &c);
    let ups = scale_ups(&s);
    assert!(matches!(ups.first(), Some((f, t)) if t > f), "{ups:?}");
    // Every scale-out names the queue; later scale-ins step back from headroom.
    for t in &s.actions {
        if let Action::ScaleReplicas { from, to } = t.action
            && to > from
        {
            assert_eq!(t.class, BottleneckClass::QueueBound, "{t:?}");
        }
    }
    // One replica cannot carry 60 req/s: static fails every window after the step.
    assert!(fixed.attainment < 0.5, "{}", fixed.attainment);
    assert!(
        s.attainment > fixed.attainment + 0.2,
        "{} vs {}",
        s.attainment,
        fixed.attainment
    );
    // The last windows are met again.
    assert!(s.windows.last().unwrap().held, "{:?}", s.windows.last());
}

#[test]
fn a_memory_bound_service_is_fixed_without_replicas() {
    // A tight KV budget with a large max_tokens reservation: few sequences fit.
    let mut p = profile();
    p.memory_budget_bytes = 16 << 30;
    let mix = TokenMix {
        prompt_tokens: 1500,
        output_tokens: 200,
        spread: 0.3,
    };
    let a = workload::synthetic(
        &Pattern::Step {
            from: 2.0,
            to: 2.0,
            at: 0.0,
        },
        &mix,
        1800.0,
        5,
    );
    let k = knobs(
        vec![Quantization::F16, Quantization::Q8_0, Quantization::Q4_0],
        2048,
        256,
    );
    let r = run(&p, &a, &mut sluice(&k), &cfg(1800.0, 1, 2048));
    let first = r.actions.first().expect("the loop acted");
    assert_eq!(first.class, BottleneckClass::MemoryBound, "{:?}", r.actions);
    assert!(
        matches!(
            first.action,
            Action::SetMaxTokens { .. } | Action::SetQuantization { .. }
        ),
        "{first:?}"
    );
}

#[test]
fn the_loop_refuses_to_scale_when_scaling_cannot_help() {
    // Decoding one sequence already takes longer than the TPOT objective.
    let mut p = profile();
    for v in &mut p.variants {
        v.decode_step = pts(&[(1.0, 0.08), (32.0, 0.2)]);
    }
    // About 0.3 req/s of 30 tokens: each pod decodes under one sequence on average.
    let mix = TokenMix {
        prompt_tokens: 100,
        output_tokens: 30,
        spread: 0.2,
    };
    let a = workload::synthetic(
        &Pattern::Step {
            from: 0.3,
            to: 0.3,
            at: 0.0,
        },
        &mix,
        1200.0,
        9,
    );
    let k = knobs(vec![Quantization::F16], 256, 256);
    let r = run(&p, &a, &mut sluice(&k), &cfg(1200.0, 1, 256));
    assert!(scale_ups(&r).is_empty(), "{:?}", r.actions);
    assert_eq!(r.replica_hours, 1200.0 / 3600.0);
}

#[test]
fn hpa_holds_within_tolerance_and_scales_in_only_after_stabilisation() {
    let mix = TokenMix {
        prompt_tokens: 200,
        output_tokens: 60,
        spread: 0.5,
    };
    // High for 10 minutes, then a trickle for 20.
    let a = workload::synthetic(
        &Pattern::Step {
            from: 50.0,
            to: 1.0,
            at: 600.0,
        },
        &mix,
        1800.0,
        4,
    );
    let mut hpa = Hpa::new(HpaMetric::Concurrency { target: 8.0 }, 1, 8, 60.0);
    assert!(hpa.name().contains("concurrency"));
    let r = run(&profile(), &a, &mut hpa, &cfg(1800.0, 1, 1024));
    let changes: Vec<(f64, u32, u32)> = r
        .actions
        .iter()
        .filter_map(|t| match t.action {
            Action::ScaleReplicas { from, to } => Some((t.at, from, to)),
            _ => None,
        })
        .collect();
    assert!(changes.iter().any(|c| c.2 < c.1), "scaled in: {changes:?}");
    // The load dropped at 600 s: the recommendations of the high phase hold the count up for
    // the 300 s stabilisation window, so no scale-in below half the peak comes before 900 s.
    for c in changes.iter().filter(|c| c.2 < 4) {
        assert!(c.0 >= 900.0, "{changes:?}");
    }
    // Scale-ups at most double or add four per tick.
    assert!(
        changes
            .iter()
            .filter(|c| c.2 > c.1)
            .all(|c| c.2 <= (c.1 * 2).max(c.1 + 4)),
        "{changes:?}"
    );
}

//! Classifier: each rule from its symptom pattern, the priority between rules, and the
//! evidence that fired them.

mod common;

use common::*;
use sluice_contract::{BottleneckClass, Mode};
use sluice_slo::{Sli, SliValue, classify};

fn run(current: &Sli, history: &[Sli]) -> sluice_slo::Classification {
    let s = spec(Mode::Auto);
    classify(current, history, &s.targets, &s.thresholds)
}

#[test]
fn each_rule_from_its_symptoms() {
    let cases: Vec<(&str, Sym, BottleneckClass, &str, &[&str])> = vec![
        (
            "all met",
            OK,
            BottleneckClass::Healthy,
            "H1",
            &["ttftP95Seconds"],
        ),
        (
            "idle",
            Sym {
                rate: 0.0,
                queue: 0.0,
                ..OK
            },
            BottleneckClass::Healthy,
            "H0",
            &["requestRatePerSecond"],
        ),
        (
            "kv cache full",
            Sym { mem: 0.95, ..OK },
            BottleneckClass::MemoryBound,
            "M1",
            &["memoryRatio.kv_cache"],
        ),
        (
            "internal errors",
            Sym {
                err: 0.05,
                internal: 0.05,
                ..OK
            },
            BottleneckClass::SoftwareBound,
            "S1",
            &["internalErrorRatio"],
        ),
        (
            "timeouts without a queue",
            Sym { err: 0.05, ..OK },
            BottleneckClass::SoftwareBound,
            "S2",
            &["errorRatio"],
        ),
        (
            "latency with a backlog",
            Sym {
                ttft: 3.0,
                queue: 12.0,
                wait: 2.0,
                ..OK
            },
            BottleneckClass::QueueBound,
            "Q1",
            &["ttftP95Seconds", "queueDepthPerPod", "queueWaitShare"],
        ),
        (
            "429s",
            Sym {
                rejected: 0.1,
                err: 0.1,
                ..OK
            },
            BottleneckClass::QueueBound,
            "Q2",
            &["rejectionRatio"],
        ),
        (
            "GPU saturated",
            Sym {
                ttft: 1.5,
                gpu: Some(0.95),
                ..OK
            },
            BottleneckClass::ComputeBound,
            "C1",
            &["gpuUtilizationRatio", "ttftP95Seconds"],
        ),
        (
            "slow decode on a CPU server",
            Sym { tpot: 0.2, ..OK },
            BottleneckClass::ComputeBound,
            "C2",
            &["tpotSeconds"],
        ),
        (
            "GPU idle, latency high, no queue",
            Sym {
                ttft: 1.5,
                gpu: Some(0.1),
                ..OK
            },
            BottleneckClass::IoBound,
            "I1",
            &["gpuUtilizationRatio", "ttftP95Seconds"],
        ),
    ];
    for (name, sym, class, rule, signals) in cases {
        let c = run(&sli(1000.0, sym), &[]);
        assert_eq!(
            (c.class, c.rule.as_str()),
            (class, rule),
            "{name}: {}",
            c.summary
        );
        for sig in signals {
            assert!(
                c.evidence.iter().any(|e| e.signal == *sig),
                "{name}: no {sig} in {:?}",
                c.evidence
            );
        }
    }
}

#[test]
fn ttft_rising_with_load_while_service_time_is_flat_is_queue_bound() {
    let before = sli(
        880.0,
        Sym {
            rate: 4.0,
            ttft: 0.6,
            ..OK
        },
    );
    let now = sli(
        1000.0,
        Sym {
            rate: 6.0,
            ttft: 1.4,
            ..OK
        },
    );
    let c = run(&now, std::slice::from_ref(&before));
    assert_eq!(
        (c.class, c.rule.as_str()),
        (BottleneckClass::QueueBound, "Q3"),
        "{}",
        c.summary
    );
    assert!(c.evidence.iter().any(|e| e.signal == "serviceTimeGrowth"));
    // Service time grew with the load: the engine itself slowed, not a queue.
    let slower = sli(
        1000.0,
        Sym {
            rate: 6.0,
            ttft: 1.4,
            service: 1.5,
            ..OK
        },
    );
    assert_eq!(run(&slower, &[before]).class, BottleneckClass::ComputeBound);
}

#[test]
fn memory_outranks_a_queue_and_the_queue_is_kept_as_secondary() {
    let c = run(
        &sli(
            1000.0,
            Sym {
                mem: 0.97,
                ttft: 3.0,
                queue: 12.0,
                wait: 2.0,
                ..OK
            },
        ),
        &[],
    );
    assert_eq!(c.class, BottleneckClass::MemoryBound);
    assert!(
        c.secondary.iter().any(|h| h.rule == "Q1"),
        "{:?}",
        c.secondary
    );
}

#[test]
fn software_outranks_a_queue() {
    let c = run(
        &sli(
            1000.0,
            Sym {
                internal: 0.1,
                err: 0.1,
                ttft: 3.0,
                queue: 12.0,
                wait: 2.0,
                ..OK
            },
        ),
        &[],
    );
    assert_eq!(
        (c.class, c.rule.as_str()),
        (BottleneckClass::SoftwareBound, "S1")
    );
}

#[test]
fn missing_required_slis_are_unknown_and_named() {
    let mut s = sli(1000.0, OK);
    s.queue_depth = SliValue::unknown("empty result");
    s.memory.clear();
    let c = run(&s, &[]);
    assert_eq!((c.class, c.rule.as_str()), (BottleneckClass::Unknown, "U1"));
    assert!(
        c.summary.contains("queueDepth (empty result)"),
        "{}",
        c.summary
    );
    assert!(c.summary.contains("memoryRatio"), "{}", c.summary);
    // A missing GPU signal is not required: CPU servers have none.
    let mut cpu = sli(1000.0, OK);
    cpu.gpu_utilization_ratio = SliValue::unknown("no DCGM exporter");
    assert_eq!(run(&cpu, &[]).class, BottleneckClass::Healthy);
    // Everything unknown (source down) is never read as idle.
    let down = Sli::all_unknown(1000.0, 60, "connection refused");
    assert_eq!(run(&down, &[]).class, BottleneckClass::Unknown);
}

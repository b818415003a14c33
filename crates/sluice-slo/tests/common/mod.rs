//! Fixtures shared by the planner tests: snapshots built from a few symptom values, a spec
//! with every objective set, and settings.
#![allow(dead_code)]

use sluice_contract::{AppliedSettings, Mode, Quantization};
use sluice_slo::{
    Decision, Knobs, MemorySli, Plan, Settings, Sli, SliValue, SloSpec, SloTargets, Tuning,
    apply_plan, plan,
};

pub const W: u64 = 60;

/// Symptom knobs for one snapshot.
#[derive(Clone, Copy)]
pub struct Sym {
    pub rate: f64,
    pub ttft: f64,
    pub tpot: f64,
    pub queue: f64,
    pub wait: f64,
    pub service: f64,
    pub gpu: Option<f64>,
    pub mem: f64,
    pub err: f64,
    pub internal: f64,
    pub rejected: f64,
    pub pods: f64,
}

pub const OK: Sym = Sym {
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

pub fn sli(at: f64, s: Sym) -> Sli {
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

pub fn spec(mode: Mode) -> SloSpec {
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
            quantization_ladder: vec![Quantization::F16, Quantization::Q8_0, Quantization::Q4_0],
            max_tokens: 1024,
            max_tokens_floor: 128,
        },
        tuning: Tuning::default(),
        thresholds: Default::default(),
        capacity: None,
    }
}

pub fn settings(replicas: u32, quant: &str, max_tokens: u32) -> Settings {
    Settings {
        applied: AppliedSettings {
            replicas,
            quantization: quant.parse().unwrap(),
            max_tokens,
        },
        ready_replicas: replicas,
        rollout_complete: true,
    }
}

/// `n` snapshots of the same symptoms, one per window, the last at `end`.
pub fn steady(end: f64, n: usize, s: Sym) -> Vec<Sli> {
    (0..n)
        .map(|i| sli(end - (n - 1 - i) as f64 * W as f64, s))
        .collect()
}

pub fn queue() -> Sym {
    Sym {
        ttft: 3.0,
        queue: 12.0,
        wait: 2.0,
        ..OK
    }
}
pub fn memory() -> Sym {
    Sym { mem: 0.95, ..OK }
}
pub fn compute() -> Sym {
    Sym {
        ttft: 1.5,
        tpot: 0.09,
        gpu: Some(0.97),
        ..OK
    }
}
pub fn io() -> Sym {
    Sym {
        ttft: 1.5,
        gpu: Some(0.2),
        ..OK
    }
}
pub fn software() -> Sym {
    Sym {
        err: 0.08,
        internal: 0.08,
        ..OK
    }
}

/// Runs one Auto tick and folds it into the log, returning the plan.
pub fn tick(s: &SloSpec, h: &[Sli], set: &Settings, log: &mut Vec<Decision>, now: f64) -> Plan {
    let p = plan(s, h, set, log, now);
    apply_plan(log, &p, 10);
    p
}

//! Sluice's fleet simulator (`sluice simulate`): a deterministic discrete-event simulation of
//! replicas of `sluice-server`, each a continuous-batching server driven by a measured
//! [`Profile`], fed by a trace or a synthetic [`Pattern`], and controlled by one of the compared
//! [`policy`]s. The `sluice` policy is the operator's own loop ([`sluice_slo::ControlLoop`] over
//! [`fleet::LoopFleet`]) with the operator's defaults ([`operator_spec`]); nothing of its policy
//! is written again here.
//!
//! - [`profile`]: what `sluice profile` measures, and the performance model it implies;
//! - [`workload`]: arrivals (synthetic patterns, time and rate scaling);
//! - [`fleet`]: the replicas, their scheduler and the SLIs they export;
//! - [`record`]: event logs and windowed reads (`histogram_quantile` over the server's buckets);
//! - [`policy`]: sluice, HPA, KEDA, static;
//! - [`run()`]: the event loop; [`report`]: windows, replica-hours, reversals, tables.

pub mod fleet;
pub mod policy;
pub mod profile;
pub mod record;
pub mod report;
pub mod run;
pub mod workload;

pub use policy::{Hpa, HpaMetric, Policy, Sluice, Static};
pub use profile::{Capacity, Profile, ProfileError};
pub use report::{Objectives, RunResult, markdown};
pub use run::{RunConfig, run};
pub use workload::{Arrival, Pattern, TokenMix};

use sluice_contract::{Mode, Quantization};
use sluice_slo::{Knobs, SloSpec, SloTargets, Tuning};

/// The knobs a simulated service allows.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceKnobs {
    /// Fewest replicas.
    pub min_replicas: u32,
    /// Most replicas.
    pub max_replicas: u32,
    /// Quantizations the loop may walk, highest precision first (one entry: fixed).
    pub ladder: Vec<Quantization>,
    /// `serving.maxTokens.default`.
    pub max_tokens: u32,
    /// `serving.maxTokens.floor` (equal to `max_tokens`: fixed).
    pub max_tokens_floor: u32,
}

/// The engine spec the operator builds for an InferenceService with these objectives and knobs
/// and every other field at its CRD default (`remediation.mode: Auto`), as
/// `sluice-operator`'s `slo::mapping::slo_spec` does: cooldowns from the CRD's defaults, the rest
/// of the tuning and the classifier thresholds at the engine's defaults.
pub fn operator_spec(objectives: &Objectives, knobs: &ServiceKnobs) -> SloSpec {
    let crd = sluice_api::SloSpec::default();
    let c = sluice_api::Cooldowns::default();
    let secs = |d| std::time::Duration::from(d).as_secs_f64().ceil() as u64;
    let tuning = Tuning {
        scale_out_cooldown_seconds: secs(c.scale_up),
        scale_in_cooldown_seconds: secs(c.scale_down),
        quantization_cooldown_seconds: secs(c.quantization),
        max_tokens_cooldown_seconds: secs(c.max_tokens),
        ..Tuning::default()
    };
    SloSpec {
        mode: Mode::Auto,
        targets: SloTargets {
            ttft_p95_seconds: objectives.ttft_p95_seconds,
            tpot_seconds: objectives.tpot_seconds,
            error_ratio: objectives.error_ratio.map(|r| r.max(1e-9)),
            memory_ratio: f64::from(crd.vram_max_percent) / 100.0,
        },
        knobs: Knobs {
            min_replicas: knobs.min_replicas,
            max_replicas: knobs.max_replicas,
            quantization_ladder: knobs.ladder.clone(),
            max_tokens: knobs.max_tokens,
            max_tokens_floor: knobs.max_tokens_floor,
        },
        tuning,
        thresholds: Default::default(),
        capacity: None,
    }
}

/// The CRD's default SLI window (`spec.slo.window`), seconds.
pub fn operator_window_seconds() -> u64 {
    std::time::Duration::from(sluice_api::SloSpec::default().window)
        .as_secs()
        .max(1)
}

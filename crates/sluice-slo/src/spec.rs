//! The engine's input types: objectives, allowed knobs, tuning and the effective settings.
//!
//! These are plain serde types (camelCase) the operator maps from its CRD and into its status;
//! this crate knows nothing of Kubernetes. Defaults are the documented ones in `docs/slo.md`.

use serde::{Deserialize, Serialize};
use sluice_contract::{AppliedSettings, Mode, Quantization};

use crate::classify::Thresholds;

/// Service level objectives. A latency or error objective left out is not enforced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SloTargets {
    /// TTFT P95 must stay at or below this (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_p95_seconds: Option<f64>,
    /// Mean time per output token must stay at or below this (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpot_seconds: Option<f64>,
    /// Share of requests ending `error|timeout|rejected` must stay at or below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_ratio: Option<f64>,
    /// Worst pod's VRAM/KV-cache use over capacity must stay at or below this (default 0.85).
    #[serde(default = "default_memory_ratio")]
    pub memory_ratio: f64,
}

fn default_memory_ratio() -> f64 {
    0.85
}

impl Default for SloTargets {
    fn default() -> Self {
        Self {
            ttft_p95_seconds: None,
            tpot_seconds: None,
            error_ratio: None,
            memory_ratio: default_memory_ratio(),
        }
    }
}

/// The knobs the planner may turn and their bounds; taken from the spec, never widened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Knobs {
    /// Fewest replicas (scale-in stops here).
    pub min_replicas: u32,
    /// Most replicas (scale-out stops here).
    pub max_replicas: u32,
    /// Allowed quantizations, highest quality first (e.g. `["f16", "q8_0", "q4_0"]`). The first
    /// rung is the one step-back restores to; one entry or none means quantization is fixed.
    #[serde(default)]
    pub quantization_ladder: Vec<Quantization>,
    /// The spec's `max_tokens`: the ceiling step-back restores to.
    pub max_tokens: u32,
    /// The lowest `max_tokens` a clamp may reach.
    pub max_tokens_floor: u32,
}

/// Timing, hysteresis and step sizes of the planner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Tuning {
    /// An objective has headroom when its value is at most this share of its target.
    pub headroom_ratio: f64,
    /// Step back only after this many SLI windows of continuous headroom.
    pub step_back_after_windows: u32,
    /// A remedy needs this many consecutive snapshots with the same class (>= 1).
    pub trigger_snapshots: u32,
    /// Minimum seconds between two scale-outs.
    pub scale_out_cooldown_seconds: u64,
    /// Minimum seconds after any replica change before a scale-in.
    pub scale_in_cooldown_seconds: u64,
    /// Minimum seconds between quantization changes (each one is a rolling restart).
    pub quantization_cooldown_seconds: u64,
    /// Minimum seconds between `max_tokens` changes.
    pub max_tokens_cooldown_seconds: u64,
    /// Minimum seconds before a knob may move opposite to its last change.
    pub reversal_cooldown_seconds: u64,
    /// SLI windows to wait after a change has rolled out before judging it.
    pub evaluation_windows: u32,
    /// A change helped when a violated objective improved by at least this share, or is met.
    pub min_improvement_ratio: f64,
    /// A change judged under load that grew by more than this share is inconclusive, not reverted.
    pub load_change_tolerance_ratio: f64,
    /// Seconds a change may take to roll out and be judged before it is called inconclusive.
    pub settle_timeout_seconds: u64,
    /// Seconds a remedy that did not help (or a step-back that regressed) is not tried again.
    pub ineffective_block_seconds: u64,
    /// A `max_tokens` clamp multiplies it by this (0..1); restoring divides by it.
    pub max_tokens_step_ratio: f64,
    /// Most replicas one scale-out adds.
    pub max_scale_out_step: u32,
    /// Seconds before an unchanged hold or degraded state is recorded again.
    pub record_repeat_seconds: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            headroom_ratio: 0.7,
            step_back_after_windows: 5,
            trigger_snapshots: 2,
            scale_out_cooldown_seconds: 60,
            scale_in_cooldown_seconds: 300,
            quantization_cooldown_seconds: 600,
            max_tokens_cooldown_seconds: 120,
            reversal_cooldown_seconds: 600,
            evaluation_windows: 1,
            min_improvement_ratio: 0.1,
            load_change_tolerance_ratio: 0.25,
            settle_timeout_seconds: 600,
            ineffective_block_seconds: 1800,
            max_tokens_step_ratio: 0.5,
            max_scale_out_step: 4,
            record_repeat_seconds: 600,
        }
    }
}

/// What one replica carries, for model-based sizing: measured with `sluice profile` (the
/// profile's performance model) or a load test. Without one the planner sizes reactively, from
/// the latency overshoot alone.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityModel {
    /// Requests per second one replica serves at saturation, at the first rung of the ladder
    /// and the spec's `max_tokens`. The planner sizes for this times `headroomRatio`.
    pub requests_per_second_per_replica: f64,
}

/// Everything the planner takes from the user's spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SloSpec {
    /// Off, Advise or Auto (the engine defaults to Advise: it never acts unless told to).
    #[serde(default = "advise")]
    pub mode: Mode,
    /// Objectives.
    #[serde(default)]
    pub targets: SloTargets,
    /// Allowed knobs.
    pub knobs: Knobs,
    /// Planner timing and steps.
    #[serde(default)]
    pub tuning: Tuning,
    /// Classifier thresholds.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// One replica's capacity: when set, scale-out is sized in one step from the request rate
    /// (and ahead of a breach), and scale-in keeps what the recent peak needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<CapacityModel>,
}

fn advise() -> Mode {
    Mode::Advise
}

/// The spec is inconsistent; the planner holds and reports this instead of guessing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// Replica bounds are inverted or zero.
    #[error("failed to validate slo spec: minReplicas {min} must be >= 1 and <= maxReplicas {max}")]
    Replicas {
        /// minReplicas
        min: u32,
        /// maxReplicas
        max: u32,
    },
    /// The max_tokens floor is zero or above the ceiling.
    #[error(
        "failed to validate slo spec: maxTokensFloor {floor} must be >= 1 and <= maxTokens {ceiling}"
    )]
    MaxTokens {
        /// floor
        floor: u32,
        /// ceiling
        ceiling: u32,
    },
    /// The quantization ladder has an empty or repeated rung.
    #[error("failed to validate slo spec: quantization ladder {0:?} has a repeated rung")]
    Ladder(Vec<Quantization>),
    /// A target or ratio is not a positive finite number (or a ratio is above 1).
    #[error("failed to validate slo spec: {field} = {value} is out of range")]
    OutOfRange {
        /// camelCase field name
        field: &'static str,
        /// offending value
        value: f64,
    },
}

impl SloSpec {
    /// Checks bounds and ratios.
    pub fn validate(&self) -> Result<(), SpecError> {
        let k = &self.knobs;
        if k.min_replicas == 0 || k.min_replicas > k.max_replicas {
            return Err(SpecError::Replicas {
                min: k.min_replicas,
                max: k.max_replicas,
            });
        }
        if k.max_tokens_floor == 0 || k.max_tokens_floor > k.max_tokens {
            return Err(SpecError::MaxTokens {
                floor: k.max_tokens_floor,
                ceiling: k.max_tokens,
            });
        }
        let mut seen = std::collections::HashSet::new();
        if k.quantization_ladder.iter().any(|q| !seen.insert(*q)) {
            return Err(SpecError::Ladder(k.quantization_ladder.clone()));
        }
        let t = &self.targets;
        for (field, v) in [
            ("ttftP95Seconds", t.ttft_p95_seconds),
            ("tpotSeconds", t.tpot_seconds),
            (
                "requestsPerSecondPerReplica",
                self.capacity.map(|c| c.requests_per_second_per_replica),
            ),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0)
            {
                return Err(SpecError::OutOfRange { field, value: v });
            }
        }
        let u = &self.tuning;
        for (field, v) in [
            ("errorRatio", t.error_ratio.unwrap_or(0.5)),
            ("memoryRatio", t.memory_ratio),
            ("headroomRatio", u.headroom_ratio),
            ("maxTokensStepRatio", u.max_tokens_step_ratio),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 1.0) {
                return Err(SpecError::OutOfRange { field, value: v });
            }
        }
        Ok(())
    }
}

/// The settings in effect, as the operator reads them from what runs: the applied knobs and how
/// far the rollout got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// Replicas, quantization and `max_tokens` in force.
    #[serde(flatten)]
    pub applied: AppliedSettings,
    /// Replicas ready to serve.
    pub ready_replicas: u32,
    /// False while a rolling update (e.g. a quantization change) is still replacing pods.
    pub rollout_complete: bool,
}

impl Settings {
    /// Pods asked for but not yet ready.
    pub fn starting(&self) -> u32 {
        self.applied.replicas.saturating_sub(self.ready_replicas)
    }

    /// True when every desired pod is ready on the current template.
    pub fn settled(&self) -> bool {
        self.rollout_complete && self.ready_replicas >= self.applied.replicas
    }
}

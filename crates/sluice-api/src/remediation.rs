//! How far the operator may go to meet the SLOs: the mode, per-knob cooldowns and which knobs
//! may move.

use kube::KubeSchema;
use kube::core::Duration;
use serde::{Deserialize, Serialize};
use sluice_contract::{Knob, Mode};

/// Whether and how the operator acts on SLO violations.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RemediationSpec {
    /// `Off`: only report SLIs. `Advise`: also record what it would do, without acting.
    /// `Auto`: act.
    #[serde(default)]
    pub mode: Mode,
    /// Minimum time between two moves of the same knob.
    #[serde(default)]
    pub cooldowns: Cooldowns,
    /// Knobs the operator may move.
    #[serde(default = "all_knobs")]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[schemars(length(max = 3))]
    pub knobs: Vec<Knob>,
    /// What one replica carries (`sluice profile`, or a load test). Set, the operator sizes a
    /// scale-out from the request rate in one step, scales ahead of a breach and keeps the
    /// replicas the recent peak needs; unset, it sizes from the latency overshoot alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<CapacitySpec>,
}

/// One replica's capacity, for model-based sizing.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CapacitySpec {
    /// Requests per second one replica serves at saturation on `serving.quantization` and
    /// `serving.maxTokens.default`; the operator sizes for 70 % of it.
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 1000000.0")
        .message("remediation.capacity.requestsPerSecondPerReplica must be above 0"))]
    pub requests_per_second_per_replica: f64,
}

impl Default for RemediationSpec {
    fn default() -> Self {
        Self {
            mode: Mode::default(),
            cooldowns: Cooldowns::default(),
            knobs: all_knobs(),
            capacity: None,
        }
    }
}

fn all_knobs() -> Vec<Knob> {
    vec![Knob::Replicas, Knob::Quantization, Knob::MaxTokens]
}

/// Cooldowns between moves, per knob and direction.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Cooldowns {
    /// After any move, before adding replicas.
    #[serde(default = "default_scale_up")]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')").message("remediation.cooldowns.scaleUp must be positive"))]
    #[schemars(length(max = 32))]
    pub scale_up: Duration,
    /// After any move, before removing replicas.
    #[serde(default = "default_scale_down")]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')").message("remediation.cooldowns.scaleDown must be positive"))]
    #[schemars(length(max = 32))]
    pub scale_down: Duration,
    /// Between quantization changes (each one reloads the model).
    #[serde(default = "default_quant_cooldown")]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')").message("remediation.cooldowns.quantization must be positive"))]
    #[schemars(length(max = 32))]
    pub quantization: Duration,
    /// Between `max_tokens` changes.
    #[serde(default = "default_tokens_cooldown")]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')").message("remediation.cooldowns.maxTokens must be positive"))]
    #[schemars(length(max = 32))]
    pub max_tokens: Duration,
}

impl Default for Cooldowns {
    fn default() -> Self {
        Self {
            scale_up: default_scale_up(),
            scale_down: default_scale_down(),
            quantization: default_quant_cooldown(),
            max_tokens: default_tokens_cooldown(),
        }
    }
}

fn default_scale_up() -> Duration {
    std::time::Duration::from_secs(120).into()
}

fn default_scale_down() -> Duration {
    std::time::Duration::from_secs(600).into()
}

fn default_quant_cooldown() -> Duration {
    std::time::Duration::from_secs(900).into()
}

fn default_tokens_cooldown() -> Duration {
    std::time::Duration::from_secs(300).into()
}

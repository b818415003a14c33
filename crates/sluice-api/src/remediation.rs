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
}

impl Default for RemediationSpec {
    fn default() -> Self {
        Self {
            mode: Mode::default(),
            cooldowns: Cooldowns::default(),
            knobs: all_knobs(),
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

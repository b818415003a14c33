//! The SLO vocabulary: objectives and their states, bottleneck classes, knobs, modes, actions,
//! decisions' kinds and outcomes, evidence and baselines.
//!
//! Spelled as the `InferenceService` status stores them (the CRD is generated from these types
//! and its YAML is drift-tested), and used as is by the engine, the operator and the CLI.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A setting the operator may move.
#[derive(
    JsonSchema,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
pub enum Knob {
    /// The replica count, within `replicas.min..=replicas.max`.
    Replicas,
    /// The quantization level, along `serving.quantizationLadder`.
    Quantization,
    /// The `max_tokens` cap, within `serving.maxTokens.floor..=serving.maxTokens.default`.
    MaxTokens,
}

impl Knob {
    pub const ALL: &'static [Knob] = <Self as strum::VariantArray>::VARIANTS;
}

/// Remediation mode.
#[derive(
    JsonSchema,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Default,
    strum::IntoStaticStr,
)]
pub enum Mode {
    /// Observe and report only.
    Off,
    /// Record the decisions it would take, without acting.
    Advise,
    /// Act on violations.
    #[default]
    Auto,
}

/// An objective from `spec.slo`.
#[derive(
    JsonSchema,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "camelCase")]
#[strum(serialize_all = "camelCase")]
pub enum Objective {
    /// `slo.ttftP95`.
    TtftP95,
    /// `slo.tpotAvg`.
    TpotAvg,
    /// `slo.vramMaxPercent`.
    VramMaxPercent,
    /// `slo.errorRateMax`.
    ErrorRateMax,
}

impl Objective {
    pub const ALL: &'static [Objective] = <Self as strum::VariantArray>::VARIANTS;

    /// The spec's spelling, e.g. `ttftP95`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Whether an objective holds.
#[derive(
    JsonSchema,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Default,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
pub enum ObjectiveState {
    /// Within target.
    Met,
    /// Outside target.
    Violated,
    /// No requests in the window: a latency or error objective has nothing to measure.
    NoTraffic,
    /// No data yet.
    #[default]
    Unknown,
}

impl ObjectiveState {
    pub const ALL: &'static [ObjectiveState] = <Self as strum::VariantArray>::VARIANTS;

    /// Stable name for metric labels and Event reasons.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Bottleneck classes.
#[derive(
    JsonSchema,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
pub enum BottleneckClass {
    /// Decoding or prefill is limited by arithmetic throughput: clamp `max_tokens`, then
    /// quantize, then add replicas.
    ComputeBound,
    /// Accelerator memory is the limit; quantization or fewer tokens help, not replicas.
    MemoryBound,
    /// The accelerator waits on storage, network or the host; scaling is refused.
    IoBound,
    /// Requests wait for admission; more replicas help.
    QueueBound,
    /// Errors or stalls that resources cannot fix; scaling is refused.
    SoftwareBound,
    /// No objective is violated.
    ///
    /// Stored as `None` (the status field's original spelling); named `Healthy` everywhere a
    /// person reads it (metric labels, Event reasons, condition reasons, the CLI).
    #[serde(rename = "None")]
    #[strum(serialize = "Healthy")]
    Healthy,
    /// Not enough data to classify.
    Unknown,
}

impl BottleneckClass {
    pub const ALL: &'static [BottleneckClass] = <Self as strum::VariantArray>::VARIANTS;

    /// Stable name for Event reasons, condition reasons and metric labels.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Serde for a [`BottleneckClass`] by its display name ([`BottleneckClass::as_str`], `Healthy`
/// rather than the stored `None`): for the engine's and the CLI's JSON, which people read and
/// script against, as opposed to the CRD status.
pub mod class_by_name {
    use super::BottleneckClass;

    pub fn serialize<S: serde::Serializer>(c: &BottleneckClass, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(c.as_str())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<BottleneckClass, D::Error> {
        let name = <String as serde::Deserialize>::deserialize(d)?;
        BottleneckClass::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown bottleneck class {name:?}")))
    }
}

impl std::fmt::Display for BottleneckClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a decision was made.
#[derive(
    JsonSchema,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Default,
    strum::IntoStaticStr,
)]
pub enum DecisionKind {
    /// A change to relieve a violated objective.
    Remediate,
    /// A change back toward the spec after sustained headroom.
    StepBack,
    /// Undo of an earlier change that did not help.
    Revert,
    /// Nothing changed, for a reason worth recording.
    #[default]
    Hold,
    /// Knobs cannot fix this; a recommendation is given instead.
    Degraded,
}

impl DecisionKind {
    /// Stable name for Event reasons and metric labels.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What happened to a decision.
#[derive(
    JsonSchema,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
)]
pub enum DecisionOutcome {
    /// Applied; waiting for the rollout and fresh SLIs to judge it.
    Pending,
    /// Recorded only (`remediation.mode: Advise`).
    Advised,
    /// A hold or degraded note: nothing to judge.
    Noted,
    /// The change relieved the objective it targeted.
    Improved,
    /// The change did not help and was reverted.
    NoEffect,
    /// A step-back left the objectives met.
    Kept,
    /// A step-back broke an objective and was reverted.
    Regressed,
    /// A revert finished rolling out.
    Completed,
    /// Could not be judged (no rollout, unknown metrics, load changed).
    Inconclusive,
}

/// What became of a decision, with the detail a judged outcome carries: the engine's working
/// form of a [`DecisionOutcome`] plus its `outcomeDetail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum Outcome {
    /// Acted; waiting for the rollout and for fresh SLIs to judge it.
    Pending,
    /// Advise mode: reported, not acted.
    Advised,
    /// A hold or degraded note: nothing to judge.
    Noted,
    /// The change relieved the objective it targeted.
    Improved {
        /// Before/after values.
        detail: String,
    },
    /// The change did not help and was reverted.
    NoEffect {
        /// Before/after values.
        detail: String,
    },
    /// A step-back left the objectives met.
    Kept {
        /// After values.
        detail: String,
    },
    /// A step-back broke an objective and was reverted.
    Regressed {
        /// After values.
        detail: String,
    },
    /// A revert finished rolling out.
    Completed {
        /// What was restored.
        detail: String,
    },
    /// Could not be judged (no rollout, unknown metrics, load changed, settings changed).
    Inconclusive {
        /// Why.
        detail: String,
    },
}

impl Outcome {
    /// The stored kind.
    pub fn kind(&self) -> DecisionOutcome {
        match self {
            Outcome::Pending => DecisionOutcome::Pending,
            Outcome::Advised => DecisionOutcome::Advised,
            Outcome::Noted => DecisionOutcome::Noted,
            Outcome::Improved { .. } => DecisionOutcome::Improved,
            Outcome::NoEffect { .. } => DecisionOutcome::NoEffect,
            Outcome::Kept { .. } => DecisionOutcome::Kept,
            Outcome::Regressed { .. } => DecisionOutcome::Regressed,
            Outcome::Completed { .. } => DecisionOutcome::Completed,
            Outcome::Inconclusive { .. } => DecisionOutcome::Inconclusive,
        }
    }

    /// The stored detail, for outcomes that carry one.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Outcome::Pending | Outcome::Advised | Outcome::Noted => None,
            Outcome::Improved { detail }
            | Outcome::NoEffect { detail }
            | Outcome::Kept { detail }
            | Outcome::Regressed { detail }
            | Outcome::Completed { detail }
            | Outcome::Inconclusive { detail } => Some(detail),
        }
    }

    /// Rebuilds an outcome from its stored kind and detail (a missing detail reads as empty).
    pub fn from_parts(kind: DecisionOutcome, detail: Option<String>) -> Outcome {
        let detail = detail.unwrap_or_default();
        match kind {
            DecisionOutcome::Pending => Outcome::Pending,
            DecisionOutcome::Advised => Outcome::Advised,
            DecisionOutcome::Noted => Outcome::Noted,
            DecisionOutcome::Improved => Outcome::Improved { detail },
            DecisionOutcome::NoEffect => Outcome::NoEffect { detail },
            DecisionOutcome::Kept => Outcome::Kept { detail },
            DecisionOutcome::Regressed => Outcome::Regressed { detail },
            DecisionOutcome::Completed => Outcome::Completed { detail },
            DecisionOutcome::Inconclusive => Outcome::Inconclusive { detail },
        }
    }
}

/// One observed value and the threshold it was compared with.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    /// SLI name, e.g. `ttftP95Seconds` or `memoryRatio.kv_cache`.
    #[schemars(length(max = 64))]
    pub signal: String,
    /// Observed value.
    pub value: f64,
    /// Comparison that held, e.g. `>`; empty for context values.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 4))]
    pub op: String,
    /// What it was compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}

impl Evidence {
    /// `signal value op threshold`.
    pub fn cmp(signal: impl Into<String>, value: f64, op: &str, threshold: f64) -> Self {
        Self {
            signal: signal.into(),
            value,
            op: op.to_owned(),
            threshold: Some(threshold),
        }
    }

    /// A context value without a comparison.
    pub fn value(signal: impl Into<String>, value: f64) -> Self {
        Self {
            signal: signal.into(),
            value,
            op: String::new(),
            threshold: None,
        }
    }
}

impl std::fmt::Display for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.threshold {
            Some(t) => write!(f, "{}={:.4} {} {:.4}", self.signal, self.value, self.op, t),
            None => write!(f, "{}={:.4}", self.signal, self.value),
        }
    }
}

/// SLI values when a decision was made, to judge it later.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Baseline {
    /// Objectives violated at the time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub violated: Vec<Objective>,
    /// TTFT P95, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_p95_seconds: Option<f64>,
    /// Mean TPOT, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpot_seconds: Option<f64>,
    /// Error ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_ratio: Option<f64>,
    /// Worst memory use ratio (0..1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_ratio: Option<f64>,
    /// Request rate, to tell a load change from an effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_rate_per_second: Option<f64>,
    /// Replicas at the time.
    #[serde(default)]
    pub replicas: u32,
}

impl Baseline {
    /// Value of one objective at the time (the memory objective as a ratio).
    pub fn value_of(&self, o: Objective) -> Option<f64> {
        match o {
            Objective::TtftP95 => self.ttft_p95_seconds,
            Objective::TpotAvg => self.tpot_seconds,
            Objective::ErrorRateMax => self.error_ratio,
            Objective::VramMaxPercent => self.memory_ratio,
        }
    }
}

/// Knobs cannot fix the problem; what a human should do.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Degraded {
    /// Stable CamelCase reason, e.g. `IoBound`.
    #[schemars(length(max = 64))]
    pub reason: String,
    /// What is wrong.
    #[schemars(length(max = 2048))]
    pub message: String,
    /// What to do about it.
    #[schemars(length(max = 2048))]
    pub recommendation: String,
}

impl Degraded {
    /// Cut to the lengths the stored status allows (at a character boundary).
    pub fn bounded(&self) -> Degraded {
        Degraded {
            reason: truncate(&self.reason, 64),
            message: truncate(&self.message, 2048),
            recommendation: truncate(&self.recommendation, 2048),
        }
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_through_kind_and_detail() {
        let all = [
            Outcome::Pending,
            Outcome::Advised,
            Outcome::Noted,
            Outcome::Improved { detail: "a".into() },
            Outcome::NoEffect { detail: "b".into() },
            Outcome::Kept { detail: "c".into() },
            Outcome::Regressed { detail: "d".into() },
            Outcome::Completed { detail: "e".into() },
            Outcome::Inconclusive { detail: "f".into() },
        ];
        for o in all {
            let back = Outcome::from_parts(o.kind(), o.detail().map(str::to_owned));
            assert_eq!(back, o);
        }
    }

    #[test]
    fn the_healthy_class_is_stored_as_none_and_read_as_healthy() {
        let json = serde_json::to_string(&BottleneckClass::Healthy).unwrap();
        assert_eq!(json, "\"None\"");
        assert_eq!(BottleneckClass::Healthy.as_str(), "Healthy");
        assert_eq!(
            serde_json::from_str::<BottleneckClass>("\"None\"").unwrap(),
            BottleneckClass::Healthy
        );
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Named(#[serde(with = "class_by_name")] BottleneckClass);
        for &c in BottleneckClass::ALL {
            let json = serde_json::to_string(&Named(c)).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert_eq!(serde_json::from_str::<Named>(&json).unwrap(), Named(c));
        }
        assert_eq!(ObjectiveState::NoTraffic.as_str(), "NoTraffic");
        assert_eq!(Objective::TtftP95.as_str(), "ttftP95");
        assert_eq!(
            serde_json::to_string(&Objective::VramMaxPercent).unwrap(),
            "\"vramMaxPercent\""
        );
    }
}

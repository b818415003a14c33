//! The `InferenceService` status: what the operator observed and chose. The reconcile pipeline
//! fills conditions, `effective`, the endpoint and replica counts; the SLO loop fills `slo`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::remediation::Knob;
use crate::spec::Quantization;

/// Condition types the operator sets.
pub mod condition {
    /// The service's pods are available and the Service routes to them.
    pub const READY: &str = "Ready";
    /// A rollout or a remediation is in progress.
    pub const PROGRESSING: &str = "Progressing";
    /// The spec cannot be served as written, or the operator cannot reconcile it.
    pub const DEGRADED: &str = "Degraded";
    /// Every objective in `spec.slo` is met over the evaluation window.
    pub const SLO_MET: &str = "SLOMet";
}

/// Observed state of an `InferenceService`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct InferenceServiceStatus {
    /// The `metadata.generation` the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Current conditions: `Ready`, `Progressing`, `Degraded`, `SLOMet`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    #[schemars(length(max = 16))]
    pub conditions: Vec<Condition>,
    /// Settings the operator actually applied (within the spec's bounds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective: Option<EffectiveSettings>,
    /// In-cluster URL of the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Pods the Deployment currently runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Pods passing their readiness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// SLIs, objective states, the classified bottleneck and recent decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<SloStatus>,
}

/// The settings in force: chosen by the operator, never written back to the spec.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveSettings {
    /// Replica count.
    pub replicas: i32,
    /// Quantization passed to the server.
    pub quantization: Quantization,
    /// `max_tokens` cap passed to the server.
    pub max_tokens: u32,
}

/// The SLO loop's view of the service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SloStatus {
    /// `Met` when every objective is met, `Violated` when any is not, `Unknown` without data.
    #[serde(default)]
    pub state: ObjectiveState,
    /// The latest SLI values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slis: Option<SliSnapshot>,
    /// State of each objective.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(max = 8))]
    pub objectives: Vec<ObjectiveStatus>,
    /// The classified bottleneck and the evidence for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bottleneck: Option<Bottleneck>,
    /// The last ten decisions, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub decisions: Vec<Decision>,
}

/// SLI values measured over the evaluation window. A missing value means Prometheus had no data.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SliSnapshot {
    /// When the values were read.
    pub observed_at: Time,
    /// The window they cover, e.g. `5m`.
    pub window: String,
    /// 95th percentile time to first token, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_p95_seconds: Option<f64>,
    /// Average time per output token, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpot_avg_seconds: Option<f64>,
    /// Highest accelerator memory use across pods, percent of capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vram_percent: Option<f64>,
    /// Failed requests as a fraction of all requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
}

/// An objective from `spec.slo`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
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

/// Whether an objective holds.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ObjectiveState {
    /// Within target.
    Met,
    /// Outside target.
    Violated,
    /// No data yet.
    #[default]
    Unknown,
}

/// One objective's state.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectiveStatus {
    /// Which objective.
    pub name: Objective,
    /// Its state.
    pub state: ObjectiveState,
    /// Measured value (seconds, percent or fraction, as the objective).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Target value in the same unit.
    pub target: f64,
    /// Since when the state holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}

/// Bottleneck classes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BottleneckClass {
    /// Decoding is limited by arithmetic throughput; more replicas help.
    ComputeBound,
    /// Accelerator memory is the limit; quantization or fewer tokens help, not replicas alone.
    MemoryBound,
    /// Model loading or storage is the limit.
    IoBound,
    /// Requests wait for admission; more replicas or a lower `max_tokens` help.
    QueueBound,
    /// Errors or stalls that resources cannot fix; scaling is refused.
    SoftwareBound,
    /// No objective is violated.
    None,
    /// Not enough data to classify.
    Unknown,
}

/// The classified bottleneck.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Bottleneck {
    /// The class.
    pub class: BottleneckClass,
    /// Observations that led to it, e.g. `queue depth 42 > 4 x batch size`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub evidence: Vec<String>,
    /// When it was first classified so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}

/// What happened to a decision.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecisionOutcome {
    /// Applied to the owned objects.
    Applied,
    /// Recorded only (`remediation.mode: Advise`).
    Advised,
    /// Not taken: the action cannot help, is outside the bounds or its knob is not allowed.
    Refused,
    /// Blocked by a cooldown.
    Deferred,
    /// Applying it failed.
    Failed,
}

/// One remediation decision and why it was taken.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// When it was decided.
    pub time: Time,
    /// The knob it moves; absent for decisions not to act.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knob: Option<Knob>,
    /// Value before, as text (e.g. `2`, `f16`, `256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Value after, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Why, in one sentence.
    pub reason: String,
    /// The observations behind it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub evidence: Vec<String>,
    /// What happened.
    pub outcome: DecisionOutcome,
}

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
    /// What the last evaluation decided, in one sentence (also for holds that are not logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub summary: Option<String>,
    /// Set when no knob can fix the problem (I/O- or software-bound, invalid objectives): what
    /// is wrong and what a human should do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<SloDegraded>,
    /// The last ten decisions, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub decisions: Vec<Decision>,
}

/// Knobs cannot fix the problem; what a human should do.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SloDegraded {
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

/// SLI values measured over the evaluation window. A missing value means it could not be
/// measured (see `unknown`), never zero.
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
    /// Highest accelerator memory (or KV cache) use across pods, percent of capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vram_percent: Option<f64>,
    /// Which memory type `vramPercent` describes (`vram` or `kv_cache`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_type: Option<String>,
    /// Failed requests as a fraction of all requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// Requests rejected with HTTP 429 as a fraction of all requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection_rate: Option<f64>,
    /// Finished requests per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_rate_per_second: Option<f64>,
    /// Requests waiting for admission, all pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_depth: Option<f64>,
    /// Mean time waiting for admission, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_wait_seconds: Option<f64>,
    /// Generated tokens per second, all pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_second: Option<f64>,
    /// Mean GPU utilisation, fraction (absent on CPU or without a DCGM exporter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_utilization: Option<f64>,
    /// Pods exporting metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_pods: Option<f64>,
    /// SLIs that could not be measured, as `name: reason`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub unknown: Vec<String>,
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
    /// No requests in the window: a latency or error objective has nothing to measure.
    NoTraffic,
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
    /// Why the value is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Since when the state holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}

/// Bottleneck classes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    /// Id of the classifier rule that decided it (see docs/slo.md), e.g. `Q1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub rule: Option<String>,
    /// What the rule saw, in one sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub summary: Option<String>,
    /// Observations that led to it, e.g. `queueDepthPerPod=42.0000 >= 2.0000`, then other
    /// rules that also fired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub evidence: Vec<String>,
    /// When it was first classified so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}

/// Why a decision was made.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
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

/// What happened to a decision.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
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

/// SLI values when a decision was made, to judge it later.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DecisionBaseline {
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

/// One SLO-loop decision: what, why, on which evidence, and what became of it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// Monotonic id within the service.
    #[serde(default)]
    pub id: u64,
    /// When it was decided.
    pub time: Time,
    /// Remediation mode at the time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<crate::remediation::RemediationMode>,
    /// Why it was made.
    #[serde(default)]
    pub kind: DecisionKind,
    /// The knob it moves; absent for decisions not to act.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knob: Option<Knob>,
    /// Value before, as text (e.g. `2`, `f16`, `256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Value after, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The bottleneck class at the time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<BottleneckClass>,
    /// The classifier rule at the time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub rule: Option<String>,
    /// Why, in one sentence.
    #[schemars(length(max = 4096))]
    pub reason: String,
    /// The observations behind it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub evidence: Vec<Evidence>,
    /// SLIs when decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<DecisionBaseline>,
    /// For a revert: the id of the decision it undoes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverts: Option<u64>,
    /// When the change was seen fully rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_at: Option<Time>,
    /// What happened.
    pub outcome: DecisionOutcome,
    /// Before/after values or why it could not be judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub outcome_detail: Option<String>,
}

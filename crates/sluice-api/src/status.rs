//! The `InferenceService` status: what the operator observed and chose. The reconcile pipeline
//! fills conditions, `effective`, the endpoint and replica counts; the SLO loop fills `slo`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use sluice_contract::{
    AppliedSettings, Baseline, BottleneckClass, DecisionKind, DecisionOutcome, Degraded, Evidence,
    Knob, Mode, Objective, ObjectiveState,
};

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
    pub effective: Option<AppliedSettings>,
    /// In-cluster URL of the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Pods the Deployment currently runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// The pods' label selector, serialised (the scale subresource's selector, for an HPA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Pods passing their readiness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// SLIs, objective states, the classified bottleneck and recent decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<SloStatus>,
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
    pub degraded: Option<Degraded>,
    /// The last ten decisions, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub decisions: Vec<Decision>,
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
    pub mode: Option<Mode>,
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
    pub baseline: Option<Baseline>,
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

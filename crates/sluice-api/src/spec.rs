//! The `InferenceService` spec: what the user declares (model, serving limits, replica bounds,
//! SLOs and how far the operator may go to meet them). The operator never writes the spec; what it
//! chooses lives in status and in the objects it owns.

// Several printer columns share `type_ = "string"`; clippy mistakes them for duplicates.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::core::Duration;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use sluice_contract::Quantization;

use crate::model::ModelSpec;
use crate::remediation::RemediationSpec;
use crate::status::InferenceServiceStatus;
use crate::tracing::TracingSpec;

// The operator turns an InferenceService into pods of `sluice-server`, watches its SLIs and
// remediates by moving replicas, quantization and the `max_tokens` cap within these bounds.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "InferenceService",
    plural = "inferenceservices",
    singular = "inferenceservice",
    shortname = "sluicesvc",
    category = "sluice",
    namespaced,
    cel,
    status = "InferenceServiceStatus",
    derive = "PartialEq",
    doc = "An LLM inference service run by Sluice against declared SLOs.",
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "pods passing their readiness probe"
    ),
    printcolumn(
        name = "Quant",
        type_ = "string",
        json_path = ".status.effective.quantization",
        description = "quantization the operator applied"
    ),
    printcolumn(
        name = "MaxTokens",
        type_ = "integer",
        json_path = ".status.effective.maxTokens",
        description = "max_tokens cap the operator applied"
    ),
    printcolumn(
        name = "SLO",
        type_ = "string",
        json_path = ".status.slo.state",
        description = "whether every objective is met"
    ),
    printcolumn(
        name = "Bottleneck",
        type_ = "string",
        json_path = ".status.slo.bottleneck.class",
        description = "the classified bottleneck"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    // `kubectl scale`, an HPA or a KEDA ScaledObject drive `spec.replicas.count` when Sluice does
    // not move replicas itself.
    scale(
        spec_replicas_path = ".spec.replicas.count",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    )
)]
#[x_kube(
    validation = Rule::new("!has(self.replicas) || !has(self.replicas.count) || (has(self.remediation) && ((has(self.remediation.mode) && self.remediation.mode != 'Auto') || (has(self.remediation.knobs) && !('Replicas' in self.remediation.knobs))))")
        .message("replicas.count is for kubectl scale, an HPA or KEDA, and Sluice moves replicas itself here: remove Replicas from remediation.knobs (or leave Auto mode) before scaling by hand or by an autoscaler"),
)]
#[serde(rename_all = "camelCase")]
#[doc = "Desired state: the model, how to serve it, and the objectives to keep."]
pub struct InferenceServiceSpec {
    /// Which model to serve and where its weights come from.
    pub model: ModelSpec,
    /// How the server runs: quantization ladder, token and admission limits, image, resources
    /// and scheduling.
    #[serde(default)]
    pub serving: ServingSpec,
    /// Bounds for the replica count; the operator chooses a value inside them.
    #[serde(default)]
    pub replicas: ReplicaBounds,
    /// Service level objectives the operator keeps the service within.
    #[serde(default)]
    pub slo: SloSpec,
    /// Whether and how the operator acts when an objective is violated.
    #[serde(default)]
    pub remediation: RemediationSpec,
    /// Where the pods send their traces; unset takes the operator's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingSpec>,
}

/// How the server runs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("self.quantization in self.quantizationLadder")
        .message("serving.quantization must be one of serving.quantizationLadder"),
    validation = Rule::new("self.quantizationLadder.all(q, self.quantizationLadder.filter(x, x == q).size() == 1)")
        .message("serving.quantizationLadder must not repeat a level"),
)]
#[serde(rename_all = "camelCase")]
pub struct ServingSpec {
    /// Quantization the service starts with.
    #[serde(default)]
    pub quantization: Quantization,
    /// Quantization levels the operator may move between, from highest fidelity to most
    /// compressed. Under memory pressure it steps right along this list; when healthy again it
    /// steps back left.
    #[serde(default = "default_ladder")]
    #[schemars(length(min = 1, max = 6))]
    pub quantization_ladder: Vec<Quantization>,
    /// The `max_tokens` cap on generated tokens per request.
    #[serde(default)]
    pub max_tokens: MaxTokensSpec,
    /// Requests the server admits at once; more get HTTP 429 with `Retry-After`.
    #[serde(default = "default_max_concurrent")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 65536")
        .message("serving.maxConcurrentRequests must be between 1 and 65536"))]
    pub max_concurrent_requests: u32,
    /// Sequences decoded together in one batch.
    #[serde(default = "default_max_batch")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1024")
        .message("serving.maxBatchSize must be between 1 and 1024"))]
    pub max_batch_size: u32,
    /// How long the server drains in-flight requests after SIGTERM. The pod's termination grace
    /// period is set above it.
    #[serde(default = "default_drain")]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s') && duration(self) <= duration('1h')")
        .message("serving.drainTimeout must be positive and at most 1h"))]
    #[schemars(length(max = 32))]
    pub drain_timeout: Duration,
    /// Server image override. Defaults to the operator's CPU image, or its CUDA image when GPUs
    /// are requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub image: Option<String>,
    /// Names of Secrets used to pull the server image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub image_pull_secrets: Vec<String>,
    /// Secret key holding the API key clients must present; unset means no authentication.
    /// The Secret's name must start with `sluice-api-key-`: a CR can reference only Secrets
    /// the namespace's owners named for this purpose, never an arbitrary one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<ApiKeySecretRef>,
    /// Compute resources of each server pod.
    #[serde(default)]
    pub resources: ResourcesSpec,
    /// Node labels the pods must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the pods. When GPUs are requested and this is empty, a toleration for the
    /// `nvidia.com/gpu` taint is added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tolerations: Vec<Toleration>,
    /// Affinity of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
}

impl Default for ServingSpec {
    fn default() -> Self {
        Self {
            quantization: Quantization::default(),
            quantization_ladder: default_ladder(),
            max_tokens: MaxTokensSpec::default(),
            max_concurrent_requests: default_max_concurrent(),
            max_batch_size: default_max_batch(),
            drain_timeout: default_drain(),
            image: None,
            image_pull_secrets: Vec::new(),
            api_key_secret_ref: None,
            resources: ResourcesSpec::default(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            affinity: None,
        }
    }
}

/// The seed ladder: full precision first, then 8-bit, then 4-bit.
fn default_ladder() -> Vec<Quantization> {
    vec![Quantization::F16, Quantization::Q8_0, Quantization::Q4_0]
}

fn default_max_concurrent() -> u32 {
    64
}

fn default_max_batch() -> u32 {
    16
}

fn default_drain() -> Duration {
    std::time::Duration::from_secs(30).into()
}

/// Bounds of the `max_tokens` cap.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.floor <= self.default")
    .message("serving.maxTokens.floor must not exceed serving.maxTokens.default"))]
#[serde(rename_all = "camelCase")]
pub struct MaxTokensSpec {
    /// The cap in normal operation.
    #[serde(default = "default_max_tokens")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 131072")
        .message("serving.maxTokens.default must be between 1 and 131072"))]
    pub default: u32,
    /// The lowest cap the operator may clamp to when shedding load.
    #[serde(default = "default_max_tokens_floor")]
    #[x_kube(validation = Rule::new("self >= 1").message("serving.maxTokens.floor must be at least 1"))]
    pub floor: u32,
}

impl Default for MaxTokensSpec {
    fn default() -> Self {
        Self {
            default: default_max_tokens(),
            floor: default_max_tokens_floor(),
        }
    }
}

fn default_max_tokens() -> u32 {
    256
}

fn default_max_tokens_floor() -> u32 {
    64
}

/// Prefix every Secret named by `spec.serving.apiKeySecretRef` carries.
pub const API_KEY_SECRET_PREFIX: &str = "sluice-api-key-";
/// The CEL form of the prefix rule (a test keeps the two equal).
pub const API_KEY_SECRET_CEL: &str = "self.startsWith('sluice-api-key-') && self.size() > 15";

/// A key of a Secret in the same namespace, named for Sluice's use ([`API_KEY_SECRET_PREFIX`]).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeySecretRef {
    /// Secret name; starts with `sluice-api-key-`.
    #[x_kube(validation = Rule::new(API_KEY_SECRET_CEL)
        .message("serving.apiKeySecretRef.name must start with 'sluice-api-key-': only Secrets named for Sluice may be referenced"))]
    #[schemars(length(min = 16, max = 253))]
    pub name: String,
    /// Key inside the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Compute resources of one server pod.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResourcesSpec {
    /// NVIDIA GPUs per pod (`nvidia.com/gpu`); 0 runs on CPU.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 16").message("serving.resources.gpu must be between 0 and 16"))]
    pub gpu: u32,
    /// CPU request per pod (no CPU limit is set: throttling would show up as latency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// Memory request and limit per pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
}

/// Bounds of the replica count, and the count itself when Sluice does not choose it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("self.min <= self.max").message("replicas.min must not exceed replicas.max"),
    validation = Rule::new("!has(self.count) || (self.count >= self.min && self.count <= self.max)")
        .message("replicas.count must be within replicas.min and replicas.max"),
)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaBounds {
    /// Fewest replicas; the service starts here.
    #[serde(default = "one")]
    #[x_kube(validation = Rule::new("self >= 1").message("replicas.min must be at least 1"))]
    pub min: i32,
    /// Most replicas the operator may scale to.
    #[serde(default = "one")]
    #[x_kube(validation = Rule::new("self <= 1000").message("replicas.max must be at most 1000"))]
    pub max: i32,
    /// Replicas to run when Sluice does not move them (the `Replicas` knob not granted, or a
    /// mode other than `Auto`): the scale subresource's field, which `kubectl scale`, an HPA or
    /// a KEDA ScaledObject set. Unset, the Deployment's own count is left to whoever sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i32>,
}

impl Default for ReplicaBounds {
    fn default() -> Self {
        Self {
            min: 1,
            max: 1,
            count: None,
        }
    }
}

fn one() -> i32 {
    1
}

/// Service level objectives. Defaults are the seed SLAs: TTFT P95 < 1 s, TPOT avg < 50 ms,
/// VRAM < 85 %, error rate < 0.1 %.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SloSpec {
    /// 95th percentile time to first token must stay below this.
    #[serde(default = "default_ttft")]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')").message("slo.ttftP95 must be positive"))]
    #[schemars(length(max = 32))]
    pub ttft_p95: Duration,
    /// Average time per output token must stay below this.
    #[serde(default = "default_tpot")]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')").message("slo.tpotAvg must be positive"))]
    #[schemars(length(max = 32))]
    pub tpot_avg: Duration,
    /// Accelerator memory in use must stay below this percentage of capacity.
    #[serde(default = "default_vram")]
    #[x_kube(validation = Rule::new("self > 0 && self <= 100").message("slo.vramMaxPercent must be in (0, 100]"))]
    pub vram_max_percent: u32,
    /// Fraction of requests that may fail (0.001 = 0.1 %).
    #[serde(default = "default_error_rate")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1.0").message("slo.errorRateMax must be a fraction in [0, 1]"))]
    pub error_rate_max: f64,
    /// Window the SLIs are evaluated over.
    #[serde(default = "default_window")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('30s') && duration(self) <= duration('24h')")
        .message("slo.window must be between 30s and 24h"))]
    #[schemars(length(max = 32))]
    pub window: Duration,
    /// Prometheus to read this service's SLIs from, e.g. `http://prometheus.monitoring:9090`;
    /// unset uses the operator's `--prometheus-url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')")
        .message("slo.prometheusUrl must be an http:// or https:// URL"))]
    #[schemars(length(min = 8, max = 2048))]
    pub prometheus_url: Option<String>,
}

impl Default for SloSpec {
    fn default() -> Self {
        Self {
            ttft_p95: default_ttft(),
            tpot_avg: default_tpot(),
            vram_max_percent: default_vram(),
            error_rate_max: default_error_rate(),
            window: default_window(),
            prometheus_url: None,
        }
    }
}

fn default_ttft() -> Duration {
    std::time::Duration::from_secs(1).into()
}

fn default_tpot() -> Duration {
    std::time::Duration::from_millis(50).into()
}

fn default_vram() -> u32 {
    85
}

fn default_error_rate() -> f64 {
    0.001
}

fn default_window() -> Duration {
    std::time::Duration::from_secs(300).into()
}

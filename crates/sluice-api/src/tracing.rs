//! Where a service's pods send their traces: an OTLP/HTTP collector (Jaeger, Tempo, an
//! OpenTelemetry Collector), how much of the traffic they trace, and the CA to trust for an
//! `https://` collector. Unset, the pods take the operator's default (`--pod-otlp-endpoint`,
//! the chart's `tracing.otlpEndpoint`), if any.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Trace export of the service's pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TracingSpec {
    /// OTLP/HTTP endpoint the pods export spans to, e.g. `http://jaeger-collector.tracing:4318`
    /// (the SDK appends `/v1/traces`). Empty turns export off for this service even when the
    /// operator has a default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == '' || self.startsWith('http://') || self.startsWith('https://')")
        .message("tracing.otlpEndpoint must be an http:// or https:// URL (or empty to turn export off)"))]
    #[schemars(length(max = 1024))]
    pub otlp_endpoint: Option<String>,
    /// Fraction of requests traced (parent-based: a caller's sampling decision is kept).
    /// Unset traces every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1.0")
        .message("tracing.samplingRatio must be between 0 and 1"))]
    pub sampling_ratio: Option<f64>,
    /// A ConfigMap key holding the PEM CA bundle the pods trust for an `https://` endpoint,
    /// besides the system's (a private CA in front of the collector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_config_map_ref: Option<ConfigMapKeyRef>,
}

/// A key of a ConfigMap in the service's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// ConfigMap name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

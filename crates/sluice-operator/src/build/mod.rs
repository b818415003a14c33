//! Build stage (pure): from a validated service and the effective settings, the objects the
//! operator owns — the settings ConfigMap, Deployment, Service, a PodDisruptionBudget when more than one replica runs,
//! and a ServiceMonitor when the Prometheus Operator's CRDs exist (Prometheus scrape annotations
//! on the pods otherwise).

mod admin_secret;
mod deployment;
mod monitoring;
mod network_policy;
mod otlp;
mod service;
mod settings;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::core::DynamicObject;

pub use admin_secret::{
    ADMIN_KEY_SECRET_KEY, admin_secret_name, admin_tls_secret_name, build_admin_secret,
    build_admin_tls_secret,
};
pub use deployment::{
    ADMIN_PORT, HF_CACHE_MOUNT, MODEL_MOUNT, PRE_STOP_SLEEP_SECS, SERVER_PORT, build_deployment,
    server_args, server_settings,
};
pub use monitoring::{
    build_prometheus_rule, build_service_monitor, prometheus_rule_resource,
    service_monitor_resource,
};
pub use network_policy::build_network_policy;
pub use service::{build_pdb, build_service};
pub use settings::{
    SETTINGS_MOUNT, SPEC_MAX_TOKENS_ANNOTATION, SPEC_QUANTIZATION_ANNOTATION, build_settings,
    recorded, runtime, settings_name,
};

use crate::validate::Validated;
use sluice_contract::AppliedSettings;

/// Label every owned object carries, naming its InferenceService; the pod selector uses it.
pub const INSTANCE_LABEL: &str = "sluice.dev/inference-service";

/// How the operator's environment shapes the objects (from its flags and API discovery).
#[derive(Debug, Clone, PartialEq)]
pub struct BuildOptions {
    /// Server image for CPU pods.
    pub server_image: String,
    /// Server image for pods that request GPUs.
    pub server_cuda_image: String,
    /// How Prometheus finds the pods.
    pub monitoring: Monitoring,
    /// The operator's namespace, when each service should get a NetworkPolicy that admits the
    /// admin port only from there (`--network-policy`).
    pub network_policy_for: Option<String>,
    /// With a NetworkPolicy: the namespaces (besides the service's own) whose pods may reach
    /// the inference port; empty admits every namespace.
    pub inference_namespaces: Vec<String>,
    /// The fingerprint of the operator's admin key seed, when it has one: pods then require
    /// their per-service admin key (`SLUICE_ADMIN_KEY`, from the Secret [`admin_secret_name`])
    /// on their admin API, and serve it over TLS with their derived identity (the Secret
    /// [`admin_tls_secret_name`]).
    pub admin_key_id: Option<String>,
    /// OTLP/HTTP endpoint pods export spans to unless their `spec.tracing` says otherwise
    /// (`--pod-otlp-endpoint`).
    pub pod_otlp_endpoint: Option<String>,
}

/// How Prometheus discovers the server pods.
#[derive(Debug, Clone, PartialEq)]
pub enum Monitoring {
    /// The Prometheus Operator is installed: create a ServiceMonitor with these extra labels
    /// (e.g. the `release` label a kube-prometheus-stack Prometheus selects on), and with
    /// `alert_rules` a PrometheusRule with the service's SLO alerts (same labels, which a
    /// kube-prometheus-stack `ruleSelector` matches too).
    ServiceMonitor {
        labels: BTreeMap<String, String>,
        alert_rules: bool,
    },
    /// No Prometheus Operator: annotate pods with `prometheus.io/scrape` and friends.
    Annotations,
}

/// Who sets the Deployment's replica count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replicas {
    /// Sluice: its choice, or `spec.replicas.count`.
    Set(u32),
    /// Whoever scales the Deployment (an HPA, KEDA, `kubectl scale`); Sluice only starts a new
    /// Deployment at this count.
    Keep { start: u32 },
}

/// Everything one InferenceService owns.
#[derive(Debug, Clone, PartialEq)]
pub struct Children {
    /// The run-time settings every pod reads.
    pub settings: ConfigMap,
    /// Without `spec.replicas`: see [`Children::replicas`].
    pub deployment: Deployment,
    /// The Deployment's replica count.
    pub replicas: Replicas,
    pub service: Service,
    /// Present when more than one replica runs; otherwise an existing one is deleted.
    pub pdb: Option<PodDisruptionBudget>,
    /// Present with [`Monitoring::ServiceMonitor`].
    pub service_monitor: Option<DynamicObject>,
    /// Present with [`Monitoring::ServiceMonitor`] and `alert_rules`.
    pub prometheus_rule: Option<DynamicObject>,
    /// Present with [`BuildOptions::network_policy_for`].
    pub network_policy: Option<NetworkPolicy>,
}

/// Builds every owned object. Pure.
pub fn build(v: &Validated, eff: &AppliedSettings, opts: &BuildOptions) -> Children {
    let replicas = if crate::effective::moves_replicas(v) || v.replica_count.is_some() {
        Replicas::Set(eff.replicas)
    } else {
        Replicas::Keep {
            start: eff.replicas,
        }
    };
    Children {
        settings: build_settings(v, eff),
        deployment: build_deployment(v, opts),
        replicas,
        service: build_service(v),
        pdb: (eff.replicas > 1).then(|| build_pdb(v)),
        service_monitor: match &opts.monitoring {
            Monitoring::ServiceMonitor { labels, .. } => Some(build_service_monitor(v, labels)),
            Monitoring::Annotations => None,
        },
        prometheus_rule: match &opts.monitoring {
            Monitoring::ServiceMonitor {
                labels,
                alert_rules: true,
            } => Some(build_prometheus_rule(v, labels)),
            Monitoring::ServiceMonitor { .. } | Monitoring::Annotations => None,
        },
        network_policy: opts
            .network_policy_for
            .as_deref()
            .map(|ns| build_network_policy(v, ns, &opts.inference_namespaces)),
    }
}

/// Labels on every owned object and on the pods.
///
/// Not `app.kubernetes.io/instance`: Argo CD tracks the objects of an Application by that label,
/// so children carrying the CR's name there would be adopted into (and pruned by) whichever
/// Application uses that name. The service is named by [`INSTANCE_LABEL`] instead.
pub fn labels(v: &Validated) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "sluice-server".to_owned(),
        ),
        (
            "app.kubernetes.io/component".to_owned(),
            "inference".to_owned(),
        ),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "sluice-operator".to_owned(),
        ),
        (INSTANCE_LABEL.to_owned(), v.name.clone()),
    ])
}

/// The pod selector: stable across spec changes (a Deployment's selector is immutable).
pub fn selector_labels(v: &Validated) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "sluice-server".to_owned(),
        ),
        (INSTANCE_LABEL.to_owned(), v.name.clone()),
    ])
}

/// The controller owner reference to the InferenceService, so children are garbage-collected
/// with it and their changes trigger a reconcile. `blockOwnerDeletion` needs `update` on
/// `inferenceservices/finalizers` where the OwnerReferencesPermissionEnforcement admission
/// plugin runs (OpenShift): the chart's RBAC grants it.
pub fn owner_reference(v: &Validated) -> OwnerReference {
    OwnerReference {
        api_version: "sluice.dev/v1alpha1".to_owned(),
        kind: "InferenceService".to_owned(),
        name: v.name.clone(),
        uid: v.uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Metadata shared by every owned object.
pub fn child_meta(v: &Validated) -> ObjectMeta {
    ObjectMeta {
        name: Some(v.name.clone()),
        namespace: Some(v.namespace.clone()),
        labels: Some(labels(v)),
        owner_references: Some(vec![owner_reference(v)]),
        ..ObjectMeta::default()
    }
}

/// The in-cluster URL of the service.
pub fn endpoint(v: &Validated) -> String {
    format!("http://{}.{}.svc:{}", v.name, v.namespace, SERVER_PORT)
}

//! The NetworkPolicy around a service's server pods: inference and metrics (port `http`) from
//! anywhere or, when the install names client namespaces, only from those and the service's
//! own; the admin API (port `admin`) only from the operator's namespace. Without it, any pod in
//! the cluster could reach a server's pod IP and change its limits or unload its model.

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{ADMIN_PORT, SERVER_PORT, child_meta, selector_labels};
use crate::validate::Validated;

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..NetworkPolicyPort::default()
    }
}

/// Every pod of the namespace `ns` (by the label the apiserver sets on each namespace).
fn namespace(ns: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some([("kubernetes.io/metadata.name".to_owned(), ns.to_owned())].into()),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    }
}

/// The NetworkPolicy for `v`'s pods, admitting the admin port from `operator_namespace` and
/// the inference port from anywhere (`inference_from` empty) or only from the service's own
/// namespace and `inference_from` (which must then name Prometheus's namespace too). Pure.
pub fn build_network_policy(
    v: &Validated,
    operator_namespace: &str,
    inference_from: &[String],
) -> NetworkPolicy {
    let clients = (!inference_from.is_empty()).then(|| {
        let mut names: Vec<&str> = std::iter::once(v.namespace.as_str())
            .chain(inference_from.iter().map(String::as_str))
            .collect();
        names.sort_unstable();
        names.dedup();
        names.into_iter().map(namespace).collect()
    });
    NetworkPolicy {
        metadata: child_meta(v),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(v)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                // Clients and Prometheus: the Service's port.
                NetworkPolicyIngressRule {
                    ports: Some(vec![tcp(SERVER_PORT)]),
                    from: clients,
                },
                // The operator's settings pushes and nothing else.
                NetworkPolicyIngressRule {
                    ports: Some(vec![tcp(ADMIN_PORT)]),
                    from: Some(vec![namespace(operator_namespace)]),
                },
            ]),
            ..NetworkPolicySpec::default()
        }),
    }
}

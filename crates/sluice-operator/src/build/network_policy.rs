//! The NetworkPolicy around a service's server pods: inference and metrics (port `http`) from
//! anywhere, the admin API (port `admin`) only from the operator's namespace. Without it, any
//! pod in the cluster could reach a server's pod IP and change its limits or unload its model.

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

/// The NetworkPolicy for `v`'s pods, admitting the admin port from `operator_namespace`. Pure.
pub fn build_network_policy(v: &Validated, operator_namespace: &str) -> NetworkPolicy {
    let operator = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(
                [(
                    "kubernetes.io/metadata.name".to_owned(),
                    operator_namespace.to_owned(),
                )]
                .into(),
            ),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    };
    NetworkPolicy {
        metadata: child_meta(v),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(v)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                // Clients and Prometheus: the Service's port, from anywhere.
                NetworkPolicyIngressRule {
                    ports: Some(vec![tcp(SERVER_PORT)]),
                    from: None,
                },
                // The operator's max_tokens push and nothing else.
                NetworkPolicyIngressRule {
                    ports: Some(vec![tcp(ADMIN_PORT)]),
                    from: Some(vec![operator]),
                },
            ]),
            ..NetworkPolicySpec::default()
        }),
    }
}

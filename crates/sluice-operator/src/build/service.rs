//! The ClusterIP Service in front of the server pods and, with more than one replica, the
//! PodDisruptionBudget that keeps voluntary evictions (node drains) from taking them all at once.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{SERVER_PORT, child_meta, selector_labels};
use crate::validate::Validated;

/// The Service. Pure.
pub fn build_service(v: &Validated) -> Service {
    Service {
        metadata: child_meta(v),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(v)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: SERVER_PORT,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The PodDisruptionBudget: at most one pod down at a time. Pure.
pub fn build_pdb(v: &Validated) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: child_meta(v),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(v)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

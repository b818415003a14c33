//! The Prometheus Operator's ServiceMonitor and PrometheusRule, built as dynamic objects so the
//! operator does not depend on the Prometheus Operator's types (its CRDs may not even be
//! installed).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use sluice_slo::promql::alerts::{RuleTarget, service_rules};

use super::{child_meta, selector_labels};
use crate::slo::mapping;
use crate::validate::Validated;

/// API resource of `monitoring.coreos.com/v1` ServiceMonitor.
pub fn service_monitor_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
        "servicemonitors",
    )
}

/// A child's metadata plus the labels a Prometheus selects its ServiceMonitors and
/// PrometheusRules by (`--service-monitor-label`).
fn monitoring_meta(v: &Validated, extra_labels: &BTreeMap<String, String>) -> ObjectMeta {
    let mut metadata = child_meta(v);
    if let Some(labels) = metadata.labels.as_mut() {
        labels.extend(extra_labels.iter().map(|(k, val)| (k.clone(), val.clone())));
    }
    metadata
}

/// API resource of `monitoring.coreos.com/v1` PrometheusRule.
pub fn prometheus_rule_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "PrometheusRule"),
        "prometheusrules",
    )
}

/// The PrometheusRule with the service's SLO alerts (`sluice_slo::promql::alerts`): burn-rate
/// alerts for its error and TTFT objectives, threshold alerts for TPOT and memory, all on the
/// same pod selector the SLO loop reads. Pure.
pub fn build_prometheus_rule(
    v: &Validated,
    extra_labels: &BTreeMap<String, String>,
) -> DynamicObject {
    let selector = mapping::selector(v);
    let group = selector.as_ref().ok().map(|selector| {
        service_rules(
            &RuleTarget {
                namespace: &v.namespace,
                name: &v.name,
                selector,
            },
            &mapping::targets(v),
        )
    });
    let mut obj = DynamicObject::new(&v.name, &prometheus_rule_resource());
    obj.metadata = monitoring_meta(v, extra_labels);
    // A validated name and namespace always make a selector; an empty rule list is the safe
    // answer if one ever did not.
    obj.data = json!({ "spec": { "groups": group.into_iter().collect::<Vec<_>>() } });
    obj
}

/// The ServiceMonitor scraping `/metrics` on the Service's `http` port. Pure.
pub fn build_service_monitor(
    v: &Validated,
    extra_labels: &BTreeMap<String, String>,
) -> DynamicObject {
    let mut obj = DynamicObject::new(&v.name, &service_monitor_resource());
    obj.metadata = monitoring_meta(v, extra_labels);
    obj.data = json!({
        "spec": {
            "selector": { "matchLabels": selector_labels(v) },
            "namespaceSelector": { "matchNames": [v.namespace] },
            "endpoints": [{ "port": "http", "path": "/metrics", "interval": "15s" }],
        }
    });
    obj
}

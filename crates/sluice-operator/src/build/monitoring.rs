//! The Prometheus Operator ServiceMonitor, built as a dynamic object so the operator does not
//! depend on the Prometheus Operator's types (its CRDs may not even be installed).

use std::collections::BTreeMap;

use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::{child_meta, selector_labels};
use crate::validate::Validated;

/// API resource of `monitoring.coreos.com/v1` ServiceMonitor.
pub fn service_monitor_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
        "servicemonitors",
    )
}

/// The ServiceMonitor scraping `/metrics` on the Service's `http` port. Pure.
pub fn build_service_monitor(
    v: &Validated,
    extra_labels: &BTreeMap<String, String>,
) -> DynamicObject {
    let mut metadata = child_meta(v);
    if let Some(labels) = metadata.labels.as_mut() {
        labels.extend(extra_labels.iter().map(|(k, val)| (k.clone(), val.clone())));
    }
    let mut obj = DynamicObject::new(&v.name, &service_monitor_resource());
    obj.metadata = metadata;
    obj.data = json!({
        "spec": {
            "selector": { "matchLabels": selector_labels(v) },
            "namespaceSelector": { "matchNames": [v.namespace] },
            "endpoints": [{ "port": "http", "path": "/metrics", "interval": "15s" }],
        }
    });
    obj
}

//! Apply: server-side apply of the built children under the operator's one field manager, and
//! removal of the ones no longer wanted.

use k8s_openapi::api::apps::v1::Deployment;

use super::observe::{Apis, Observed};
use crate::apply::{self, Applied};
use crate::build;
use crate::error::ReconcileError;
use crate::metrics::Metrics;
use crate::validate::Validated;

pub struct AppliedChildren {
    pub deployment: Deployment,
    /// Human-readable list of what was written, e.g. `created Deployment tiny`.
    pub changes: Vec<String>,
}

fn note<K>(changes: &mut Vec<String>, metrics: &Metrics, kind: &str, name: &str, a: &Applied<K>) {
    let verb = match a {
        Applied::Unchanged(_) => return,
        Applied::Created(_) => "created",
        Applied::Updated(_) => "updated",
    };
    metrics.writes.with_label_values(&[kind]).inc();
    changes.push(format!("{verb} {kind} {name}"));
}

pub async fn apply_children(
    apis: &Apis,
    v: &Validated,
    children: build::Children,
    observed: Observed,
    metrics: &Metrics,
) -> Result<AppliedChildren, ReconcileError> {
    let mut changes = Vec::new();
    let uid = v.uid.as_str();
    let name = v.name.as_str();

    let svc = apply::apply(
        &apis.service,
        "Service",
        uid,
        &children.service,
        observed.service,
    )
    .await?;
    note(&mut changes, metrics, "Service", name, &svc);
    let dep = apply::apply(
        &apis.deployment,
        "Deployment",
        uid,
        &children.deployment,
        observed.deployment,
    )
    .await?;
    note(&mut changes, metrics, "Deployment", name, &dep);

    match &children.pdb {
        Some(pdb) => {
            let a = apply::apply(&apis.pdb, "PodDisruptionBudget", uid, pdb, observed.pdb).await?;
            note(&mut changes, metrics, "PodDisruptionBudget", name, &a);
        }
        None => {
            if apply::delete_if_owned(&apis.pdb, "PodDisruptionBudget", uid, observed.pdb.as_ref())
                .await?
            {
                metrics
                    .writes
                    .with_label_values(&["PodDisruptionBudget"])
                    .inc();
                changes.push(format!("deleted PodDisruptionBudget {name} (one replica)"));
            }
        }
    }
    if let Some(np) = &children.network_policy {
        let a = apply::apply(
            &apis.network_policy,
            "NetworkPolicy",
            uid,
            np,
            observed.network_policy,
        )
        .await?;
        note(&mut changes, metrics, "NetworkPolicy", name, &a);
    }
    if let Some(sm) = &children.service_monitor {
        let a = apply::apply(
            &apis.service_monitor,
            "ServiceMonitor",
            uid,
            sm,
            observed.service_monitor,
        )
        .await?;
        note(&mut changes, metrics, "ServiceMonitor", name, &a);
    }
    Ok(AppliedChildren {
        deployment: dep.object().clone(),
        changes,
    })
}

//! Apply: server-side apply of the built children under the operator's one field manager, and
//! removal of the ones no longer wanted.

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::observe::{Apis, Observed};
use super::replicas;
use crate::admin_key::AdminKeys;
use crate::apply::{self, Applied};
use crate::build;
use crate::error::ApplyError;
use crate::metrics::Metrics;
use crate::validate::Validated;

pub struct AppliedChildren {
    pub deployment: Deployment,
    /// Human-readable list of what was written, e.g. `created Deployment tiny`.
    pub changes: Vec<String>,
}

/// Applies children of one service and notes what each write changed.
struct Writer<'a> {
    uid: &'a str,
    name: &'a str,
    metrics: &'a Metrics,
    /// Human-readable list of what was written.
    changes: Vec<String>,
}

impl Writer<'_> {
    /// Server-side applies `desired` (read as `live`, from a watch cache when `cached`) and
    /// notes a create or update.
    async fn apply<K>(
        &mut self,
        api: &Api<K>,
        kind: &'static str,
        desired: &K,
        live: Option<K>,
        cached: bool,
    ) -> Result<Applied<K>, ApplyError>
    where
        K: Resource + Serialize + DeserializeOwned + Clone + Debug,
    {
        let a = apply::apply(api, kind, self.uid, desired, live, cached).await?;
        let verb = match &a {
            Applied::Unchanged(_) => return Ok(a),
            Applied::Created(_) => "created",
            Applied::Updated(_) => "updated",
        };
        self.wrote(kind, format!("{verb} {kind} {}", self.name));
        Ok(a)
    }

    fn wrote(&mut self, kind: &str, change: String) {
        self.metrics.writes.with_label_values(&[kind]).inc();
        self.changes.push(change);
    }
}

pub async fn apply_children(
    apis: &Apis,
    v: &Validated,
    children: build::Children,
    observed: Observed,
    admin_keys: Option<&AdminKeys>,
    metrics: &Metrics,
) -> Result<AppliedChildren, ApplyError> {
    let mut w = Writer {
        uid: &v.uid,
        name: &v.name,
        metrics,
        changes: Vec::new(),
    };
    // Before the Deployment: its pods read their admin key from it. Rechecked while pods may
    // be waiting for it (no Deployment yet, or not every replica available).
    if let Some(keys) = admin_keys {
        let settled = observed
            .rollout
            .as_ref()
            .is_some_and(|r| r.available >= r.desired);
        for name in keys.ensure_secret(&apis.secrets, v, !settled).await? {
            w.wrote("Secret", format!("created Secret {name}"));
        }
    }
    w.apply(
        &apis.service,
        "Service",
        &children.service,
        observed.service,
        observed.from_cache,
    )
    .await?;
    // Before the Deployment: a new pod mounts it, and a knob moves only here.
    w.apply(
        &apis.settings,
        "ConfigMap",
        &children.settings,
        observed.settings,
        observed.from_cache,
    )
    .await?;
    if let Some(live) = &observed.deployment {
        let main_writes = matches!(children.replicas, build::Replicas::Keep { .. })
            && apply::would_write(&v.uid, &children.deployment, Some(live));
        if apply::controlled_by(live, &v.uid)
            && replicas::before_main(
                &apis.deployment,
                &v.namespace,
                &v.name,
                children.replicas,
                live,
                main_writes,
            )
            .await?
        {
            w.wrote("Deployment", format!("scaled Deployment {}", v.name));
        }
    }
    let dep = w
        .apply(
            &apis.deployment,
            "Deployment",
            &children.deployment,
            observed.deployment,
            observed.from_cache,
        )
        .await?;
    let dep = match dep {
        // The object as the next stages should see it: with its starting count.
        apply::Applied::Created(_) => {
            replicas::after_create(&apis.deployment, &v.namespace, &v.name, children.replicas)
                .await?
        }
        other => other.object().clone(),
    };
    match &children.pdb {
        Some(pdb) => {
            w.apply(
                &apis.pdb,
                "PodDisruptionBudget",
                pdb,
                observed.pdb,
                observed.from_cache,
            )
            .await?;
        }
        None => {
            let kind = "PodDisruptionBudget";
            if apply::delete_if_owned(&apis.pdb, kind, w.uid, observed.pdb.as_ref()).await? {
                let change = format!("deleted {kind} {} (one replica)", w.name);
                w.wrote(kind, change);
            }
        }
    }
    if let Some(np) = &children.network_policy {
        w.apply(
            &apis.network_policy,
            "NetworkPolicy",
            np,
            observed.network_policy,
            observed.from_cache,
        )
        .await?;
    }
    if let Some(sm) = &children.service_monitor {
        w.apply(
            &apis.service_monitor,
            "ServiceMonitor",
            sm,
            observed.service_monitor,
            false,
        )
        .await?;
    }
    if let Some(rule) = &children.prometheus_rule {
        w.apply(
            &apis.prometheus_rule,
            "PrometheusRule",
            rule,
            observed.prometheus_rule,
            false,
        )
        .await?;
    }
    let changes = w.changes;
    Ok(AppliedChildren {
        deployment: dep,
        changes,
    })
}

//! The reconcile pipeline: fetch → validate (pure) → build (pure) → apply (server-side apply,
//! one field manager) → update status. Decisions are made by the pure stages; this module only
//! moves data between them and the API server, and records Events and metrics.
//!
//! Status is written with a JSON merge patch guarded by `metadata.resourceVersion`, so a
//! concurrent writer of status (the SLO loop) can never be overwritten silently: the loser gets a
//! conflict and retries. Nothing is written when the computed status equals the stored one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::core::{DeserializeGuard, DynamicObject};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use sluice_api::{InferenceService, InferenceServiceStatus};
use tracing::{info, warn};

use crate::apply::{self, Applied};
use crate::build::{self, BuildOptions, service_monitor_resource};
use crate::effective;
use crate::error::{FetchError, ReconcileError, StatusError};
use crate::metrics::Metrics;
use crate::slo::{self, SloLoop};
use crate::status::{self, CondSpec, Rollout};
use crate::validate::{self, Validated};

/// Resync period when nothing happens: catches anything a missed watch event left behind.
const RESYNC: Duration = Duration::from_secs(300);

/// Shared state of every reconcile.
pub struct Context {
    pub client: Client,
    pub build: BuildOptions,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// The SLO loop's configuration and SLI history.
    pub slo: SloLoop,
    /// Consecutive transient failures per object, for exponential backoff.
    failures: Mutex<HashMap<ObjectRef<DeserializeGuard<InferenceService>>, u32>>,
}

impl Context {
    /// Creates the context.
    pub fn new(client: Client, build: BuildOptions, recorder: Recorder, metrics: Metrics) -> Self {
        Self {
            client,
            build,
            recorder,
            metrics,
            slo: SloLoop::default(),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Replaces the SLO loop (interval, Prometheus URL, sources, limits client).
    pub fn with_slo(mut self, slo: SloLoop) -> Self {
        self.slo = slo;
        self
    }

    fn failures(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<DeserializeGuard<InferenceService>>, u32>>
    {
        // A poisoned lock only means another reconcile panicked mid-update of a counter.
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Backoff after `failures` consecutive transient failures: 5 s, doubling, capped at 5 min.
pub fn backoff_delay(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(6);
    Duration::from_secs(5 * (1u64 << exp)).min(Duration::from_secs(300))
}

/// The controller's reconcile function.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<InferenceService>>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let result = match &obj.0 {
        Ok(isvc) => reconcile_service(isvc, &ctx).await,
        Err(invalid) => Err(malformed(invalid, &ctx).await),
    };
    ctx.metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => {
            ctx.metrics.reconciles.with_label_values(&["success"]).inc();
            ctx.failures().remove(&ObjectRef::from_obj(obj.as_ref()));
        }
        Err(e) => {
            ctx.metrics.reconciles.with_label_values(&["error"]).inc();
            ctx.metrics.errors.with_label_values(&[e.category()]).inc();
        }
    }
    result
}

/// The controller's error policy: permanent errors wait for the object to change; transient
/// ones retry with per-object exponential backoff.
pub fn error_policy(
    obj: Arc<DeserializeGuard<InferenceService>>,
    err: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    if err.is_permanent() {
        warn!(error = %err, category = err.category(), "permanent reconcile error; waiting for a change");
        return Action::await_change();
    }
    let mut failures = ctx.failures();
    let n = failures
        .entry(ObjectRef::from_obj(obj.as_ref()))
        .or_insert(0);
    *n = n.saturating_add(1);
    let delay = backoff_delay(*n);
    warn!(error = %err, category = err.category(), attempt = *n, retry_in = ?delay, "transient reconcile error");
    Action::requeue(delay)
}

async fn malformed(
    invalid: &kube::core::error_boundary::InvalidObject,
    ctx: &Context,
) -> ReconcileError {
    let name = invalid.metadata.name.clone().unwrap_or_default();
    let namespace = invalid.metadata.namespace.clone().unwrap_or_default();
    let err = ReconcileError::Malformed {
        namespace,
        name,
        message: invalid.error.clone(),
    };
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("sluice.dev/v1alpha1".into()),
        kind: Some("InferenceService".into()),
        name: invalid.metadata.name.clone(),
        namespace: invalid.metadata.namespace.clone(),
        uid: invalid.metadata.uid.clone(),
        ..Default::default()
    };
    publish(
        ctx,
        &reference,
        EventType::Warning,
        "MalformedObject",
        "Read",
        err.to_string(),
    )
    .await;
    err
}

async fn publish(
    ctx: &Context,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let ev = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1000).collect()),
        action: action.to_owned(),
        secondary: None,
    };
    // Events are best effort: failing to record one must not fail the reconcile.
    if let Err(e) = ctx.recorder.publish(&ev, reference).await {
        warn!(error = %e, "failed to publish event");
    }
}

/// What exists now, read before deciding anything.
struct Observed {
    deployment: Option<Deployment>,
    service: Option<Service>,
    pdb: Option<PodDisruptionBudget>,
    service_monitor: Option<DynamicObject>,
}

async fn get_opt<K>(
    api: &Api<K>,
    kind: &'static str,
    ns: &str,
    name: &str,
) -> Result<Option<K>, FetchError>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.map_err(|source| FetchError::Get {
        kind,
        namespace: ns.to_owned(),
        name: name.to_owned(),
        source,
    })
}

struct Apis {
    deployment: Api<Deployment>,
    service: Api<Service>,
    pdb: Api<PodDisruptionBudget>,
    service_monitor: Api<DynamicObject>,
    isvc: Api<InferenceService>,
}

impl Apis {
    fn new(client: &Client, ns: &str) -> Self {
        Self {
            deployment: Api::namespaced(client.clone(), ns),
            service: Api::namespaced(client.clone(), ns),
            pdb: Api::namespaced(client.clone(), ns),
            service_monitor: Api::namespaced_with(client.clone(), ns, &service_monitor_resource()),
            isvc: Api::namespaced(client.clone(), ns),
        }
    }
}

async fn fetch(
    apis: &Apis,
    ns: &str,
    name: &str,
    want_monitor: bool,
) -> Result<Observed, FetchError> {
    Ok(Observed {
        deployment: get_opt(&apis.deployment, "Deployment", ns, name).await?,
        service: get_opt(&apis.service, "Service", ns, name).await?,
        pdb: get_opt(&apis.pdb, "PodDisruptionBudget", ns, name).await?,
        service_monitor: if want_monitor {
            get_opt(&apis.service_monitor, "ServiceMonitor", ns, name).await?
        } else {
            None
        },
    })
}

async fn reconcile_service(
    isvc: &InferenceService,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let ns = isvc.namespace().unwrap_or_default();
    let apis = Apis::new(&ctx.client, &ns);
    let reference = isvc.object_ref(&());
    let generation = isvc.metadata.generation.unwrap_or(0);
    let old_status = isvc.status.as_ref();
    // Whole seconds: the API server stores condition times at that precision.
    let now =
        Time(jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap_or_default());

    let valid = match validate::validate(isvc) {
        Ok(v) => v,
        Err(e) => {
            let err = ReconcileError::from(e);
            let new = status::failed(
                old_status,
                generation,
                err.category(),
                &err.to_string(),
                &now,
            );
            if write_status(isvc, &apis, old_status, new, ctx).await? {
                publish(
                    ctx,
                    &reference,
                    EventType::Warning,
                    err.category(),
                    "Validate",
                    err.to_string(),
                )
                .await;
            }
            return Err(err);
        }
    };

    let want_monitor = matches!(
        ctx.build.monitoring,
        build::Monitoring::ServiceMonitor { .. }
    );
    let observed = fetch(&apis, &ns, &valid.name, want_monitor).await?;
    let mut eff = effective::derive(&valid, old_status.and_then(|s| s.effective.as_ref()));
    let observed_rollout = observed.deployment.as_ref().map(Rollout::of);
    let tick = slo::tick::run(
        &ctx.slo,
        &ctx.client,
        &ctx.metrics,
        &valid,
        eff.into(),
        observed_rollout.as_ref(),
        old_status,
        now.0.as_second() as f64,
    )
    .await;
    if let Some(t) = &tick {
        // The SLO loop's choice goes through the same clamping as a stored one.
        eff = effective::derive(&valid, Some(&t.effective));
    }
    let children = build::build(&valid, &eff, &ctx.build);

    let applied = match apply_children(&apis, &valid, children, observed, ctx).await {
        Ok(a) => a,
        Err(err) if err.is_permanent() => {
            let new = status::failed(
                old_status,
                generation,
                err.category(),
                &err.to_string(),
                &now,
            );
            if write_status(isvc, &apis, old_status, new, ctx).await? {
                publish(
                    ctx,
                    &reference,
                    EventType::Warning,
                    err.category(),
                    "Apply",
                    err.to_string(),
                )
                .await;
            }
            return Err(err);
        }
        Err(err) => return Err(err),
    };
    if !applied.changes.is_empty() {
        let note = format!("applied {}", applied.changes.join(", "));
        info!(isvc = %valid.name, namespace = %ns, "{note}");
        publish(ctx, &reference, EventType::Normal, "Applied", "Apply", note).await;
    }

    let rollout = Rollout::of(&applied.deployment);
    let mut new = status::reconciled(
        old_status,
        generation,
        eff.into(),
        build::endpoint(&valid),
        &rollout,
        &now,
    );
    let Some(tick) = tick else {
        write_status(isvc, &apis, old_status, new, ctx).await?;
        return Ok(Action::requeue(RESYNC));
    };
    if let Some(slo) = tick.slo {
        new.slo = Some(slo);
    }
    if let Some((met, reason, message)) = &tick.condition {
        status::set_condition_maybe(
            &mut new.conditions,
            CondSpec {
                type_: sluice_api::condition::SLO_MET,
                status: met.unwrap_or(false),
                reason,
                message: message.clone(),
            },
            *met,
            generation,
            &now,
        );
    }
    write_status(isvc, &apis, old_status, new, ctx).await?;
    for (action, class) in &tick.decisions {
        ctx.metrics
            .slo_decisions
            .with_label_values(&[*action, *class])
            .inc();
    }
    for e in tick.events {
        publish(ctx, &reference, e.type_, &e.reason, &e.action, e.note).await;
    }
    Ok(Action::requeue(tick.requeue.min(RESYNC)))
}

struct AppliedChildren {
    deployment: Deployment,
    /// Human-readable list of what was written, e.g. `created Deployment tiny`.
    changes: Vec<String>,
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

async fn apply_children(
    apis: &Apis,
    v: &Validated,
    children: build::Children,
    observed: Observed,
    ctx: &Context,
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
    note(&mut changes, &ctx.metrics, "Service", name, &svc);
    let dep = apply::apply(
        &apis.deployment,
        "Deployment",
        uid,
        &children.deployment,
        observed.deployment,
    )
    .await?;
    note(&mut changes, &ctx.metrics, "Deployment", name, &dep);

    match &children.pdb {
        Some(pdb) => {
            let a = apply::apply(&apis.pdb, "PodDisruptionBudget", uid, pdb, observed.pdb).await?;
            note(&mut changes, &ctx.metrics, "PodDisruptionBudget", name, &a);
        }
        None => {
            if apply::delete_if_owned(&apis.pdb, "PodDisruptionBudget", uid, observed.pdb.as_ref())
                .await?
            {
                ctx.metrics
                    .writes
                    .with_label_values(&["PodDisruptionBudget"])
                    .inc();
                changes.push(format!("deleted PodDisruptionBudget {name} (one replica)"));
            }
        }
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
        note(&mut changes, &ctx.metrics, "ServiceMonitor", name, &a);
    }
    Ok(AppliedChildren {
        deployment: dep.object().clone(),
        changes,
    })
}

/// Writes `new` if it differs from `old`. Returns whether it wrote.
async fn write_status(
    isvc: &InferenceService,
    apis: &Apis,
    old: Option<&InferenceServiceStatus>,
    new: InferenceServiceStatus,
    ctx: &Context,
) -> Result<bool, StatusError> {
    if old == Some(&new) {
        return Ok(false);
    }
    let name = isvc.name_any();
    let mut resource_version = isvc.resource_version();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let patch = json!({
            "metadata": { "resourceVersion": resource_version },
            "status": new,
        });
        let err = match apis
            .isvc
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => break,
            Err(e) => e,
        };
        let conflict = matches!(&err, kube::Error::Api(s) if s.code == 409);
        if !conflict || attempt >= STATUS_ATTEMPTS {
            return Err(StatusError::Patch {
                namespace: isvc.namespace().unwrap_or_default(),
                name,
                source: err,
            });
        }
        // A conflict from a change that left spec and status alone (labels, annotations) is
        // safe to retry on the fresh resourceVersion; anything else was decided on stale data
        // and goes back through a full reconcile.
        let fresh = apis
            .isvc
            .get(&name)
            .await
            .map_err(|source| StatusError::Patch {
                namespace: isvc.namespace().unwrap_or_default(),
                name: name.clone(),
                source,
            })?;
        if fresh.metadata.generation != isvc.metadata.generation || fresh.status.as_ref() != old {
            return Err(StatusError::Patch {
                namespace: isvc.namespace().unwrap_or_default(),
                name,
                source: err,
            });
        }
        resource_version = fresh.resource_version();
    }
    ctx.metrics.writes.with_label_values(&["Status"]).inc();
    Ok(true)
}

/// Status patches tried per reconcile when the object changed under us.
const STATUS_ATTEMPTS: u32 = 3;

#[cfg(test)]
mod tests {
    use super::backoff_delay;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff_delay(1), Duration::from_secs(5));
        assert_eq!(backoff_delay(2), Duration::from_secs(10));
        assert_eq!(backoff_delay(4), Duration::from_secs(40));
        assert_eq!(backoff_delay(7), Duration::from_secs(300));
        assert_eq!(backoff_delay(1000), Duration::from_secs(300));
    }
}

//! The reconcile pipeline, one stage per module: validate (pure) → [`observe`] (the only reads:
//! children, rollout, SLIs) → [`decide`] (pure: desired settings, the SLO tick) → build (pure,
//! [`crate::build`]) → [`apply`] (server-side apply, one field manager) → [`record`] (status)
//! → [`act`] (Events, metrics, `max_tokens` pushes to pods — only once status records the
//! decision). This module only moves data between the stages; it never branches on why the
//! reconcile ran. A validation or permanent apply failure takes the one failure path,
//! [`fail`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod act;
pub mod apply;
pub mod decide;
pub mod observe;
pub mod record;
pub mod replicas;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use sluice_api::InferenceService;
use tracing::{Instrument, info_span, warn};

use crate::admin_key::AdminKeys;
use crate::build::{self, BuildOptions};
use crate::error::ReconcileError;
use crate::metrics::{Metrics, Outcome};
use crate::slo::SloLoop;
use crate::status::{self, Rollout};
use crate::validate;
use observe::Apis;
pub use observe::ChildCache;

/// Shared state of every reconcile.
pub struct Context {
    pub client: Client,
    pub build: BuildOptions,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// The SLO loop's configuration and SLI history.
    pub slo: SloLoop,
    /// Image prefixes `spec.serving.image` may use besides the operator's own server images.
    pub allowed_server_images: Vec<String>,
    /// Derives the per-service admin keys (the operator holds an admin key seed); None leaves
    /// the admin API on the inference key, as a server run by hand has it.
    pub admin_keys: Option<Arc<AdminKeys>>,
    /// The controller's watch caches of the owned children, when it has them: the observe
    /// stage reads there instead of sending a GET per child per reconcile.
    pub children: Option<ChildCache>,
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
            allowed_server_images: Vec::new(),
            admin_keys: None,
            children: None,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Reads the owned children from these watch caches.
    pub fn with_child_cache(mut self, cache: ChildCache) -> Self {
        self.children = Some(cache);
        self
    }

    /// Allows `spec.serving.image` values under these prefixes.
    pub fn with_allowed_server_images(mut self, prefixes: Vec<String>) -> Self {
        self.allowed_server_images = prefixes;
        self
    }

    /// Gives every service its own admin key, derived from `keys`. The build options must say
    /// so too (`admin_key_id`), so the pods read it.
    pub fn with_admin_keys(mut self, keys: Arc<AdminKeys>) -> Self {
        self.admin_keys = Some(keys);
        self
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
            ctx.metrics
                .reconciles
                .with_label_values(&[Outcome::Success.as_str()])
                .inc();
            ctx.failures().remove(&ObjectRef::from_obj(obj.as_ref()));
        }
        Err(e) => {
            ctx.metrics
                .reconciles
                .with_label_values(&[Outcome::Error.as_str()])
                .inc();
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

/// One pass through the stages, traced as a `reconcile` span with a child per stage (exported
/// over OTLP when the operator has an endpoint), so a slow apiserver or Prometheus shows where.
#[tracing::instrument(
    name = "reconcile",
    skip_all,
    fields(namespace = %isvc.namespace().unwrap_or_default(), name = %isvc.name_any())
)]
async fn reconcile_service(
    isvc: &InferenceService,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let apis = Apis::new(&ctx.client, &isvc.namespace().unwrap_or_default());
    let old = isvc.status.as_ref();
    // Whole seconds: the API server stores condition times at that precision.
    let now =
        Time(jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap_or_default());
    let now_s = now.0.as_second() as f64;

    let valid = match validate::validate(isvc).and_then(|v| {
        validate::image_allowed(&v, &ctx.build, &ctx.allowed_server_images)?;
        Ok(v)
    }) {
        Ok(v) => v,
        Err(e) => return Err(fail(isvc, &apis, ctx, e.into(), "Validate", &now).await),
    };
    let observed = observe::observe(
        &apis,
        ctx.children.as_ref(),
        &ctx.slo,
        &valid,
        &ctx.build,
        now_s,
    )
    .instrument(info_span!("observe"))
    .await?;
    let decided = info_span!("decide")
        .in_scope(|| decide::decide(&valid, &observed, old, ctx.slo.interval, now_s));
    let children = build::build(&valid, &decided.effective, &ctx.build);
    let admin_keys = ctx.admin_keys.as_deref();
    let applied =
        match apply::apply_children(&apis, &valid, children, observed, admin_keys, &ctx.metrics)
            .instrument(info_span!("apply"))
            .await
        {
            Ok(a) => a,
            Err(err) if err.is_permanent() => {
                return Err(fail(isvc, &apis, ctx, err.into(), "Apply", &now).await);
            }
            Err(err) => return Err(err.into()),
        };
    let rollout = Rollout::of(&applied.deployment);
    let generation = isvc.metadata.generation.unwrap_or(0);
    let new = record::compose(
        old,
        generation,
        &decided,
        build::endpoint(&valid),
        &rollout,
        &now,
    );
    record::write_status(isvc, &apis, old, new, &ctx.metrics)
        .instrument(info_span!("status"))
        .await?;
    act::act(ctx, &isvc.object_ref(&()), &valid, &applied, &decided)
        .instrument(info_span!("act"))
        .await;
    Ok(Action::requeue(decided.requeue()))
}

/// The one failure path for errors only a spec change can fix: `Degraded` with the error in
/// status, and an Event when that status is new. Returns the error for the error policy.
async fn fail(
    isvc: &InferenceService,
    apis: &Apis,
    ctx: &Context,
    err: ReconcileError,
    stage: &str,
    now: &Time,
) -> ReconcileError {
    let old = isvc.status.as_ref();
    let generation = isvc.metadata.generation.unwrap_or(0);
    let new = status::failed(old, generation, err.category(), &err.to_string(), now);
    match record::write_status(isvc, apis, old, new, &ctx.metrics).await {
        Ok(true) => {
            publish(
                ctx,
                &isvc.object_ref(&()),
                EventType::Warning,
                err.category(),
                stage,
                err.to_string(),
            )
            .await;
            err
        }
        Ok(false) => err,
        // Status could not record it: retry the whole reconcile.
        Err(e) => e.into(),
    }
}

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

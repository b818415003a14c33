//! Act: what the reconcile does to the world besides its own objects, only after status has
//! recorded the decision — Events about what was applied and decided, the SLO metrics, and the
//! `max_tokens` push to the ready pods.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::EventType;
use tracing::info;

use super::apply::AppliedChildren;
use super::decide::Decided;
use super::{Context, publish};
use crate::slo::tick;
use crate::validate::Validated;

/// Announces and carries out what was decided. Never fails: each part reports its own trouble.
pub async fn act(
    ctx: &Context,
    reference: &ObjectReference,
    v: &Validated,
    applied: &AppliedChildren,
    decided: &Decided,
) {
    if !applied.changes.is_empty() {
        let note = format!("applied {}", applied.changes.join(", "));
        info!(isvc = %v.name, namespace = %v.namespace, "{note}");
        publish(ctx, reference, EventType::Normal, "Applied", "Apply", note).await;
    }
    // Deriving can only fail in the crypto library; then the push goes without credentials
    // (and is refused, reported as such) while the settings ConfigMap still carries the change.
    let admin = ctx
        .admin_keys
        .as_ref()
        .and_then(|k| match k.credentials(&v.namespace, &v.name) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "pushing settings without admin credentials");
                None
            }
        });
    let pushed = tick::act(
        &ctx.slo,
        &ctx.client,
        &ctx.metrics,
        v,
        decided.tick.as_ref(),
        admin.as_ref(),
    )
    .await;
    let decided_events = decided.tick.iter().flat_map(|t| t.events.iter().cloned());
    for e in decided_events.chain(pushed) {
        publish(ctx, reference, e.type_, &e.reason, &e.action, e.note).await;
    }
}

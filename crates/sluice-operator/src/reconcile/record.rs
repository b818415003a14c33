//! Record: the status write. Status is written with a JSON merge patch guarded by
//! `metadata.resourceVersion`, so a concurrent writer can never be overwritten silently: the
//! loser gets a conflict and retries. Nothing is written when the status is unchanged.

use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use sluice_api::{InferenceService, InferenceServiceStatus};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::decide::Decided;
use super::observe::Apis;
use crate::error::StatusError;
use crate::metrics::Metrics;
use crate::slo::news;
use crate::status::{self, CondSpec, Rollout};

/// The status after a successful apply: conditions from the rollout, the applied settings and,
/// when the SLO loop evaluated, its status and `SLOMet`. Pure.
pub fn compose(
    old: Option<&InferenceServiceStatus>,
    generation: i64,
    decided: &Decided,
    endpoint: String,
    rollout: &Rollout,
    now: &Time,
) -> InferenceServiceStatus {
    let mut new = status::reconciled(old, generation, decided.effective, endpoint, rollout, now);
    let Some(tick) = &decided.tick else {
        return new;
    };
    // An evaluation that is not news (see `slo::news`) leaves the stored one, and the SLOMet
    // condition that quotes it, as they are: a settled service costs no status writes.
    let stored = old.and_then(|s| s.slo.as_ref());
    if let (Some(stored), Some(fresh)) = (stored, &tick.slo)
        && !news::is_news(stored, fresh, now.0.as_second())
    {
        return new;
    }
    if let Some(slo) = &tick.slo {
        new.slo = Some(slo.clone());
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
            now,
        );
    }
    new
}

/// Writes `new` if it differs from `old`. Returns whether it wrote.
pub async fn write_status(
    isvc: &InferenceService,
    apis: &Apis,
    old: Option<&InferenceServiceStatus>,
    new: InferenceServiceStatus,
    metrics: &Metrics,
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
    metrics.writes.with_label_values(&["Status"]).inc();
    Ok(true)
}

/// Status patches tried per reconcile when the object changed under us.
const STATUS_ATTEMPTS: u32 = 3;

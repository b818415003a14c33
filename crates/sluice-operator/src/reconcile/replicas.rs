//! The Deployment's replica count, under a field manager of its own.
//!
//! The main apply never sends `spec.replicas` (see `build::deployment`). When Sluice sets the
//! count ([`Replicas::Set`]: its own choice, or `spec.replicas.count` from the scale
//! subresource), this manager applies it with force. When it does not ([`Replicas::Keep`]),
//! nothing is sent after creation, so an HPA, KEDA or `kubectl scale` owns the field alone.
//!
//! One hand-over is needed: a Deployment from an operator version whose main apply owned the
//! count. Were the main apply to drop a field it alone owns, the API server would delete it and
//! the Deployment would fall to one replica. So before the main apply writes such a Deployment,
//! this manager first co-owns the count at its live value — without force, so a concurrent
//! change by someone else is a conflict to retry, never overwritten.

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::build::Replicas;
use crate::error::ApplyError;

/// The field manager of `spec.replicas`.
pub const REPLICAS_MANAGER: &str = "sluice-operator-replicas";

/// An API failure on the Deployment `namespace/name`.
fn api_error(namespace: &str, name: &str) -> impl FnOnce(kube::Error) -> ApplyError {
    let (namespace, name) = (namespace.to_owned(), name.to_owned());
    move |source| ApplyError::Api {
        kind: "Deployment",
        namespace,
        name,
        source,
    }
}

/// Applies `spec.replicas = count` as [`REPLICAS_MANAGER`]; the Deployment as written.
async fn apply_count(
    api: &Api<Deployment>,
    name: &str,
    namespace: &str,
    count: i32,
    force: bool,
) -> Result<Deployment, ApplyError> {
    let patch = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": count},
    });
    let mut params = PatchParams::apply(REPLICAS_MANAGER);
    params.force = force;
    api.patch(name, &params, &Patch::Apply(&patch))
        .await
        .map_err(api_error(namespace, name))
}

fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Before the main apply of an existing Deployment: sets the count Sluice wants, or, when the
/// main apply is about to write (`main_writes`) a count Sluice does not set, co-owns the live
/// count so the write cannot delete it. Returns whether it wrote.
pub async fn before_main(
    api: &Api<Deployment>,
    namespace: &str,
    name: &str,
    want: Replicas,
    live: &Deployment,
    main_writes: bool,
) -> Result<bool, ApplyError> {
    match want {
        Replicas::Set(n) if live.spec.replicas != Some(to_i32(n)) => {
            apply_count(api, name, namespace, to_i32(n), true).await?;
            Ok(true)
        }
        Replicas::Set(_) => Ok(false),
        Replicas::Keep { .. } if main_writes => {
            // The value as of now, not as of a watch cache that may lag.
            let fresh = api
                .get_opt(name)
                .await
                .map_err(api_error(namespace, name))?;
            match fresh.and_then(|d| d.spec.replicas) {
                Some(count) => {
                    apply_count(api, name, namespace, count, false).await?;
                    Ok(true)
                }
                None => Ok(false),
            }
        }
        Replicas::Keep { .. } => Ok(false),
    }
}

/// After the main apply created the Deployment (at the API server's default of one replica):
/// the starting count. Returns the Deployment as written, for the stages after apply.
pub async fn after_create(
    api: &Api<Deployment>,
    namespace: &str,
    name: &str,
    want: Replicas,
) -> Result<Deployment, ApplyError> {
    let n = match want {
        Replicas::Set(n) | Replicas::Keep { start: n } => n,
    };
    apply_count(api, name, namespace, to_i32(n), true).await
}

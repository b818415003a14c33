//! Apply stage (thin): server-side apply of the built objects under one field manager, skipped
//! when the live object already matches (see [`crate::diff`]), and refusing to take over objects
//! another controller owns.

use std::fmt::Debug;

use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::diff;
use crate::error::ApplyError;

/// The one field manager the operator applies with.
pub const FIELD_MANAGER: &str = "sluice-operator";

/// What applying one object did.
#[derive(Debug)]
pub enum Applied<K> {
    /// Live object already matched; nothing written.
    Unchanged(K),
    /// Did not exist; created.
    Created(K),
    /// Existed and differed; updated.
    Updated(K),
}

impl<K> Applied<K> {
    /// The object as the API server now has it.
    pub fn object(&self) -> &K {
        match self {
            Self::Unchanged(k) | Self::Created(k) | Self::Updated(k) => k,
        }
    }

    /// Whether a write happened.
    pub fn wrote(&self) -> bool {
        !matches!(self, Self::Unchanged(_))
    }
}

/// Whether `obj` is controlled by the owner with `uid`.
pub fn controlled_by<K: Resource>(obj: &K, uid: &str) -> bool {
    obj.meta()
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

fn classify(kind: &'static str, namespace: &str, name: &str, e: kube::Error) -> ApplyError {
    match &e {
        kube::Error::Api(status) if matches!(status.code, 400 | 422) => ApplyError::Rejected {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            message: status.message.clone(),
        },
        _ => ApplyError::Api {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source: e,
        },
    }
}

/// Whether [`apply`] would write `desired` over `live` (as far as `live` tells: a cached copy
/// may lag). Pure.
pub fn would_write<K>(owner_uid: &str, desired: &K, live: Option<&K>) -> bool
where
    K: Resource + Serialize,
{
    let (Some(live), Ok(desired), Ok(value)) = (
        live,
        serde_json::to_value(desired),
        live.map(serde_json::to_value).transpose(),
    ) else {
        return true;
    };
    !controlled_by(live, owner_uid) || diff::needs_apply(&diff::with_hash(desired), value.as_ref())
}

/// Applies `desired` over `live` unless it already matches. `live` may come from a watch cache
/// (`cached`), which can lag by an event: then a write is only ever decided on a fresh read, so
/// a lagging cache costs a GET, never a needless write.
pub async fn apply<K>(
    api: &Api<K>,
    kind: &'static str,
    owner_uid: &str,
    desired: &K,
    live: Option<K>,
    cached: bool,
) -> Result<Applied<K>, ApplyError>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = desired.meta().name.clone().unwrap_or_default();
    let namespace = desired.meta().namespace.clone().unwrap_or_default();
    let serialize_err = |source| ApplyError::Serialize {
        kind,
        namespace: namespace.clone(),
        name: name.clone(),
        source,
    };
    let desired = diff::with_hash(serde_json::to_value(desired).map_err(serialize_err)?);
    let to_value = |live: &Option<K>| live.as_ref().map(serde_json::to_value).transpose();
    // Whether `live` is ours and already as wanted.
    let settled = |live: &Option<K>, value: &Option<serde_json::Value>| match (live, value) {
        (Some(l), Some(v)) => controlled_by(l, owner_uid) && !diff::needs_apply(&desired, Some(v)),
        _ => false,
    };
    let mut live = live;
    let mut live_value = to_value(&live).map_err(serialize_err)?;
    // A cached copy that is not settled is read afresh before anything is decided on it.
    if cached && !settled(&live, &live_value) {
        live = api
            .get_opt(&name)
            .await
            .map_err(|e| classify(kind, &namespace, &name, e))?;
        live_value = to_value(&live).map_err(serialize_err)?;
    }
    if let Some(l) = &live
        && !controlled_by(l, owner_uid)
    {
        return Err(ApplyError::NotOwned {
            kind,
            namespace,
            name,
        });
    }
    let existed = live.is_some();
    if settled(&live, &live_value)
        && let Some(live) = live
    {
        return Ok(Applied::Unchanged(live));
    }
    // Force: the operator is the authority over these fields; a user's `kubectl edit` took
    // ownership of them, and applying takes it back.
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied = match api.patch(&name, &params, &Patch::Apply(&desired)).await {
        Ok(applied) => applied,
        Err(kube::Error::Api(status)) if existed && status.code == 422 => {
            // Server-side apply merges keyed lists entry by entry. A hand edit that changed an
            // entry's key (a Service port number, a container port) leaves that entry, owned by
            // the editor, beside ours, and the union is invalid (e.g. two ports named `http`).
            // Put the whole spec back with a merge patch, which replaces lists outright, guarded
            // by the live resourceVersion; then apply again so the fields are ours.
            let repair = serde_json::json!({
                "metadata": {"resourceVersion": live_value.as_ref().and_then(|l| l["metadata"]["resourceVersion"].as_str())},
                "spec": desired["spec"],
            });
            let merge = PatchParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PatchParams::default()
            };
            api.patch(&name, &merge, &Patch::Merge(&repair))
                .await
                .map_err(|e| classify(kind, &namespace, &name, e))?;
            api.patch(&name, &params, &Patch::Apply(&desired))
                .await
                .map_err(|e| classify(kind, &namespace, &name, e))?
        }
        Err(e) => return Err(classify(kind, &namespace, &name, e)),
    };
    Ok(if existed {
        Applied::Updated(applied)
    } else {
        Applied::Created(applied)
    })
}

/// Deletes an owned object the current spec no longer wants (e.g. the PDB after scaling to one
/// replica). Objects the operator does not control are left alone. Returns whether it deleted.
pub async fn delete_if_owned<K>(
    api: &Api<K>,
    kind: &'static str,
    owner_uid: &str,
    live: Option<&K>,
) -> Result<bool, ApplyError>
where
    K: Resource + DeserializeOwned + Clone + Debug,
{
    let Some(live) = live else {
        return Ok(false);
    };
    if !controlled_by(live, owner_uid) {
        return Ok(false);
    }
    let name = live.meta().name.clone().unwrap_or_default();
    let namespace = live.meta().namespace.clone().unwrap_or_default();
    match api.delete(&name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(classify(kind, &namespace, &name, e)),
    }
}

//! The per-service admin-key Secret (see [`crate::admin_key`]): the pods read their admin key
//! from it; the operator creates it once and never reads it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

use super::child_meta;
use crate::validate::Validated;

/// Key of the admin key in the Secret.
pub const ADMIN_KEY_SECRET_KEY: &str = "admin-key";

/// Name of the service's admin-key Secret under the seed with fingerprint `key_id`.
pub fn admin_secret_name(v: &Validated, key_id: &str) -> String {
    format!("{}-sluice-admin-{key_id}", v.name)
}

/// The admin-key Secret holding `key` (derived from the seed with fingerprint `key_id`). Pure.
pub fn build_admin_secret(v: &Validated, key_id: &str, key: &str) -> Secret {
    let mut metadata = child_meta(v);
    metadata.name = Some(admin_secret_name(v, key_id));
    Secret {
        metadata,
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([(
            ADMIN_KEY_SECRET_KEY.to_owned(),
            key.to_owned(),
        )])),
        immutable: Some(true),
        ..Secret::default()
    }
}

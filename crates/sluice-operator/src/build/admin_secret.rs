//! The per-service admin Secrets (see [`crate::admin_key`] and [`crate::admin_tls`]): the pods
//! read their admin key from one and mount their admin TLS certificate and key from the other;
//! the operator creates each once and never reads them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

use super::child_meta;
use crate::admin_tls::AdminIdentity;
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

/// Name of the service's admin TLS Secret under the seed with fingerprint `key_id`.
pub fn admin_tls_secret_name(v: &Validated, key_id: &str) -> String {
    format!("{}-sluice-admin-tls-{key_id}", v.name)
}

/// The `kubernetes.io/tls` Secret holding the service's admin TLS identity. Pure.
pub fn build_admin_tls_secret(v: &Validated, key_id: &str, identity: &AdminIdentity) -> Secret {
    let mut metadata = child_meta(v);
    metadata.name = Some(admin_tls_secret_name(v, key_id));
    Secret {
        metadata,
        type_: Some("kubernetes.io/tls".into()),
        string_data: Some(BTreeMap::from([
            ("tls.crt".to_owned(), identity.cert_pem.clone()),
            ("tls.key".to_owned(), identity.key_pem.clone()),
        ])),
        immutable: Some(true),
        ..Secret::default()
    }
}

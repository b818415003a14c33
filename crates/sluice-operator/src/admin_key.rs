//! Per-service admin credentials. Each InferenceService's pods require their own admin key
//! (`SLUICE_ADMIN_KEY`) on the admin API, apart from any inference API key, so an inference
//! client can never change limits or models, and the operator never needs to read a Secret:
//! the key is derived (HMAC-SHA256 of `namespace/name` under a seed only the operator holds),
//! written once into a Secret the operator creates and owns (create-only, never read back), and
//! recomputed whenever the operator pushes settings. A restarted operator derives the same key.
//! The Secret's name carries the seed's [`AdminKeys::id`], so a new seed (a rotation, or a
//! chart re-render that made one) names new Secrets and rolls the pods onto them, instead of
//! leaving them on keys the operator no longer derives. The same seed derives each service's
//! admin TLS identity, which the operator pins ([`crate::admin_tls`]).

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use sha2::{Digest, Sha256};

use crate::admin_tls::{self, AdminIdentity, IdentityError};
use crate::build;
use crate::diff::hex;
use crate::error::ApplyError;
use crate::validate::Validated;

/// Fewer seed bytes than this are refused: the keys are only as strong as the seed.
pub const MIN_SEED_BYTES: usize = 16;

/// Derives per-service admin keys and remembers which Secrets exist.
pub struct AdminKeys {
    seed: Vec<u8>,
    /// [`AdminKeys::id`], derived once from the seed.
    id: String,
    /// `namespace/name` of the services whose Secret this process has seen created (or found),
    /// so a steady state sends no write per reconcile.
    ensured: Mutex<HashSet<String>>,
}

impl fmt::Debug for AdminKeys {
    /// Never prints the seed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminKeys").finish_non_exhaustive()
    }
}

/// How the operator reaches one service's admin API.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminCredentials {
    /// The bearer token.
    pub key: String,
    /// DER SubjectPublicKeyInfo the pods' admin certificate must carry (the TLS pin).
    pub tls_spki: Vec<u8>,
}

impl fmt::Debug for AdminCredentials {
    /// Never prints the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminCredentials").finish_non_exhaustive()
    }
}

/// The seed could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("failed to read the admin key seed {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the admin key seed {path} holds {len} bytes; at least {MIN_SEED_BYTES} are needed")]
    TooShort { path: String, len: usize },
}

impl AdminKeys {
    /// Keys under `seed` (surrounding whitespace, e.g. a trailing newline, ignored).
    pub fn new(seed: &[u8]) -> Option<Self> {
        let seed = seed.trim_ascii();
        (seed.len() >= MIN_SEED_BYTES).then(|| Self {
            seed: seed.to_vec(),
            id: hex(&Sha256::new()
                .chain_update(b"sluice admin key id\0")
                .chain_update(seed)
                .finalize()[..4]),
            ensured: Mutex::new(HashSet::new()),
        })
    }

    /// Keys under the seed in `path` (a mounted Secret).
    pub fn from_file(path: &Path) -> Result<Self, SeedError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| SeedError::Read {
            path: shown.clone(),
            source,
        })?;
        let len = bytes.trim_ascii().len();
        Self::new(&bytes).ok_or(SeedError::TooShort { path: shown, len })
    }

    /// A short public fingerprint of the seed (8 hex digits of a SHA-256 over a label and the
    /// seed): names the Secrets, reveals nothing usable about the seed.
    pub fn id(&self) -> String {
        self.id.clone()
    }

    /// The admin key of service `namespace/name`, as lowercase hex. Pure.
    pub fn key(&self, namespace: &str, name: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.seed)
            .expect("HMAC accepts keys of any length");
        mac.update(namespace.as_bytes());
        mac.update(b"/");
        mac.update(name.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// The Ed25519 seed of service `namespace/name`'s admin TLS key: HMAC-SHA256 under the
    /// seed, in a domain of its own so it never equals the admin key.
    fn tls_key_seed(&self, namespace: &str, name: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.seed)
            .expect("HMAC accepts keys of any length");
        mac.update(b"sluice admin tls\0");
        mac.update(namespace.as_bytes());
        mac.update(b"/");
        mac.update(name.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The admin TLS identity of service `namespace/name` (see [`crate::admin_tls`]). Pure.
    pub fn identity(&self, namespace: &str, name: &str) -> Result<AdminIdentity, IdentityError> {
        admin_tls::derive_identity(&self.tls_key_seed(namespace, name), namespace, name)
    }

    /// What the operator needs to reach service `namespace/name`'s admin API: its key and its
    /// pinned TLS public key.
    pub fn credentials(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<AdminCredentials, IdentityError> {
        Ok(AdminCredentials {
            key: self.key(namespace, name),
            tls_spki: self.identity(namespace, name)?.spki,
        })
    }

    /// Creates the service's admin Secrets (the key, the TLS identity) unless this process
    /// already knows they exist and `recheck` is false (the caller rechecks while pods may be
    /// waiting for them: someone may have deleted one, or a new service reuses a name). Only
    /// ever creates: an existing Secret of that name is left alone (never read, patched or
    /// adopted), so a CR cannot make the operator touch a Secret it did not create. Returns the
    /// names of the Secrets it created.
    pub async fn ensure_secret(
        &self,
        api: &Api<Secret>,
        v: &Validated,
        recheck: bool,
    ) -> Result<Vec<String>, ApplyError> {
        let id = format!("{}/{}", v.namespace, v.name);
        if !recheck && self.ensured().contains(&id) {
            return Ok(Vec::new());
        }
        let identity = self.identity(&v.namespace, &v.name)?;
        let secrets = [
            build::build_admin_secret(v, &self.id(), &self.key(&v.namespace, &v.name)),
            build::build_admin_tls_secret(v, &self.id(), &identity),
        ];
        let mut created = Vec::new();
        for secret in secrets {
            let name = secret.metadata.name.clone().unwrap_or_default();
            match api.create(&PostParams::default(), &secret).await {
                Ok(_) => created.push(name),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => {
                    return Err(ApplyError::Api {
                        kind: "Secret",
                        namespace: v.namespace.clone(),
                        name,
                        source: e,
                    });
                }
            }
        }
        self.ensured().insert(id);
        Ok(created)
    }

    fn ensured(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // A poisoned lock only means a panic mid-insert of a name; the set is still usable.
        self.ensured.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_per_service_and_differ_between_services_and_seeds() {
        let a = AdminKeys::new(b"0123456789abcdef\n").unwrap();
        let b = AdminKeys::new(b"fedcba9876543210").unwrap();
        assert_eq!(a.key("ns", "svc"), a.key("ns", "svc"));
        assert_eq!(a.key("ns", "svc").len(), 64);
        assert_ne!(a.key("ns", "svc"), a.key("ns", "other"));
        assert_ne!(a.key("ns", "svc"), a.key("other", "svc"));
        // The separator keeps `a/bc` and `ab/c` apart.
        assert_ne!(a.key("a", "bc"), a.key("ab", "c"));
        assert_ne!(a.key("ns", "svc"), b.key("ns", "svc"));
        assert_eq!(a.id(), a.id());
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id().len(), 8);
    }

    /// The derivation is pinned: changing it would lock an upgraded operator out of the pods
    /// that run with the keys the old one derived. (Python: `hmac.new(seed, b"team-a/chat",
    /// hashlib.sha256).hexdigest()`.)
    #[test]
    fn the_derivation_is_hmac_sha256_of_namespace_slash_name() {
        let k = AdminKeys::new(b"0123456789abcdef").unwrap();
        assert_eq!(
            k.key("team-a", "chat"),
            "394c7bc9efc49dbde3e9ea003efa93dc44bf84ed19a26b76f7a18db752fe9f65"
        );
    }

    #[test]
    fn short_seeds_are_refused() {
        assert!(AdminKeys::new(b"short").is_none());
        assert!(AdminKeys::new(b"   0123456789abcde   ").is_none());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("seed");
        std::fs::write(&p, "tiny").unwrap();
        assert!(matches!(
            AdminKeys::from_file(&p),
            Err(SeedError::TooShort { len: 4, .. })
        ));
        assert!(matches!(
            AdminKeys::from_file(&dir.path().join("missing")),
            Err(SeedError::Read { .. })
        ));
    }
}

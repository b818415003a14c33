//! TLS for the admin port: the certificate and key come from PEM files (the operator mounts a
//! per-service Secret; a standalone server can use any, cert-manager's included), and are
//! re-read when either file changes, so a renewed certificate takes effect on the next
//! handshake without a restart. A file that turns bad later is logged and the last good pair
//! keeps serving; a bad pair at start is an error, never a plain-text fallback.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// How often the certificate files are checked for a change. Kubelet updates a mounted Secret
/// within a minute or so; a few seconds more is noise.
pub const TLS_FILE_POLL: Duration = Duration::from_secs(5);

/// Loading a certificate or key failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("failed to read the TLS certificate {path}: {message}")]
    Certificate { path: String, message: String },
    #[error("failed to read the TLS private key {path}: {message}")]
    Key { path: String, message: String },
    #[error("failed to use the TLS key {key} with the certificate {cert}: {message}")]
    Pair {
        cert: String,
        key: String,
        message: String,
    },
}

/// The certificate and key file pair, and the provider that signs with the key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

fn provider() -> Arc<CryptoProvider> {
    // The process-wide provider when one is installed, else aws-lc-rs (the only one compiled).
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

impl TlsFiles {
    /// Reads and checks the pair: the chain is non-empty, the key loads and matches the leaf.
    pub fn load(&self) -> Result<CertifiedKey, TlsError> {
        let cert_path = self.cert.display().to_string();
        let key_path = self.key.display().to_string();
        let chain = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsError::Certificate {
                path: cert_path.clone(),
                message: e.to_string(),
            })?;
        if chain.is_empty() {
            return Err(TlsError::Certificate {
                path: cert_path,
                message: "no PEM CERTIFICATE block in it".into(),
            });
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| TlsError::Key {
            path: key_path.clone(),
            message: e.to_string(),
        })?;
        let pair = |message: String| TlsError::Pair {
            cert: cert_path.clone(),
            key: key_path.clone(),
            message,
        };
        let certified =
            CertifiedKey::from_der(chain, key, &provider()).map_err(|e| pair(e.to_string()))?;
        Ok(certified)
    }

    /// The files' modification times, to notice a change (a Secret update swaps a symlink,
    /// which changes the target's time as seen through the path).
    fn stamp(&self) -> Option<(SystemTime, SystemTime)> {
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        Some((modified(&self.cert)?, modified(&self.key)?))
    }
}

/// Serves whichever pair was loaded last.
#[derive(Debug)]
struct Reloading {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A poisoned lock only means a panic mid-swap of an Arc; the value is whole.
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// A TLS acceptor over `files`, and a task (spawned on the current runtime) that reloads them
/// every `poll` when they change. Fails when the pair cannot be used now.
pub fn acceptor(files: TlsFiles, poll: Duration) -> Result<TlsAcceptor, TlsError> {
    let first = files.load()?;
    let resolver = Arc::new(Reloading {
        current: RwLock::new(Arc::new(first)),
    });
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Pair {
            cert: files.cert.display().to_string(),
            key: files.key.display().to_string(),
            message: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    // The admin API is HTTP/1 (hyper's http1 builder serves every connection).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio::spawn(watch(files, resolver, poll));
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn watch(files: TlsFiles, resolver: Arc<Reloading>, poll: Duration) {
    let mut seen = files.stamp();
    let mut interval = tokio::time::interval(poll);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let stamp = files.stamp();
        if stamp == seen {
            continue;
        }
        // Read both files on a blocking thread: a network filesystem may stall.
        let reread = files.clone();
        match tokio::task::spawn_blocking(move || reread.load()).await {
            Ok(Ok(pair)) => {
                *resolver.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(pair);
                tracing::info!(cert = %files.cert.display(), "reloaded the admin TLS certificate");
                seen = stamp;
            }
            // Mid-update (one file written, not the other) or broken: keep the last good pair
            // and try again at the next change of either file.
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "kept the previous admin TLS certificate");
                seen = stamp;
            }
            Err(e) => tracing::warn!(error = %e, "failed to reload the admin TLS certificate"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> TlsFiles {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let files = TlsFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    #[test]
    fn a_good_pair_loads_and_bad_ones_say_which_file_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let a = pair(dir.path(), "a");
        let b = pair(dir.path(), "b");
        assert!(a.load().is_ok());

        let missing = TlsFiles {
            cert: dir.path().join("missing.crt"),
            key: a.key.clone(),
        };
        let e = missing.load().unwrap_err().to_string();
        assert!(
            e.contains("certificate") && e.contains("missing.crt"),
            "{e}"
        );

        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let e = TlsFiles {
            cert: not_pem.clone(),
            key: a.key.clone(),
        }
        .load()
        .unwrap_err()
        .to_string();
        assert!(e.contains("no PEM CERTIFICATE"), "{e}");
        let e = TlsFiles {
            cert: a.cert.clone(),
            key: not_pem,
        }
        .load()
        .unwrap_err()
        .to_string();
        assert!(e.contains("private key"), "{e}");

        // A key that is not the certificate's is refused, not served.
        let e = TlsFiles {
            cert: a.cert.clone(),
            key: b.key.clone(),
        }
        .load()
        .unwrap_err();
        assert!(matches!(e, TlsError::Pair { .. }), "{e}");
    }
}

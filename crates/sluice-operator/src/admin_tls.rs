//! TLS on the server pods' admin port, with nothing to manage: every InferenceService gets an
//! Ed25519 key pair derived from the operator's admin key seed (like its admin key, see
//! [`crate::admin_key`]) and a self-signed certificate over it, both deterministic, written
//! once into a create-only Secret the pods mount. The operator then reaches a pod's admin API
//! over TLS 1.3 and accepts the server only if it proves possession of that service's derived
//! key: the key is pinned, so there is no CA to run, no expiry to renew and no Secret to read
//! back, and a restarted operator derives the same pin. A new seed renames the Secret (by the
//! seed's fingerprint) and rolls the pods onto the new pair.
//!
//! Why pin rather than chain to a CA: pods are reached by IP, which no certificate issued
//! before scheduling can name, and a CA key held by the operator would be one more secret to
//! rotate. The pin authenticates exactly one service's pods, which is what the push needs.

use std::sync::Arc;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, Error as TlsError, SignatureScheme};

/// DNS name in the certificate (informational: the client verifies the pinned key, not names).
pub fn admin_dns_name(namespace: &str, name: &str) -> String {
    format!("{name}.{namespace}.sluice-admin")
}

/// One service's admin TLS identity: what its pods serve and what the operator pins.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminIdentity {
    /// PEM certificate (self-signed, Ed25519).
    pub cert_pem: String,
    /// PEM PKCS#8 private key.
    pub key_pem: String,
    /// DER SubjectPublicKeyInfo of the key: the pin.
    pub spki: Vec<u8>,
}

impl std::fmt::Debug for AdminIdentity {
    /// Never prints the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminIdentity")
            .field("spki", &crate::diff::hex(&self.spki))
            .finish_non_exhaustive()
    }
}

/// Deriving an identity failed (only a broken crypto library makes it fail).
#[derive(Debug, thiserror::Error)]
#[error("failed to derive the admin TLS identity of {namespace}/{name}: {message}")]
pub struct IdentityError {
    pub namespace: String,
    pub name: String,
    pub message: String,
}

/// The identity whose private key is the Ed25519 key with seed `key_seed` (32 secret bytes
/// the caller derives per service). Pure: the same inputs give byte-identical PEM, since
/// Ed25519 signatures are deterministic and the certificate's serial and validity are fixed.
pub fn derive_identity(
    key_seed: &[u8; 32],
    namespace: &str,
    name: &str,
) -> Result<AdminIdentity, IdentityError> {
    let err = |message: String| IdentityError {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        message,
    };
    let pair = Ed25519KeyPair::from_seed_unchecked(key_seed).map_err(|e| err(e.to_string()))?;
    let pkcs8 = pair.to_pkcs8().map_err(|e| err(e.to_string()))?;
    let pkcs8 = rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_ref().to_vec());
    let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)
        .map_err(|e| err(e.to_string()))?;
    let dns = admin_dns_name(namespace, name);
    let mut params =
        rcgen::CertificateParams::new(vec![dns.clone()]).map_err(|e| err(e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, dns);
    params.serial_number = Some(rcgen::SerialNumber::from(vec![1u8]));
    // Fixed, so the certificate is a pure function of the key; the pin never expires, and a
    // far-off notAfter keeps other clients (curl with --insecure and the like) from tripping.
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(9999, 12, 31);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.self_signed(&key).map_err(|e| err(e.to_string()))?;
    let spki = ParsedCertificate::try_from(cert.der())
        .map_err(|e| err(e.to_string()))?
        .subject_public_key_info()
        .as_ref()
        .to_vec();
    debug_assert_eq!(pair.public_key().as_ref().len(), 32);
    Ok(AdminIdentity {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        spki,
    })
}

/// Accepts a server only if its certificate carries the pinned key and it signs the TLS 1.3
/// handshake with it. Names, chains and validity dates are not consulted: the pin says it all.
#[derive(Debug)]
struct PinnedKey {
    spki: Vec<u8>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let presented = ParsedCertificate::try_from(end_entity)?.subject_public_key_info();
        if presented.as_ref() == self.spki.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(TlsError::General(
                "the admin certificate does not carry this service's pinned key".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        // The config below offers TLS 1.3 only; a TLS 1.2 handshake never gets here.
        Err(TlsError::General("TLS 1.2 is not offered".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        _cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        // Verified against the pin itself, not the certificate's key (which verify_server_cert
        // already matched): possession of the pinned key is the proof.
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &SubjectPublicKeyInfoDer::from(self.spki.as_slice()),
            dss,
            &self.algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A TLS 1.3 client configuration that trusts exactly the server holding the key of `spki`.
pub fn pinned_client_config(spki: &[u8]) -> Result<rustls::ClientConfig, TlsError> {
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let algorithms = provider.signature_verification_algorithms;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedKey {
            spki: spki.to_vec(),
            algorithms,
        }))
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_deterministic_and_per_seed() {
        let a = derive_identity(&[7; 32], "team-a", "chat").unwrap();
        let again = derive_identity(&[7; 32], "team-a", "chat").unwrap();
        assert_eq!(a, again, "byte-identical PEM from the same seed");
        let b = derive_identity(&[8; 32], "team-a", "chat").unwrap();
        assert_ne!(a.spki, b.spki);
        assert!(a.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(a.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        // Ed25519 SPKI: 12 bytes of algorithm header, 32 of key.
        assert_eq!(a.spki.len(), 44);
        assert!(!format!("{a:?}").contains("PRIVATE"));
    }
}

//! How the engine's HTTP clients reach a Prometheus-compatible API that is not a plain
//! `http://` endpoint: `https://` with the system's roots plus a custom CA bundle (rustls with
//! aws-lc-rs, the build's only provider, as kube's client requires; no OpenSSL), a bearer token
//! read from a file on every request (a projected ServiceAccount token rotates under a running
//! operator), basic auth with the password in a file, and extra headers (the tenant header of
//! Thanos, Cortex or Mimir).
//!
//! Credentials are only ever named by file: the operator mounts Secrets, nothing is inlined in
//! flags, values or the CRD.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Basic auth credentials: the user and the file holding the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    pub username: String,
    pub password_file: PathBuf,
}

/// TLS trust, credentials and headers for one API. The default is a plain client (system roots
/// for `https://`, no credentials).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connection {
    /// PEM bundle of CA certificates trusted besides the system's (a private or self-signed CA).
    pub ca_file: Option<PathBuf>,
    /// File holding a bearer token, read again for every request.
    pub bearer_token_file: Option<PathBuf>,
    /// Basic auth; exclusive with the bearer token.
    pub basic_auth: Option<BasicAuth>,
    /// Extra headers sent with every request, e.g. `X-Scope-OrgID: team-a`.
    pub headers: Vec<(String, String)>,
}

/// A connection setting could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("failed to read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to load CA bundle {path}: {message}")]
    Ca { path: PathBuf, message: String },
    #[error("failed to use header {name:?}: {message}")]
    Header { name: String, message: String },
    #[error("a bearer token and basic auth cannot both be set")]
    BothCredentials,
    #[error("failed to build the HTTP client: {0}")]
    Client(String),
}

fn read_secret(what: &'static str, path: &Path) -> Result<String, ConnectionError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
        .map_err(|source| ConnectionError::Read {
            what,
            path: path.to_path_buf(),
            source,
        })
}

fn sensitive(value: String) -> Result<HeaderValue, String> {
    let mut v = HeaderValue::try_from(value).map_err(|e| e.to_string())?;
    v.set_sensitive(true);
    Ok(v)
}

impl Connection {
    /// An HTTP client with this connection's TLS trust, basic auth and extra headers, and the
    /// given request timeout. The bearer token is not in it: see [`Connection::authorization`].
    pub fn client(&self, timeout: Duration) -> Result<reqwest::Client, ConnectionError> {
        self.build(timeout, None)
    }

    /// Like [`Connection::client`] with the bearer token read once, into every request: for a
    /// short-lived command (`sluice analyze`) rather than a process that outlives a rotation.
    pub fn client_with_token(&self, timeout: Duration) -> Result<reqwest::Client, ConnectionError> {
        self.build(timeout, self.authorization()?)
    }

    fn build(
        &self,
        timeout: Duration,
        authorization: Option<HeaderValue>,
    ) -> Result<reqwest::Client, ConnectionError> {
        if self.bearer_token_file.is_some() && self.basic_auth.is_some() {
            return Err(ConnectionError::BothCredentials);
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let header_err = |message: String| ConnectionError::Header {
                name: name.clone(),
                message,
            };
            let n = HeaderName::try_from(name.as_str()).map_err(|e| header_err(e.to_string()))?;
            if n == AUTHORIZATION {
                return Err(header_err(
                    "credentials go in the bearer-token or basic-auth settings".into(),
                ));
            }
            let v = HeaderValue::try_from(value.as_str()).map_err(|e| header_err(e.to_string()))?;
            headers.insert(n, v);
        }
        if let Some(b) = &self.basic_auth {
            use base64::Engine as _;
            let password = read_secret("basic-auth password file", &b.password_file)?;
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{password}", b.username));
            let value =
                sensitive(format!("Basic {token}")).map_err(|message| ConnectionError::Header {
                    name: "Authorization".into(),
                    message,
                })?;
            headers.insert(AUTHORIZATION, value);
        }
        if let Some(value) = authorization {
            headers.insert(AUTHORIZATION, value);
        }
        reqwest::Client::builder()
            .timeout(timeout)
            .default_headers(headers)
            .tls_backend_preconfigured(self.tls()?)
            .build()
            .map_err(|e| ConnectionError::Client(e.to_string()))
    }

    /// The `Authorization` header for the next request when a bearer token file is set, read
    /// now so a rotated token is picked up.
    pub fn authorization(&self) -> Result<Option<HeaderValue>, ConnectionError> {
        let Some(path) = &self.bearer_token_file else {
            return Ok(None);
        };
        let token = read_secret("bearer token file", path)?;
        sensitive(format!("Bearer {token}"))
            .map(Some)
            .map_err(|message| ConnectionError::Header {
                name: "Authorization".into(),
                message,
            })
    }

    fn tls(&self) -> Result<rustls::ClientConfig, ConnectionError> {
        let mut roots = rustls::RootCertStore::empty();
        // A machine without a system bundle still reaches a server whose CA is given.
        let (added, _ignored) =
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if let Some(path) = &self.ca_file {
            let ca_err = |message: String| ConnectionError::Ca {
                path: path.clone(),
                message,
            };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| ca_err(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| ca_err(e.to_string()))?;
            if certs.is_empty() {
                return Err(ca_err("no PEM certificates in it".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
            }
        } else if added == 0 {
            tracing::debug!("no system CA certificates found; https:// needs a CA file");
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ConnectionError::Client(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// The command-line flags of a [`Connection`] to Prometheus (the operator's and the CLI's, so
/// both spell them the same): TLS trust, credentials and headers for the Prometheus API (a Thanos querier, OpenShift
/// monitoring or a managed Prometheus). Credentials are files (mounted Secrets), never values.
#[cfg(feature = "clap")]
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConnectionArgs {
    /// PEM bundle of CA certificates trusted for an `https://` Prometheus, besides the system's.
    #[arg(long, env = "SLUICE_PROMETHEUS_CA_FILE")]
    pub prometheus_ca_file: Option<std::path::PathBuf>,
    /// File holding a bearer token for Prometheus, read again for every query, so a projected
    /// ServiceAccount token (`/var/run/secrets/kubernetes.io/serviceaccount/token`) keeps working
    /// as it rotates.
    #[arg(
        long,
        env = "SLUICE_PROMETHEUS_BEARER_TOKEN_FILE",
        conflicts_with = "prometheus_basic_auth_user"
    )]
    pub prometheus_bearer_token_file: Option<std::path::PathBuf>,
    /// Basic-auth user for Prometheus; the password is read from
    /// `--prometheus-basic-auth-password-file`.
    #[arg(
        long,
        env = "SLUICE_PROMETHEUS_BASIC_AUTH_USER",
        requires = "prometheus_basic_auth_password_file"
    )]
    pub prometheus_basic_auth_user: Option<String>,
    /// File holding the basic-auth password.
    #[arg(
        long,
        env = "SLUICE_PROMETHEUS_BASIC_AUTH_PASSWORD_FILE",
        requires = "prometheus_basic_auth_user"
    )]
    pub prometheus_basic_auth_password_file: Option<std::path::PathBuf>,
    /// Extra header on every Prometheus query, `Name=value` (repeatable), e.g. the tenant
    /// header `X-Scope-OrgID=team-a` of Cortex, Mimir or a Thanos tenancy proxy.
    #[arg(long = "prometheus-header", env = "SLUICE_PROMETHEUS_HEADERS", value_delimiter = ',', value_parser = parse_header)]
    pub prometheus_headers: Vec<(String, String)>,
}

#[cfg(feature = "clap")]
impl ConnectionArgs {
    /// The connection these flags describe.
    pub fn connection(&self) -> Connection {
        Connection {
            ca_file: self.prometheus_ca_file.clone(),
            bearer_token_file: self.prometheus_bearer_token_file.clone(),
            basic_auth: self
                .prometheus_basic_auth_user
                .clone()
                .zip(self.prometheus_basic_auth_password_file.clone())
                .map(|(username, password_file)| BasicAuth {
                    username,
                    password_file,
                }),
            headers: self.prometheus_headers.clone(),
        }
    }
}

/// Parses a `Name=value` header flag (the Prometheus and Jaeger header flags share it).
#[cfg(feature = "clap")]
pub fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected Name=value, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn misconfigurations_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let both = Connection {
            bearer_token_file: Some(file(dir.path(), "t", "x")),
            basic_auth: Some(BasicAuth {
                username: "u".into(),
                password_file: file(dir.path(), "p", "y"),
            }),
            ..Connection::default()
        };
        assert!(matches!(
            both.client(Duration::from_secs(1)),
            Err(ConnectionError::BothCredentials)
        ));
        let no_ca = Connection {
            ca_file: Some(file(dir.path(), "ca.pem", "not a certificate")),
            ..Connection::default()
        };
        let err = no_ca
            .client(Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("failed to load CA bundle"), "{err}");
        let auth_header = Connection {
            headers: vec![("Authorization".into(), "Bearer inline".into())],
            ..Connection::default()
        };
        assert!(auth_header.client(Duration::from_secs(1)).is_err());
        let missing = Connection {
            bearer_token_file: Some(dir.path().join("absent")),
            ..Connection::default()
        };
        let err = missing.authorization().unwrap_err().to_string();
        assert!(err.starts_with("failed to read bearer token file"), "{err}");
    }

    #[test]
    fn the_bearer_token_is_read_again_for_each_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path(), "token", "first\n");
        let c = Connection {
            bearer_token_file: Some(path.clone()),
            ..Connection::default()
        };
        assert_eq!(c.authorization().unwrap().unwrap(), "Bearer first");
        std::fs::write(&path, "second").unwrap();
        let v = c.authorization().unwrap().unwrap();
        assert_eq!(v, "Bearer second");
        assert!(v.is_sensitive());
    }
}

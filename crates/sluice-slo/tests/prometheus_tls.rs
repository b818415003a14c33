//! The Prometheus client through a real Prometheus served over TLS with a self-signed CA and
//! with basic auth (its own `--web.config.file`), and the bearer token and tenant header on the
//! wire (live tier: needs prometheus and openssl, which scripts/install-deps.sh installs).

use std::path::Path;
use std::process::Command;

use sluice_slo::source::{BasicAuth, Connection, PrometheusSource};
use sluice_slo::{Selector, Window};
use sluice_testkit::prometheus::Prometheus;

/// A CA and a server certificate for 127.0.0.1 signed by it, made with the openssl CLI.
fn certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=sluice test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

fn source(url: &str, connection: &Connection) -> PrometheusSource {
    PrometheusSource::connect(
        url,
        connection,
        &Selector::new(),
        None,
        Window::seconds(60),
        0.95,
    )
    .unwrap()
}

#[tokio::test]
#[ignore = "live tier: needs prometheus and openssl; scripts/test.sh runs it"]
async fn tls_with_a_private_ca_and_basic_auth_against_a_real_prometheus() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let read = |name: &str| std::fs::read(certs.path().join(name)).unwrap();
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let web = format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  sluice: {hash}\n"
    );
    let (crt, key) = (read("server.crt"), read("server.key"));
    let prom = Prometheus::start_with_web_config(
        &web,
        &[
            ("server.crt", crt.as_slice()),
            ("server.key", key.as_slice()),
        ],
    );
    let url = prom.https_url();
    let password = certs.path().join("password");
    std::fs::write(&password, "s3cret\n").unwrap();
    let ca = certs.path().join("ca.crt");
    let good = Connection {
        ca_file: Some(ca.clone()),
        basic_auth: Some(BasicAuth {
            username: "sluice".into(),
            password_file: password.clone(),
        }),
        headers: vec![("X-Scope-OrgID".into(), "team-a".into())],
        ..Connection::default()
    };
    source(&url, &good)
        .ping()
        .await
        .unwrap_or_else(|e| panic!("TLS + basic auth query failed: {e}\n{}", prom.log_tail()));

    // Without the CA the certificate is not trusted.
    let untrusted = Connection {
        ca_file: None,
        ..good.clone()
    };
    let err = source(&url, &untrusted).ping().await.unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // With the CA but a wrong password, or none, Prometheus refuses.
    let wrong = certs.path().join("wrong");
    std::fs::write(&wrong, "guess").unwrap();
    for bad in [
        Connection {
            basic_auth: Some(BasicAuth {
                username: "sluice".into(),
                password_file: wrong,
            }),
            ..good.clone()
        },
        Connection {
            basic_auth: None,
            ..good.clone()
        },
    ] {
        let err = source(&url, &bad).ping().await.unwrap_err();
        assert!(err.contains("401 Unauthorized"), "{err}");
    }
    // Plain http:// to a TLS port gets no answer it can read.
    let plain = url.replacen("https://", "http://", 1);
    assert!(source(&plain, &good).ping().await.is_err());
}

/// Prometheus's web config has no bearer tokens, so a loopback stand-in records what arrives:
/// the token from the file (re-read after rotation) and the tenant header.
#[tokio::test]
async fn bearer_token_from_a_rotating_file_and_extra_headers_reach_the_api() {
    use axum::Json;
    use axum::http::HeaderMap;
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/api/v1/query",
        axum::routing::any(move |headers: HeaderMap| {
            let log = log.clone();
            async move {
                let get = |k: &str| {
                    headers
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                };
                log.lock()
                    .unwrap()
                    .push((get("authorization"), get("x-scope-orgid")));
                Json(serde_json::json!({
                    "status": "success",
                    "data": {"resultType": "vector", "result": []}
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "first-token\n").unwrap();
    let c = Connection {
        bearer_token_file: Some(token.clone()),
        headers: vec![("X-Scope-OrgID".into(), "team-a".into())],
        ..Connection::default()
    };
    let s = source(&url, &c);
    s.ping().await.unwrap();
    std::fs::write(&token, "rotated-token").unwrap();
    s.ping().await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            ("Bearer first-token".to_string(), "team-a".to_string()),
            ("Bearer rotated-token".to_string(), "team-a".to_string()),
        ]
    );
}

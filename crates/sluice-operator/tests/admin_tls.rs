//! The admin API over TLS, end to end on a real `sluice-server`: the server serves the
//! identity the operator derives for a service, the operator's settings client reaches it only
//! through that service's pinned key (not another service's, not in plain text, not without
//! the admin key), and a certificate rotated on disk is picked up without a restart.

mod live;

use std::time::{Duration, Instant};

use sluice_contract::Quantization;
use sluice_contract::admin::{RuntimeSettings, SETTINGS_PATH, SettingsReport};
use sluice_operator::admin_key::{AdminCredentials, AdminKeys};
use sluice_operator::admin_tls::{AdminIdentity, pinned_client_config};
use sluice_operator::slo::{HttpSettingsClient, PodTarget, SettingsClient};
use sluice_testkit::free_port;

use live::{Server, server_binary};

fn write_identity(dir: &std::path::Path, id: &AdminIdentity) {
    // Written beside and renamed over, as a Secret volume update swaps files atomically.
    for (name, text) in [("tls.crt", &id.cert_pem), ("tls.key", &id.key_pem)] {
        let tmp = dir.join(format!(".{name}.new"));
        std::fs::write(&tmp, text).expect("write the identity");
        std::fs::rename(&tmp, dir.join(name)).expect("swap the identity in");
    }
}

/// `GET /admin/settings` through a client that trusts only `spki`.
async fn read_settings(url: &str, key: &str, spki: &[u8]) -> Result<SettingsReport, String> {
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(pinned_client_config(spki).expect("client config"))
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let resp = http
        .get(format!("{url}{SETTINGS_PATH}"))
        .bearer_auth(key)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    resp.json().await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "live tier: starts sluice-server; scripts/test.sh runs it"]
async fn settings_reach_the_admin_api_over_tls_only_through_the_services_pinned_key() {
    let keys = AdminKeys::new(b"an admin key seed for this test").expect("seed");
    let (ns, name) = ("team-a", "chat");
    let mine = keys.credentials(ns, name).expect("credentials");
    let identity = keys.identity(ns, name).expect("identity");
    assert_eq!(identity.spki, mine.tls_spki);
    let dir = tempfile::tempdir().expect("temp dir");
    write_identity(dir.path(), &identity);
    let admin_port = free_port();
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    let _server = Server::start(
        &server_binary(),
        &[
            "--admin-port",
            &admin_port.to_string(),
            "--admin-key",
            &mine.key,
            "--admin-tls-cert-file",
            cert.to_str().unwrap(),
            "--admin-tls-key-file",
            key.to_str().unwrap(),
        ],
    )
    .await;
    let https = format!("https://127.0.0.1:{admin_port}");
    let pod = |base_url: &str| PodTarget {
        name: "chat-0".into(),
        base_url: base_url.into(),
    };
    let client = HttpSettingsClient::default();
    let clamp = RuntimeSettings {
        max_tokens: 32,
        quantization: Quantization::F32,
    };

    // The operator's push, as the SLO loop makes it.
    client
        .set_settings(&pod(&https), clamp, Some(&mine))
        .await
        .expect("the push over TLS to the pinned key");
    let now = read_settings(&https, &mine.key, &mine.tls_spki)
        .await
        .expect("read back over TLS");
    assert_eq!(now.running.max_tokens, 32);

    // Another service's pin (the same key, to isolate the TLS check) is refused at handshake.
    let other = keys.credentials(ns, "other").expect("credentials");
    let wrong_pin = AdminCredentials {
        key: mine.key.clone(),
        tls_spki: other.tls_spki.clone(),
    };
    let err = client
        .set_settings(&pod(&https), clamp, Some(&wrong_pin))
        .await
        .expect_err("a server without the pinned key is not trusted");
    assert!(
        err.message.contains("pinned key"),
        "the refusal says why: {err}"
    );
    // Plain text to the TLS port gets nowhere.
    let plain = format!("http://127.0.0.1:{admin_port}");
    client
        .set_settings(&pod(&plain), clamp, Some(&mine))
        .await
        .expect_err("no plain HTTP on the admin port");
    // The right pin without the admin key is still refused by the server.
    let wrong_key = AdminCredentials {
        key: "not-the-admin-key".into(),
        tls_spki: mine.tls_spki.clone(),
    };
    let err = client
        .set_settings(&pod(&https), clamp, Some(&wrong_key))
        .await
        .expect_err("the admin key is still required");
    assert!(err.message.contains("401"), "{err}");

    // Rotation: a new pair swapped in on disk is served without a restart (the server checks
    // the files every few seconds); the old pin stops working, the new one starts.
    let rotated = keys.identity(ns, "rotated").expect("identity");
    write_identity(dir.path(), &rotated);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let new_pin = read_settings(&https, &mine.key, &rotated.spki).await;
        if new_pin.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated certificate was not picked up within 60 s: {new_pin:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        read_settings(&https, &mine.key, &mine.tls_spki)
            .await
            .is_err(),
        "the old pin no longer matches"
    );
}

//! The thin actuator for the run-time settings (`max_tokens`, quantization): `PUT
//! /admin/settings` on every ready server pod, so a clamp takes effect at once and a precision
//! switch starts at once, without a restart. The settings ConfigMap, which every pod re-reads
//! and a new pod starts from, makes the change durable; this push only saves the kubelet's
//! ConfigMap propagation delay (up to a minute or so).
//!
//! The HTTP call sits behind [`SettingsClient`] so the SLO loop is tested with a fake; pod
//! discovery uses the kube client. The push authenticates with the service's admin key
//! ([`crate::admin_key`]), never with its inference key: the operator reads no Secret. With
//! admin keys, pods serve their admin API over TLS and the push goes over TLS 1.3 to the
//! service's pinned key ([`crate::admin_tls`]), so neither the key nor the settings cross the
//! pod network in the clear, and nothing else can pose as the pod.

use sluice_contract::admin::{self, RuntimeSettings};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};

use crate::admin_key::AdminCredentials;
use crate::admin_tls::pinned_client_config;
use crate::build::{ADMIN_PORT, INSTANCE_LABEL};
use crate::validate::Validated;

/// One server pod to reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodTarget {
    /// Pod name, for messages.
    pub name: String,
    /// `http://IP:PORT`, or `https://IP:PORT` when pods serve their admin API over TLS.
    pub base_url: String,
}

/// Pushing settings to one pod failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to set the run-time settings on pod {pod}: {message}")]
pub struct SettingsPushError {
    /// Pod name.
    pub pod: String,
    /// What went wrong.
    pub message: String,
}

/// Sets a server's run-time settings.
#[async_trait]
pub trait SettingsClient: Send + Sync {
    /// `PUT {base_url}/admin/settings` with `settings`, with `admin`'s key as the bearer token
    /// and, over https, its pinned TLS key as the only server it trusts.
    async fn set_settings(
        &self,
        pod: &PodTarget,
        settings: RuntimeSettings,
        admin: Option<&AdminCredentials>,
    ) -> Result<(), SettingsPushError>;
}

/// A hung pod must not stall the loop.
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// [`SettingsClient`] over HTTP(S) with a short timeout.
#[derive(Debug, Clone)]
pub struct HttpSettingsClient {
    http: reqwest::Client,
}

impl Default for HttpSettingsClient {
    /// A client with a 5 s request timeout.
    fn default() -> Self {
        let http = reqwest::Client::builder()
            .timeout(PUSH_TIMEOUT)
            .build()
            // Building only fails when no TLS backend initialises; plain HTTP to pod IPs
            // needs none, so the unconfigured client is an equivalent fallback.
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { http }
    }
}

impl HttpSettingsClient {
    /// The client for one push: the shared plain one, or one that trusts only `admin`'s
    /// pinned key (a pin is per service, so a TLS client is per call; pushes are rare).
    fn client_for(
        &self,
        pod: &PodTarget,
        admin: Option<&AdminCredentials>,
    ) -> Result<reqwest::Client, String> {
        if !pod.base_url.starts_with("https://") {
            return Ok(self.http.clone());
        }
        let admin = admin.ok_or("an https admin API needs the service's pinned TLS key")?;
        let tls = pinned_client_config(&admin.tls_spki).map_err(|e| e.to_string())?;
        reqwest::Client::builder()
            .timeout(PUSH_TIMEOUT)
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| format!("failed to build the admin TLS client: {e}"))
    }
}

#[async_trait]
impl SettingsClient for HttpSettingsClient {
    async fn set_settings(
        &self,
        pod: &PodTarget,
        settings: RuntimeSettings,
        admin: Option<&AdminCredentials>,
    ) -> Result<(), SettingsPushError> {
        let err = |message: String| SettingsPushError {
            pod: pod.name.clone(),
            message,
        };
        let mut req = self
            .client_for(pod, admin)
            .map_err(err)?
            .put(format!("{}{}", pod.base_url, admin::SETTINGS_PATH))
            .json(&settings);
        if let Some(admin) = admin {
            req = req.bearer_auth(&admin.key);
        }
        // The error's source chain says why (a TLS pin mismatch, a refused connection).
        let resp = req
            .send()
            .await
            .map_err(|e| err(sluice_slo::error_chain(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(err(format!(
                "HTTP {status}: {}",
                body.chars().take(300).collect::<String>()
            )));
        }
        Ok(())
    }
}

/// Ready, running, not terminating server pods of the service, reached over https when `tls`.
/// Pure.
pub fn ready_targets(pods: &[Pod], tls: bool) -> Vec<PodTarget> {
    let scheme = if tls { "https" } else { "http" };
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let st = p.status.as_ref()?;
            let ready = st
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            let ip = st.pod_ip.as_deref().filter(|ip| !ip.is_empty())?;
            ready.then(|| PodTarget {
                name: p.metadata.name.clone().unwrap_or_default(),
                base_url: if ip.contains(':') {
                    format!("{scheme}://[{ip}]:{ADMIN_PORT}")
                } else {
                    format!("{scheme}://{ip}:{ADMIN_PORT}")
                },
            })
        })
        .collect()
}

/// What a push achieved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Pods that took the new settings.
    pub updated: Vec<String>,
    /// Pods (or lookups) that failed, with why.
    pub failed: Vec<String>,
}

impl PushReport {
    /// `2 pods updated` / `1 of 2 pods updated; failed: …`.
    pub fn describe(&self) -> String {
        let total = self.updated.len() + self.failed.len();
        if self.failed.is_empty() {
            format!(
                "{} of {total} ready pods took it at once",
                self.updated.len()
            )
        } else {
            format!(
                "{} of {total} ready pods took it at once; {}",
                self.updated.len(),
                self.failed.join("; ")
            )
        }
    }
}

/// Sets `settings` on every ready pod of `v`, authenticating with `admin` (over TLS to its
/// pinned key). Never fails as a whole: the settings ConfigMap carries them to every pod
/// anyway, so this is the fast path and failures are reported. (Without admin credentials, a
/// server that requires its inference key refuses the push: the operator does not read that
/// key.)
pub async fn push_settings(
    client: &Client,
    admin_api: &dyn SettingsClient,
    v: &Validated,
    settings: RuntimeSettings,
    admin: Option<&AdminCredentials>,
) -> PushReport {
    let mut report = PushReport::default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &v.namespace);
    let list = match pods
        .list(&ListParams::default().labels(&format!("{INSTANCE_LABEL}={}", v.name)))
        .await
    {
        Ok(l) => l.items,
        Err(e) => {
            report.failed.push(format!(
                "failed to list pods of {}/{}: {e}",
                v.namespace, v.name
            ));
            return report;
        }
    };
    // Pods built with admin credentials serve their admin API over TLS (build::deployment).
    for target in ready_targets(&list, admin.is_some()) {
        match admin_api.set_settings(&target, settings, admin).await {
            Ok(()) => report.updated.push(target.name),
            Err(e) => report.failed.push(e.to_string()),
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ready: &str, ip: Option<&str>, deleting: bool) -> Pod {
        let mut v = json!({
            "metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": ready}]},
        });
        if let Some(ip) = ip {
            v["status"]["podIP"] = json!(ip);
        }
        if deleting {
            v["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn only_ready_pods_with_an_ip_are_targets() {
        let pods = [
            pod("a", "True", Some("10.0.0.1"), false),
            pod("b", "False", Some("10.0.0.2"), false),
            pod("c", "True", None, false),
            pod("d", "True", Some("10.0.0.4"), true),
            pod("e", "True", Some("fd00::5"), false),
        ];
        assert_eq!(
            ready_targets(&pods, false),
            vec![
                PodTarget {
                    name: "a".into(),
                    base_url: "http://10.0.0.1:8001".into()
                },
                PodTarget {
                    name: "e".into(),
                    base_url: "http://[fd00::5]:8001".into()
                },
            ]
        );
        let tls: Vec<String> = ready_targets(&pods, true)
            .into_iter()
            .map(|t| t.base_url)
            .collect();
        assert_eq!(tls, ["https://10.0.0.1:8001", "https://[fd00::5]:8001"]);
    }
}

//! End-to-end tests against a real cluster (kind or k3d). Ignored by default (the cluster tier); they
//! use the current kubeconfig context and need cluster-admin (they install the CRD).
//!
//! ```sh
//! kind create cluster --name sluice          # or: k3d cluster create sluice
//! cargo test -p sluice-operator --test e2e -- --ignored --nocapture --test-threads=1
//! ```
//!
//! With `SLUICE_E2E_SERVER_IMAGE` set to a `sluice-server` image the cluster can pull (for kind:
//! `docker build -f docker/server.Dockerfile -t sluice-server:e2e . && kind load docker-image
//! sluice-server:e2e --name sluice`), the test also waits for the pods to become Ready.
//!
//! The operator runs in-process (namespace-scoped to a fresh namespace, no leader election), so
//! no operator image is needed.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, CustomResourceExt};
use serde_json::json;
use sluice_api::InferenceService;
use sluice_operator::cli::RunArgs;

const MANAGER: &str = "sluice-e2e";

fn example(name: &str) -> serde_json::Value {
    let path = format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Polls `check` every second until it returns `Some`, or fails after `timeout`.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = InferenceService::crd();
    let name = crd.metadata.name.clone().unwrap();
    crds.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("CRD applies");
    eventually("the CRD to be established", Duration::from_secs(60), || {
        let crds = crds.clone();
        let name = name.clone();
        async move {
            let crd = crds.get(&name).await.ok()?;
            crd.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        }
    })
    .await;
}

#[tokio::test]
#[ignore = "cluster tier: needs a kind/k3d cluster in the current kubeconfig; run with --ignored"]
async fn tiny_service_end_to_end() {
    let client = Client::try_default().await.expect("kubeconfig");
    install_crd(&client).await;

    let ns_name = format!("sluice-e2e-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            &ns_name,
            &PatchParams::apply(MANAGER),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns_name}}),
            ),
        )
        .await
        .expect("namespace");

    let server_image = std::env::var("SLUICE_E2E_SERVER_IMAGE").ok();
    let args = RunArgs {
        namespace: Some(ns_name.clone()),
        server_image: server_image
            .clone()
            .unwrap_or_else(|| "sluice-server:e2e".into()),
        server_cuda_image: "sluice-server:e2e-cuda".into(),
        allowed_server_images: Vec::new(),
        network_policy: false,
        monitoring: "annotations".into(),
        service_monitor_labels: Vec::new(),
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        leader_election: false,
        lease_name: "unused".into(),
        lease_namespace: ns_name.clone(),
        lease_duration_seconds: 15,
        identity: "e2e".into(),
        concurrency: 2,
        prometheus_url: None,
        allowed_prometheus_urls: Vec::new(),
        slo_interval: std::time::Duration::from_secs(15),
        log_json: false,
    };
    let operator = tokio::spawn(sluice_operator::run::run(args));

    let isvcs: Api<InferenceService> = Api::namespaced(client.clone(), &ns_name);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns_name);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns_name);
    isvcs
        .patch(
            "tiny",
            &PatchParams::apply(MANAGER),
            &Patch::Apply(example("tiny-cpu.yaml")),
        )
        .await
        .expect("tiny example applies");

    let dep = eventually("the Deployment", Duration::from_secs(60), || {
        let d = deployments.clone();
        async move { d.get_opt("tiny").await.ok().flatten() }
    })
    .await;
    let owner = &dep.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("InferenceService", Some(true))
    );
    assert!(services.get_opt("tiny").await.unwrap().is_some());
    eventually("status.observedGeneration", Duration::from_secs(60), || {
        let i = isvcs.clone();
        async move {
            let st = i.get("tiny").await.ok()?.status?;
            (st.observed_generation == Some(1) && st.effective.is_some()).then_some(())
        }
    })
    .await;

    // A spec change reaches the server args.
    let mut changed = example("tiny-cpu.yaml");
    changed["spec"]["serving"]["maxTokens"]["default"] = json!(100);
    isvcs
        .patch("tiny", &PatchParams::apply(MANAGER), &Patch::Apply(changed))
        .await
        .unwrap();
    eventually(
        "--max-tokens 100 in the Deployment",
        Duration::from_secs(60),
        || {
            let d = deployments.clone();
            async move {
                let dep = d.get("tiny").await.ok()?;
                let args = dep.spec.template.spec?.containers[0].args.clone()?;
                args.windows(2)
                    .any(|w| w[0] == "--max-tokens" && w[1] == "100")
                    .then_some(())
            }
        },
    )
    .await;

    if server_image.is_some() {
        eventually("Ready=True", Duration::from_secs(300), || {
            let i = isvcs.clone();
            async move {
                let st = i.get("tiny").await.ok()?.status?;
                st.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
                    .then_some(())
            }
        })
        .await;
    }

    // The schema rejects the invalid example outright.
    let err = isvcs
        .patch(
            "broken",
            &PatchParams::apply(MANAGER),
            &Patch::Apply(example("invalid-replicas.yaml")),
        )
        .await
        .expect_err("invalid example is rejected");
    let message = err.to_string();
    assert!(
        message.contains("replicas.min must not exceed replicas.max"),
        "{message}"
    );

    operator.abort();
    let _ = namespaces.delete(&ns_name, &DeleteParams::default()).await;
}

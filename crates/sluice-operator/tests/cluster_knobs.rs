//! Cluster tier, knobs: remedies that never make a breach worse, against the real control plane
//! (the real Deployment controller and ReplicaSets, kwok pods). After a real QueueBound
//! scale-out: leaving Auto keeps the replicas; deleting status changes nothing that runs; a
//! `max_tokens` change restarts no pod and a pod created later mounts the new value; with the
//! replicas knob withdrawn, `kubectl scale` on the InferenceService drives the Deployment
//! through the scale subresource, and an HPA can target it.
//!
//! ```sh
//! cargo test -p sluice-operator --test cluster_knobs -- --ignored
//! ```

mod cluster_support;
mod live;
#[path = "cluster_support/queue.rs"]
mod queue;
use cluster_support as cluster;

use std::collections::BTreeSet;
use std::time::Duration;

use cluster_support::eventually;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::ListParams;
use queue::QueueService;
use sluice_contract::admin::RuntimeSettings;
use sluice_testkit::Cluster;

const APPS: &str = "apps";
const SELECTOR: &str = "sluice.dev/inference-service=queue";

fn k(c: &Cluster, args: &[&str]) -> String {
    let mut all = vec!["-n", APPS];
    all.extend_from_slice(args);
    cluster::kubectl(c, &all)
}

fn merge(c: &Cluster, patch: &str) {
    k(
        c,
        &[
            "patch",
            "inferenceservice",
            "queue",
            "--type=merge",
            "-p",
            patch,
        ],
    );
}

/// What identifies the running pods: their uids and the ReplicaSets behind them.
async fn pods_and_sets(
    pods: &Api<Pod>,
    sets: &Api<ReplicaSet>,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let lp = ListParams::default().labels(SELECTOR);
    let uids = pods
        .list(&lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.uid)
        .collect();
    let rs = sets
        .list(&lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|r| r.metadata.name)
        .collect();
    (uids, rs)
}

async fn settings(maps: &Api<ConfigMap>) -> RuntimeSettings {
    let cm = maps.get("queue-settings").await.unwrap();
    serde_json::from_str(&cm.data.unwrap()["settings.json"]).unwrap()
}

/// The generation the operator has acted on, once it caught up with the spec.
async fn caught_up(isvcs: &Api<sluice_api::InferenceService>) {
    eventually(
        "the operator to act on the change",
        Duration::from_secs(60),
        || {
            let i = isvcs.clone();
            async move {
                let isvc = i.get("queue").await.ok()?;
                (isvc.status?.observed_generation? == isvc.metadata.generation?).then_some(())
            }
        },
    )
    .await;
}

/// Waits until the Deployment asks for and runs `n` Ready pods.
async fn running(deployments: &Api<Deployment>, n: i32) {
    eventually(&format!("{n} Ready pods"), Duration::from_secs(120), || {
        let d = deployments.clone();
        async move {
            let dep = d.get("queue").await.ok()?;
            let st = dep.status?;
            (dep.spec.replicas == Some(n)
                && st.observed_generation == dep.metadata.generation
                && st.replicas == Some(n)
                && st.ready_replicas == Some(n))
            .then_some(())
        }
    })
    .await;
}

/// Over several SLO intervals (2 s each), the Deployment keeps `replicas`.
async fn holds(deployments: &Api<Deployment>, replicas: i32, why: &str) {
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let dep = deployments.get("queue").await.unwrap();
        assert_eq!(dep.spec.replicas, Some(replicas), "{why}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "cluster tier: needs the control plane from scripts/build-control-plane.sh"]
async fn cluster_remedies_freeze_never_reset_and_never_restart_pods() {
    let c = Cluster::start();
    let QueueService {
        mut operator,
        deployments,
        isvcs,
        load,
        server: _server,
        prometheus: _prometheus,
        chart: _chart,
    } = QueueService::scaled_out(&c, APPS).await;
    let client = cluster::admin_client(&c).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), APPS);
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), APPS);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), APPS);
    running(&deployments, 2).await;
    let template = deployments.get("queue").await.unwrap().spec.template;
    let (pods_before, sets_before) = pods_and_sets(&pods, &sets).await;
    assert_eq!(pods_before.len(), 2);

    // Auto -> Advise during the breach: the two replicas stay (no drop to min).
    merge(&c, r#"{"spec": {"remediation": {"mode": "Advise"}}}"#);
    caught_up(&isvcs).await;
    holds(&deployments, 2, "leaving Auto dropped replicas").await;

    // Status deleted (a restore from backup, a GitOps re-create): what runs is read off the
    // children, so nothing changes, and status is rebuilt.
    k(
        &c,
        &[
            "patch",
            "inferenceservice",
            "queue",
            "--subresource=status",
            "--type=json",
            "-p",
            r#"[{"op": "remove", "path": "/status"}]"#,
        ],
    );
    eventually("status rebuilt", Duration::from_secs(60), || {
        let i = isvcs.clone();
        async move { i.get("queue").await.ok()?.status?.effective.map(|_| ()) }
    })
    .await;
    holds(&deployments, 2, "deleting status changed replicas").await;
    let isvc = isvcs.get("queue").await.unwrap();
    assert_eq!(isvc.status.unwrap().effective.unwrap().replicas, 2);

    // A max_tokens change: the settings ConfigMap moves, the pod template does not.
    merge(
        &c,
        r#"{"spec": {"serving": {"maxTokens": {"default": 128, "floor": 16}}}}"#,
    );
    caught_up(&isvcs).await;
    eventually(
        "maxTokens 128 in the ConfigMap",
        Duration::from_secs(30),
        || {
            let m = maps.clone();
            async move { (settings(&m).await.max_tokens == 128).then_some(()) }
        },
    )
    .await;
    let dep = deployments.get("queue").await.unwrap();
    assert_eq!(dep.spec.template, template, "the pod template moved");
    assert_eq!(
        pods_and_sets(&pods, &sets).await,
        (pods_before.clone(), sets_before.clone()),
        "a pod was restarted or a ReplicaSet created"
    );
    // A pod created later (one is deleted; its ReplicaSet replaces it) mounts the same
    // ConfigMap, whose file the server reads at start.
    let victim = pods
        .list(&ListParams::default().labels(SELECTOR))
        .await
        .unwrap()
        .items[0]
        .metadata
        .name
        .clone()
        .unwrap();
    k(&c, &["delete", "pod", &victim, "--wait=false"]);
    let fresh = eventually("a replacement pod", Duration::from_secs(60), || {
        let (p, victim, before) = (pods.clone(), victim.clone(), pods_before.clone());
        async move {
            let list = p.list(&ListParams::default().labels(SELECTOR)).await.ok()?;
            list.items.into_iter().find(|p| {
                p.metadata.name.as_deref() != Some(victim.as_str())
                    && !before.contains(p.metadata.uid.as_deref().unwrap_or(""))
            })
        }
    })
    .await;
    let volumes = fresh.spec.unwrap().volumes.unwrap_or_default();
    assert!(
        volumes.iter().any(|v| v
            .config_map
            .as_ref()
            .is_some_and(|cm| cm.name == "queue-settings")),
        "{volumes:?}"
    );
    assert_eq!(settings(&maps).await.max_tokens, 128);

    // The replicas knob withdrawn: kubectl scale on the InferenceService drives the Deployment
    // through the scale subresource. With the knob granted, the same command is refused.
    merge(
        &c,
        r#"{"spec": {"remediation": {"mode": "Auto", "knobs": ["Quantization", "MaxTokens"]}}}"#,
    );
    caught_up(&isvcs).await;
    holds(
        &deployments,
        2,
        "withdrawing the replicas knob changed replicas",
    )
    .await;
    k(&c, &["scale", "inferenceservice", "queue", "--replicas=3"]);
    running(&deployments, 3).await;
    let scale = k(
        &c,
        &[
            "get",
            "inferenceservice",
            "queue",
            "--subresource=scale",
            "-o",
            "json",
        ],
    );
    let scale: serde_json::Value = serde_json::from_str(&scale).unwrap();
    assert_eq!(scale["spec"]["replicas"], 3, "{scale}");
    assert_eq!(scale["status"]["replicas"], 3, "{scale}");
    assert_eq!(
        scale["status"]["selector"],
        "app.kubernetes.io/name=sluice-server,sluice.dev/inference-service=queue"
    );
    // With the knob granted beside a count, the API server refuses the change, saying why.
    let out = c
        .kubectl()
        .args([
            "-n",
            APPS,
            "patch",
            "inferenceservice",
            "queue",
            "--type=merge",
            "-p",
        ])
        .arg(r#"{"spec": {"remediation": {"knobs": ["Replicas"]}}}"#)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "granting the replicas knob beside a count was accepted"
    );
    assert!(
        text.contains("replicas.count is for kubectl scale"),
        "{text}"
    );

    // The example: an HPA owns a service's replicas through the scale subresource.
    let example = std::fs::read_to_string(cluster::repo().join("examples/hpa.yaml")).unwrap();
    let (ok, out) = cluster::kubectl_apply(&c, APPS, &example);
    assert!(ok, "{out}");
    eventually(
        "the example HPA to reach its target's scale",
        Duration::from_secs(120),
        || {
            let c = &c;
            async move {
                let out = c
                    .kubectl()
                    .args(["-n", APPS, "get", "hpa", "chat", "-o"])
                    .arg(r#"jsonpath={.status.conditions[?(@.type=="AbleToScale")].status}"#)
                    .output()
                    .ok()?;
                (String::from_utf8_lossy(&out.stdout).trim() == "True").then_some(())
            }
        },
    )
    .await;

    let stats = load.stop().await;
    eprintln!(
        "knobs: Advise and a deleted status kept 2 replicas; maxTokens 256 -> 128 with 0 pod \
         restarts ({} pods, {} ReplicaSets unchanged); kubectl scale -> 3 via /scale; load {} ok, \
         {} failed",
        pods_before.len(),
        sets_before.len(),
        stats.ok,
        stats.errors
    );
    assert!(operator.running(), "{}", operator.log_tail());
}

//! Cluster tier, faults: the operator keeps going through an apiserver restart without being
//! restarted itself, and when Prometheus goes away after it has scaled a service out, it holds
//! what runs and says why. Each test has its own control plane (one stops the apiserver), and
//! they take turns.
//!
//! ```sh
//! cargo test -p sluice-operator --test cluster_faults -- --ignored
//! ```

mod cluster_support;
mod live;
#[path = "cluster_support/queue.rs"]
mod queue;
use cluster_support as cluster;

use std::time::Duration;

use cluster_support::{Chart, Operator, admin_client, eventually, kubectl_apply, rolled_out, tiny};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams};
use queue::{QueueService, slo_met};
use serde_json::json;
use sluice_api::InferenceService;
use sluice_testkit::Cluster;

/// The tests take turns: each runs a control plane, and the second a loaded server too.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
#[ignore = "cluster tier: needs the control plane from scripts/build-control-plane.sh"]
async fn cluster_the_operator_rides_out_an_apiserver_restart() {
    let _turn = TURN.lock().await;
    let c = Cluster::start();
    let apps = "apps";
    cluster::namespace(&c, apps);
    let chart = Chart::install(
        &c,
        "sluice",
        "sluice-system",
        &[&format!("watchNamespace={apps}")],
    );
    let pod = chart.operator_pods(&c, 1).remove(0);
    let mut operator = Operator::start(&c, &chart, &pod, &[]);
    let pid = operator.pid();
    let client = admin_client(&c).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), apps);
    let isvcs: Api<InferenceService> = Api::namespaced(client.clone(), apps);
    let (ok, out) = kubectl_apply(&c, apps, &tiny("before").to_string());
    assert!(ok, "{out}");
    rolled_out(&deployments, "before", "500m", 1).await;

    // The apiserver goes away (watches break, requests fail), then comes back on the same
    // address with the same data.
    c.stop("kube-apiserver");
    // Let the operator notice: its watches and the lease renewal fail while it is down.
    tokio::time::sleep(Duration::from_secs(5)).await;
    c.start_component("kube-apiserver");

    // Without a restart, the operator re-watches: a new service and a change to an old one both
    // converge.
    let client = admin_client(&c).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), apps);
    let (ok, out) = kubectl_apply(&c, apps, &tiny("after").to_string());
    assert!(ok, "{out}");
    isvcs
        .patch(
            "before",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"serving": {"resources": {"cpu": "750m"}}}})),
        )
        .await
        .unwrap();
    rolled_out(&deployments, "after", "500m", 1).await;
    rolled_out(&deployments, "before", "750m", 1).await;
    assert!(
        operator.running(),
        "the operator exited:\n{}",
        operator.log_tail()
    );
    assert_eq!(operator.pid(), pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "cluster tier: needs the control plane from scripts/build-control-plane.sh"]
async fn cluster_losing_prometheus_after_a_scale_out_holds_replicas_and_says_why() {
    let _turn = TURN.lock().await;
    let c = Cluster::start();
    // Every part is bound: a dropped part stops (the server would take the load down with it).
    let QueueService {
        mut operator,
        deployments,
        isvcs,
        prometheus,
        load,
        server: _server,
        chart: _chart,
    } = QueueService::scaled_out(&c, "apps").await;
    // The Deployment's count moves before status records it (status is written by a later
    // pass); wait until status says the same 2 replicas, so `before` is the settled state.
    let before = eventually(
        "status to record the scale-out",
        Duration::from_secs(60),
        || {
            let i = isvcs.clone();
            async move {
                let effective = i.get("queue").await.ok()?.status?.effective?;
                (effective.replicas == 2).then_some(effective)
            }
        },
    )
    .await;

    // Prometheus goes away while the load (and the breach) goes on.
    drop(prometheus);
    let message = eventually(
        "SLOMet=Unknown after Prometheus is gone",
        Duration::from_secs(60),
        || {
            let i = isvcs.clone();
            async move {
                let (status, _, message) = slo_met(&i.get("queue").await.ok()?)?;
                (status == "Unknown").then_some(message)
            }
        },
    )
    .await;
    // Several intervals without metrics: nothing that runs changes.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let dep = deployments.get("queue").await.unwrap();
        assert_eq!(
            dep.spec.replicas,
            Some(2),
            "replicas changed without metrics"
        );
        let isvc = isvcs.get("queue").await.unwrap();
        assert_eq!(
            isvc.status.as_ref().unwrap().effective.as_ref(),
            Some(&before)
        );
        let (status, reason, _) = slo_met(&isvc).unwrap();
        assert_eq!(status, "Unknown", "{reason}");
    }
    // And status says why: every SLI is unknown because Prometheus cannot be queried.
    let isvc = isvcs.get("queue").await.unwrap();
    let unknown = isvc.status.unwrap().slo.unwrap().slis.unwrap().unknown;
    assert!(
        unknown
            .iter()
            .any(|u| u.contains("prometheus query failed")),
        "status.slo.slis.unknown does not say Prometheus failed: {unknown:?}"
    );
    let stats = load.stop().await;
    eprintln!(
        "without Prometheus: replicas held at 2; SLOMet=Unknown: {message}; unknown SLIs: {:?}; load: {} ok, {} failed",
        &unknown[..unknown.len().min(2)],
        stats.ok,
        stats.errors
    );
    assert!(operator.running(), "{}", operator.log_tail());
}

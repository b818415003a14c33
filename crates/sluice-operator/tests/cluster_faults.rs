//! Cluster tier, faults: the operator keeps going through an apiserver restart without being
//! restarted itself. Its own control plane, since the test stops the apiserver.
//!
//! ```sh
//! cargo test -p sluice-operator --test cluster_faults -- --ignored
//! ```

mod cluster_support;
use cluster_support as cluster;

use std::time::Duration;

use cluster_support::{Chart, Operator, admin_client, eventually, kubectl_apply};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use sluice_api::InferenceService;
use sluice_testkit::Cluster;

fn tiny(name: &str) -> Value {
    let mut v: Value = serde_yaml::from_str(
        &std::fs::read_to_string(cluster::repo().join("examples/tiny-cpu.yaml")).unwrap(),
    )
    .unwrap();
    v["metadata"]["name"] = json!(name);
    v
}

/// Waits until the Deployment `name` runs `replicas` Ready pods of its current template with
/// `cpu` requested.
async fn rolled_out(deployments: &Api<Deployment>, name: &str, cpu: &str, replicas: i32) {
    eventually(
        &format!("{name} rolled out with cpu {cpu}"),
        Duration::from_secs(120),
        || async move {
            let dep = deployments.get(name).await.ok()?;
            let got = dep.spec.template.spec.as_ref()?.containers[0]
                .resources
                .as_ref()?
                .requests
                .as_ref()?
                .get("cpu")?
                .0
                .clone();
            let st = dep.status.as_ref()?;
            (got == cpu
                && st.observed_generation == dep.metadata.generation
                && st.updated_replicas == Some(replicas)
                && st.ready_replicas == Some(replicas))
            .then_some(())
        },
    )
    .await;
}

#[tokio::test]
#[ignore = "cluster tier: needs the control plane from scripts/build-control-plane.sh"]
async fn the_operator_rides_out_an_apiserver_restart() {
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

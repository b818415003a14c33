//! Cluster tier: the chart's life cycle with the real `helm` against a fresh control plane (its
//! own, so that Helm is what installs the CRD).
//!
//! ```sh
//! cargo test -p sluice-operator --test cluster_helm -- --ignored
//! ```

mod cluster_support;
use cluster_support as cluster;

use cluster_support::{kubectl, kubectl_apply};
use serde_json::json;
use sluice_testkit::Cluster;

#[test]
#[ignore = "cluster tier: needs the control plane from scripts/build-control-plane.sh"]
fn cluster_helm_installs_upgrades_and_uninstalls_with_live_services() {
    let c = Cluster::start();
    let ns = "sluice-system";
    let chart = cluster::Chart::install(&c, "sluice", ns, &[]);
    // Helm installed the CRD from crds/, and the apiserver accepted it (structural schema, CEL
    // cost budget) and established it.
    cluster::wait_established(&c);
    // Everything the chart renders is there.
    for (kind, name) in [
        ("serviceaccount", chart.service_account.as_str()),
        ("deployment", chart.deployment.as_str()),
    ] {
        kubectl(&c, &["-n", ns, "get", kind, name]);
    }
    kubectl(&c, &["get", "clusterrole", "sluice"]);
    kubectl(&c, &["get", "clusterrolebinding", "sluice"]);
    kubectl(&c, &["-n", ns, "get", "role", "sluice-leader-election"]);
    let status = Cluster::check(c.helm().args(["status", "sluice", "-n", ns]));
    assert!(status.contains("STATUS: deployed"), "{status}");

    // Live InferenceServices across the upgrade and the uninstall.
    let apps = "apps";
    cluster::namespace(&c, apps);
    let mut isvc: serde_json::Value = serde_yaml::from_str(
        &std::fs::read_to_string(cluster::repo().join("examples/tiny-cpu.yaml")).unwrap(),
    )
    .unwrap();
    isvc["metadata"]["name"] = json!("live");
    let (ok, out) = kubectl_apply(&c, apps, &isvc.to_string());
    assert!(ok, "{out}");

    Cluster::check(
        c.helm()
            .arg("upgrade")
            .arg("sluice")
            .arg(cluster::repo().join("charts/sluice"))
            .args([
                "-n",
                ns,
                "--wait",
                "--timeout",
                "120s",
                "--set",
                "concurrency=8",
                "--set",
                "slo.interval=30s",
                "--set",
                "metrics.grafanaDashboard.enabled=true",
            ]),
    );
    // The dashboard ConfigMap carries the sidecar's label and the dashboard the code generates,
    // byte for byte (Helm's .Files.Get and the apiserver pass it through untouched).
    let maps: serde_json::Value = serde_json::from_str(&kubectl(
        &c,
        &[
            "-n",
            ns,
            "get",
            "configmap",
            "-l",
            "grafana_dashboard=1",
            "-o",
            "json",
        ],
    ))
    .unwrap();
    let items = maps["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{maps}");
    let shipped = items[0]["data"]["sluice-inferenceservice.json"]
        .as_str()
        .unwrap();
    assert_eq!(
        shipped.trim_end(),
        sluice_operator::dashboard::json().trim_end()
    );
    let upgraded = cluster::Chart::read(&c, "sluice", ns);
    assert!(
        upgraded.args.contains(&"--concurrency=8".to_owned()),
        "{:?}",
        upgraded.args
    );
    let history = Cluster::check(c.helm().args(["history", "sluice", "-n", ns]));
    assert!(history.lines().count() >= 3, "{history}");

    Cluster::check(c.helm().args([
        "uninstall",
        "sluice",
        "-n",
        ns,
        "--wait",
        "--timeout",
        "120s",
    ]));
    // The release is gone; the CRD (Helm never deletes crds/) and the user's services stay.
    let (ok, _) =
        Cluster::try_run(
            c.kubectl()
                .args(["-n", ns, "get", "deployment", &chart.deployment]),
        );
    assert!(!ok, "the operator Deployment survived helm uninstall");
    let (ok, _) = Cluster::try_run(c.kubectl().args(["get", "clusterrole", "sluice"]));
    assert!(!ok, "the ClusterRole survived helm uninstall");
    kubectl(&c, &["get", "crd", "inferenceservices.sluice.dev"]);
    kubectl(&c, &["-n", apps, "get", "inferenceservice", "live"]);

    // And it installs again over the existing CRD and services.
    cluster::Chart::install(&c, "sluice", ns, &[]);
}

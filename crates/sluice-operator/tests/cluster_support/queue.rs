//! A service that breaches for real on the cluster: the chart's operator (SLO interval 2 s), a
//! `queue` InferenceService in Auto mode (1..=3 replicas), a real `sluice-server` on loopback
//! standing in for its kwok pod (one sequence per batch), a real Prometheus scraping it under
//! the pod's name, and twelve closed-loop clients — until the operator names the bottleneck
//! QueueBound and scales out to 2 replicas through the real Deployment controller.
//!
//! Test binaries that use it declare `mod live;` and
//! `#[path = "cluster_support/queue.rs"] mod queue;` next to `mod cluster_support;`.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::json;
use sluice_api::InferenceService;
use sluice_testkit::Cluster;

use crate::cluster_support::{self as cluster, Chart, Operator, admin_client, eventually};
use crate::live;

/// `(status, reason, message)` of the `SLOMet` condition.
pub fn slo_met(isvc: &InferenceService) -> Option<(String, String, String)> {
    let c = isvc
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "SLOMet")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// The running scenario; everything stops when it drops.
pub struct QueueService {
    pub chart: Chart,
    pub operator: Operator,
    pub deployments: Api<Deployment>,
    pub isvcs: Api<InferenceService>,
    pub server: live::Server,
    pub prometheus: sluice_testkit::Prometheus,
    pub load: live::Load,
}

impl QueueService {
    /// Sets the scenario up in namespace `apps` and waits for the QueueBound scale-out to 2.
    pub async fn scaled_out(c: &Cluster, apps: &str) -> QueueService {
        cluster::namespace(c, apps);
        // Prometheus's address is in the chart's values before Prometheus exists: it can only
        // scrape the service's pod once that pod has a name.
        let prometheus_port = sluice_testkit::free_port();
        let chart = Chart::install(
            c,
            "sluice",
            "sluice-system",
            &[
                &format!("watchNamespace={apps}"),
                &format!("slo.prometheusUrl=http://127.0.0.1:{prometheus_port}"),
                "slo.interval=2s",
            ],
        );
        let pod = chart.operator_pods(c, 1).remove(0);
        let operator = Operator::start(c, &chart, &pod, &[]);
        let client = admin_client(c).await;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), apps);
        let isvcs: Api<InferenceService> = Api::namespaced(client.clone(), apps);
        let spec = json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "InferenceService",
            "metadata": {"name": "queue"},
            "spec": {
                "model": {"builtin": "tiny"},
                "replicas": {"min": 1, "max": 3},
                "serving": {"quantization": "f32", "quantizationLadder": ["f32", "q8_0", "q4_0"],
                            "maxTokens": {"default": 256, "floor": 16}},
                "slo": {"ttftP95": "250ms", "tpotAvg": "1s", "errorRateMax": 0.05,
                        "window": "30s"},
                "remediation": {"mode": "Auto"},
            },
        });
        let (ok, out) = cluster::kubectl_apply(c, apps, &spec.to_string());
        assert!(ok, "{out}");
        eventually(
            "the queue Deployment's pod Ready",
            Duration::from_secs(120),
            || {
                let d = deployments.clone();
                async move {
                    let st = d.get("queue").await.ok()?.status?;
                    (st.ready_replicas == Some(1)).then_some(())
                }
            },
        )
        .await;
        let pod_name = cluster::kubectl(
            c,
            &[
                "-n",
                apps,
                "get",
                "pods",
                "-l",
                "sluice.dev/inference-service=queue",
                "-o",
                "jsonpath={.items[0].metadata.name}",
            ],
        )
        .trim()
        .to_owned();

        // The kwok pod runs no container; a real sluice-server on loopback stands in for it,
        // scraped under the pod's namespace and name, so the operator's selector finds it as in
        // a cluster. One sequence per batch and twelve clients: the queue grows, TTFT breaches.
        let server = live::Server::start(
            &live::server_binary(),
            &[
                "--quantization",
                "f32",
                "--max-batch-size",
                "1",
                "--max-concurrent-requests",
                "64",
            ],
        )
        .await;
        let target = sluice_testkit::ScrapeTarget::pod(server.target(), apps, &pod_name);
        let prometheus = tokio::task::block_in_place(|| {
            sluice_testkit::Prometheus::start_on(prometheus_port, &[target])
        });
        tokio::task::block_in_place(|| prometheus.wait_targets_up(1, Duration::from_secs(30)));
        let load = live::Load::start(
            server.url(),
            live::LoadSpec {
                clients: 12,
                max_tokens: 48,
                prompt: "the queue is long and the batch is small",
            },
        );

        // The operator names the bottleneck and scales out; the real Deployment controller and
        // kwok bring the second pod up.
        eventually(
            "a QueueBound scale-out to 2 replicas",
            Duration::from_secs(180),
            || {
                let (d, i) = (deployments.clone(), isvcs.clone());
                async move {
                    let dep = d.get("queue").await.ok()?;
                    let isvc = i.get("queue").await.ok()?;
                    let (_, reason, _) = slo_met(&isvc)?;
                    (dep.spec.replicas == Some(2) && reason == "QueueBound").then_some(())
                }
            },
        )
        .await;
        QueueService {
            chart,
            operator,
            deployments,
            isvcs,
            server,
            prometheus,
            load,
        }
    }
}

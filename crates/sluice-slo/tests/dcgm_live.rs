//! GPU utilisation from the DCGM exporter through a real Prometheus, as clusters scrape it: the
//! exporter labels each GPU's series with the `namespace` and `pod` using it, and whether those
//! survive depends on the scrape job. Without `honorLabels` (the dcgm-exporter chart's default)
//! they clash with the exporter pod's own target labels and become `exported_namespace` and
//! `exported_pod`; with it they stay. The exporters here serve DCGM exporter 3.x's text format
//! (no GPU on this machine); Prometheus, the scrape jobs and the queries are real.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use sluice_contract::metrics::MODEL_INFO;
use sluice_slo::source::{PrometheusFleet, PrometheusSource};
use sluice_slo::{MetricsSource, Selector, Window};
use sluice_testkit::{Prometheus, ScrapeTarget};

/// One GPU's lines as dcgm-exporter writes them with Kubernetes pod mapping on.
fn gpu(gpu: u32, node: &str, namespace: &str, pod: &str, util: u32) -> String {
    let labels = format!(
        r#"gpu="{gpu}",UUID="GPU-5a1b2c3d-0000-1111-2222-33334444{gpu:04}",pci_bus_id="00000000:0{gpu}:00.0",device="nvidia{gpu}",modelName="NVIDIA H100 80GB HBM3",Hostname="{node}",DCGM_FI_DRIVER_VERSION="550.54.15",container="server",namespace="{namespace}",pod="{pod}""#
    );
    format!(
        "DCGM_FI_DEV_GPU_UTIL{{{labels}}} {util}\nDCGM_FI_DEV_FB_USED{{{labels}}} 61234\nDCGM_FI_DEV_FB_FREE{{{labels}}} 19683\n"
    )
}

fn page(gpus: &[String]) -> String {
    let mut text = String::from(
        "# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).\n# TYPE DCGM_FI_DEV_GPU_UTIL gauge\n\
         # HELP DCGM_FI_DEV_FB_USED Framebuffer memory used (in MiB).\n# TYPE DCGM_FI_DEV_FB_USED gauge\n\
         # HELP DCGM_FI_DEV_FB_FREE Framebuffer memory free (in MiB).\n# TYPE DCGM_FI_DEV_FB_FREE gauge\n",
    );
    for g in gpus {
        text.push_str(g);
    }
    text
}

/// Serves `body` as `/metrics` on a loopback port until the process ends; its address.
fn exporter(body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    address
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "live tier: needs prometheus; scripts/test.sh runs it"]
async fn gpu_utilisation_is_read_with_and_without_honor_labels() {
    // Node 1's exporter is scraped without honorLabels: its series arrive as exported_*.
    let node1 = exporter(page(&[
        gpu(0, "gpu-node-1", "prod", "chat-7d9f8c6b5-abcde", 60),
        gpu(1, "gpu-node-1", "prod", "chat-7d9f8c6b5-fghij", 80),
        // Another service's pod on the same node: never counted for chat.
        gpu(2, "gpu-node-1", "prod", "chatbot-5f6d7c8b9-zzzzz", 99),
    ]));
    // Node 2's with honorLabels: its series keep namespace and pod.
    let node2 = exporter(page(&[gpu(
        0,
        "gpu-node-2",
        "prod",
        "embed-6c7d8e9f0-kkkkk",
        30,
    )]));
    let mut targets = vec![
        ScrapeTarget::pod(node1, "gpu-operator", "dcgm-exporter-node1"),
        ScrapeTarget {
            honor_labels: true,
            ..ScrapeTarget::pod(node2, "gpu-operator", "dcgm-exporter-node2")
        },
    ];
    // The server pods themselves: the SLO reader only trusts a service whose pods report in
    // (their model info is its freshness signal).
    for pod in [
        "chat-7d9f8c6b5-abcde",
        "chat-7d9f8c6b5-fghij",
        "chatbot-5f6d7c8b9-zzzzz",
        "embed-6c7d8e9f0-kkkkk",
    ] {
        let info = format!(
            "# TYPE {MODEL_INFO} gauge\n{MODEL_INFO}{{model=\"m\",quantization=\"f16\"}} 1\n"
        );
        targets.push(ScrapeTarget::pod(exporter(info), "prod", pod));
    }
    let prom = tokio::task::block_in_place(|| {
        let p = Prometheus::start(&targets);
        p.wait_targets_up(targets.len(), Duration::from_secs(60));
        // Both exporters scraped, one of them with renamed labels.
        p.wait_for(
            "DCGM_FI_DEV_GPU_UTIL",
            "exported_pod",
            Duration::from_secs(60),
        );
        p.wait_for(
            "DCGM_FI_DEV_GPU_UTIL",
            "embed-6c7d8e9f0-kkkkk",
            Duration::from_secs(60),
        );
        p
    });
    let window = Window::seconds(60);
    let read = |name: &'static str| {
        let url = prom.url();
        async move {
            let sel = Selector::deployment_pods(Some("prod"), name).unwrap();
            PrometheusSource::new(&url, &sel, Some(&sel), window, 0.95)
                .unwrap()
                .read(now())
                .await
                .gpu_utilization_ratio
        }
    };
    let chat = read("chat").await;
    assert_eq!(
        chat.value(),
        Some(0.7),
        "chat's two GPUs, without honorLabels: {chat:?}"
    );
    let embed = read("embed").await;
    assert_eq!(
        embed.value(),
        Some(0.3),
        "embed's GPU, with honorLabels: {embed:?}"
    );

    // The operator's fleet read groups by service from the pod name, either way.
    let fleet = PrometheusFleet::new(
        &prom.url(),
        &Selector::new().eq("namespace", "prod").unwrap(),
        window,
        0.95,
    )
    .unwrap()
    .read(now())
    .await;
    assert_eq!(
        fleet.sli("prod", "chat").gpu_utilization_ratio.value(),
        Some(0.7)
    );
    assert_eq!(
        fleet.sli("prod", "embed").gpu_utilization_ratio.value(),
        Some(0.3)
    );
    assert_eq!(
        fleet.sli("prod", "chatbot").gpu_utilization_ratio.value(),
        Some(0.99)
    );
}

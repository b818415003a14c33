//! The Grafana dashboard the chart ships.
//! 1. Its two committed copies (`charts/sluice/files/grafana-dashboard.json`, which the chart's
//!    ConfigMap reads, and `docs/grafana-dashboard.json`) equal what the code generates.
//! 2. Live tier: every panel's query, both template variables and the decision annotation
//!    return data from a real Prometheus scraping two real `sluice-server` processes under an
//!    overload and the operator's own metrics endpoint, fed by the operator's real SLO tick
//!    (`decide` then `record`, as a reconcile runs them) reading that Prometheus, until the loop
//!    moves a knob.
//!
//! Regenerate the copies with
//! `SLUICE_UPDATE_DASHBOARD=1 cargo test -p sluice-operator --test dashboard`.

mod live;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use live::{Load, LoadSpec, Server, unix_now};
use serde_json::Value;
use sluice_api::{AppliedSettings, InferenceServiceStatus, Quantization};
use sluice_operator::dashboard;
use sluice_operator::http::{Health, serve};
use sluice_operator::metrics::Metrics;
use sluice_operator::slo::mapping;
use sluice_operator::slo::tick::{self, Observation};
use sluice_operator::status::Rollout;
use sluice_slo::{MetricsSource, PrometheusSource, Sli};
use sluice_testkit::{ScrapeTarget, free_port};

const COPIES: [&str; 2] = [
    "charts/sluice/files/grafana-dashboard.json",
    "docs/grafana-dashboard.json",
];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn committed_dashboards_match_the_generated_one() {
    let generated = dashboard::json();
    for copy in COPIES {
        let path = repo_root().join(copy);
        if std::env::var_os("SLUICE_UPDATE_DASHBOARD").is_some() {
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("failed to read {}: {e}", path.display()));
        assert!(
            committed == generated,
            "{copy} drifted from the dashboard in code; regenerate with \
             `SLUICE_UPDATE_DASHBOARD=1 cargo test -p sluice-operator --test dashboard`"
        );
    }
}

const NS: &str = "dash";
const SERVICE: &str = "chat";
/// Two pods of one Deployment, named as the Deployment controller names them.
const PODS: [&str; 2] = ["chat-7d9f8b6c5-q2x7z", "chat-7d9f8b6c5-m4k8p"];

/// The service as a user would declare it: a tight TTFT objective an overload breaks, and room
/// to scale so the loop has a knob to move.
fn service() -> sluice_operator::validate::Validated {
    let obj: sluice_api::InferenceService = serde_json::from_value(serde_json::json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "InferenceService",
        "metadata": {"name": SERVICE, "namespace": NS, "uid": "uid-chat"},
        "spec": {
            "model": {"builtin": "tiny"},
            "replicas": {"min": 1, "max": 6},
            "serving": {"quantization": "f32", "quantizationLadder": ["f32", "q8_0", "q4_0"]},
            "slo": {"ttftP95": "250ms", "tpotAvg": "1s", "errorRateMax": 0.05, "window": "30s"},
            "remediation": {"mode": "Auto"},
        },
    }))
    .unwrap();
    sluice_operator::validate::validate(&obj).unwrap()
}

/// The Deployment as the operator would observe it: both pods ready.
fn rollout(replicas: i32) -> Rollout {
    Rollout {
        desired: replicas,
        replicas,
        updated: replicas,
        ready: replicas,
        available: replicas,
        observed: true,
        stalled: None,
        selector: format!("app.kubernetes.io/instance={SERVICE}"),
    }
}

/// Puts concrete values where Grafana would: the namespace and service picked, the datasource.
fn fill(expr: &str) -> String {
    expr.replace("${service}", SERVICE)
        .replace("$service", SERVICE)
        .replace("$namespace", NS)
}

/// An instant query's result vector, or None while Prometheus cannot answer.
async fn query(http: &reqwest::Client, prom: &str, q: &str) -> Option<Vec<Value>> {
    let body: Value = http
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    assert_eq!(body["status"], "success", "{q}: {body}");
    body["data"]["result"].as_array().cloned()
}

/// True when a result holds at least one finite sample.
fn has_data(result: &[Value]) -> bool {
    result.iter().any(|s| {
        s["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(f64::is_finite)
    })
}

/// Waits (generously) until `q` returns finite data; panics naming the panel otherwise.
async fn wait_for_data(http: &reqwest::Client, prom: &str, what: &str, q: &str) -> Vec<Value> {
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < Duration::from_secs(60) {
        if let Some(r) = query(http, prom, q).await {
            if has_data(&r) {
                return r;
            }
            last = Some(r);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{what}: no data within 60 s from {q}\nlast answer: {last:?}");
}

#[ignore = "live tier: needs the prometheus binary; scripts/test.sh runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_panel_returns_data_from_real_servers_and_the_real_loop() {
    let bin = live::server_binary();
    // One sequence per batch: twelve clients per pod queue up and break the TTFT objective.
    let overloaded = ["--quantization", "f32", "--max-batch-size", "1"];
    let servers = [
        Server::start(&bin, &overloaded).await,
        Server::start(&bin, &overloaded).await,
    ];
    // The operator's metrics endpoint, serving the registry the SLO tick below writes.
    let metrics = Metrics::new().unwrap();
    let operator_port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], operator_port).into();
    let health = Arc::new(Health::default());
    tokio::spawn(serve(addr, metrics.clone(), health));
    let mut targets: Vec<ScrapeTarget> = servers
        .iter()
        .zip(PODS)
        .map(|(s, pod)| ScrapeTarget::pod(s.target(), NS, pod))
        .collect();
    targets.push(ScrapeTarget::operator(
        format!("127.0.0.1:{operator_port}"),
        "sluice-system",
        "sluice-6b8f9c7d5-x9z2k",
    ));
    let prom = tokio::task::block_in_place(|| sluice_testkit::Prometheus::start(&targets));
    tokio::task::block_in_place(|| prom.wait_targets_up(3, Duration::from_secs(60)));
    let prom_url = prom.url();

    // Load, and one request the server refuses, so the error panels have a reason to show.
    let loads: Vec<Load> = servers
        .iter()
        .map(|s| {
            Load::start(
                s.url(),
                LoadSpec {
                    clients: 12,
                    max_tokens: 32,
                    prompt: "a dashboard is only as good as its queries",
                },
            )
        })
        .collect();
    let http = reqwest::Client::new();
    let refused = http
        .post(format!("{}/generate", servers[0].url()))
        .json(&serde_json::json!({"prompt": "", "max_tokens": 0}))
        .send()
        .await
        .unwrap();
    assert!(refused.status().is_client_error(), "{}", refused.status());

    // The operator's SLO tick, as a reconcile runs it, until it moves a knob.
    let v = service();
    let eff = AppliedSettings {
        replicas: 2,
        quantization: Quantization::F32,
        max_tokens: v.serving.max_tokens.default,
    };
    let source = PrometheusSource::new(
        &prom_url,
        &mapping::selector(&v).unwrap(),
        None,
        mapping::window(&v),
        0.95,
    )
    .unwrap();
    let mut history: Vec<Sli> = Vec::new();
    let mut status: Option<InferenceServiceStatus> = None;
    let mut moved = None;
    let start = Instant::now();
    while moved.is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the SLO loop never moved a knob under the overload; last status: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = unix_now();
        history.push(source.read(now).await);
        let observation = Observation::Read {
            history: history.clone(),
        };
        let t = tick::decide(
            Duration::from_secs(1),
            &v,
            eff,
            Some(&rollout(2)),
            status.as_ref(),
            &observation,
            now,
        )
        .expect("the loop is on");
        tick::record(&metrics, &v, Some(&t));
        moved = t.decisions.iter().find(|(a, _)| *a != "hold").copied();
        status = Some(InferenceServiceStatus {
            slo: t.slo.clone(),
            ..InferenceServiceStatus::default()
        });
    }
    eprintln!("the loop moved {moved:?}");

    let d = dashboard::dashboard();
    let mut checked = 0;
    for panel in d["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        for t in panel["targets"].as_array().unwrap() {
            let q = fill(t["expr"].as_str().unwrap());
            let r = wait_for_data(&http, &prom_url, title, &q).await;
            eprintln!("{title}: {} series from {q}", r.len());
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} queries");

    // The annotation: the knob move shows, labelled with the action.
    let ann = &d["annotations"]["list"][1];
    let r = wait_for_data(
        &http,
        &prom_url,
        "decision annotation",
        &fill(ann["expr"].as_str().unwrap()),
    )
    .await;
    let (action, _) = moved.unwrap();
    assert!(
        r.iter().any(|s| s["metric"]["action"] == action),
        "annotation series {r:?} lack action {action}"
    );

    // The template variables, as Grafana runs them: label_values() through the label-values
    // API, query_result() as an instant query whose series the variable's regex cuts.
    let vars = d["templating"]["list"].as_array().unwrap();
    let ns_query = vars[1]["query"]["query"].as_str().unwrap();
    let metric = ns_query
        .strip_prefix("label_values(")
        .and_then(|s| s.strip_suffix(", namespace)"))
        .unwrap_or_else(|| panic!("unexpected namespace variable {ns_query}"));
    let values: Value = http
        .get(format!("{prom_url}/api/v1/label/namespace/values"))
        .query(&[("match[]", metric)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        values["data"].as_array().unwrap().iter().any(|n| n == NS),
        "{values}"
    );
    let svc_query = vars[2]["query"]["query"].as_str().unwrap();
    let inner = svc_query
        .strip_prefix("query_result(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap();
    let r = wait_for_data(&http, &prom_url, "service variable", &fill(inner)).await;
    let label = sluice_slo::promql::SERVICE_LABEL;
    assert!(
        r.iter().any(|s| s["metric"][label] == SERVICE),
        "service variable found {r:?}"
    );
    assert_eq!(
        vars[2]["regex"].as_str().unwrap(),
        format!("/{label}=\"([^\"]+)\"/")
    );

    for load in loads {
        load.stop().await;
    }
}

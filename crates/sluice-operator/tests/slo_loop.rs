//! The SLO loop inside the real reconcile, against the in-memory API server, with canned SLIs
//! (a fake `SourceFactory`) and a fake limits client: Auto acts through the Deployment's count
//! and the settings ConfigMap (and pushes the run-time settings to ready pods), Advise only
//! reports, Off reads nothing, unknown metrics never scale, the CR spec is never written, and
//! what runs is read from the children, never from status.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use http::Method;
use kube::core::DeserializeGuard;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};
use sluice_api::InferenceService;
use sluice_contract::Quantization;
use sluice_contract::admin::RuntimeSettings;
use sluice_operator::admin_key::AdminCredentials;
use sluice_operator::build::{BuildOptions, Monitoring};
use sluice_operator::metrics::Metrics;
use sluice_operator::reconcile::{Context, reconcile};
use sluice_operator::slo::{PodTarget, SettingsClient, SettingsPushError, SloLoop, SourceFactory};
use sluice_slo::{MemorySli, MetricsSource, Selector, Sli, SliValue, UnixSeconds, Window};
use support::FakeApi;

const ISVC: &str = "/apis/sluice.dev/v1alpha1/namespaces/demo/inferenceservices/tiny";
const DEPLOY: &str = "/apis/apps/v1/namespaces/demo/deployments/tiny";
const SETTINGS: &str = "/api/v1/namespaces/demo/configmaps/tiny-settings";
const PODS: &str = "/api/v1/namespaces/demo/pods";

/// Canned SLIs: every read returns the same shape, stamped with the read time.
#[derive(Clone)]
struct Canned(Arc<dyn Fn(UnixSeconds) -> Sli + Send + Sync>);

#[async_trait]
impl MetricsSource for Canned {
    async fn read(&self, now: UnixSeconds) -> Sli {
        (self.0)(now)
    }
}

/// Records which Prometheus URL and selector each source was built for.
struct FakeSources {
    sli: Canned,
    built: Mutex<Vec<(String, String, u64)>>,
}

impl SourceFactory for FakeSources {
    fn source(
        &self,
        url: &str,
        selector: &Selector,
        window: Window,
    ) -> Result<Arc<dyn MetricsSource>, String> {
        self.built
            .lock()
            .unwrap()
            .push((url.to_owned(), selector.render(), window.as_secs()));
        Ok(Arc::new(self.sli.clone()))
    }
}

struct FakeSettings {
    calls: Mutex<Vec<(String, RuntimeSettings)>>,
    /// The service's stored status at the moment of each push.
    status_at_push: Mutex<Vec<Value>>,
    api: FakeApi,
}

#[async_trait]
impl SettingsClient for FakeSettings {
    async fn set_settings(
        &self,
        pod: &PodTarget,
        settings: RuntimeSettings,
        _admin: Option<&AdminCredentials>,
    ) -> Result<(), SettingsPushError> {
        self.calls
            .lock()
            .unwrap()
            .push((pod.base_url.clone(), settings));
        let status = self.api.get(ISVC).map(|o| o["status"].clone());
        self.status_at_push
            .lock()
            .unwrap()
            .push(status.unwrap_or(Value::Null));
        Ok(())
    }
}

fn k(v: f64, at: f64) -> SliValue {
    SliValue::known(v, at)
}

/// A service with a backlog: TTFT over target while 20 requests wait on one pod.
fn queue_bound(at: f64) -> Sli {
    let mut s = Sli::all_unknown(at, 300, "not canned");
    s.ttft_p95_seconds = k(2.5, at);
    s.tpot_seconds = k(0.01, at);
    s.request_rate_per_second = k(10.0, at);
    s.error_ratio = k(0.0, at);
    s.internal_error_ratio = k(0.0, at);
    s.rejection_ratio = k(0.0, at);
    s.queue_depth = k(20.0, at);
    s.running_sequences = k(4.0, at);
    s.queue_wait_seconds = k(2.0, at);
    s.service_time_seconds = k(0.3, at);
    s.reporting_pods = k(1.0, at);
    s.memory = vec![MemorySli {
        memory_type: "vram".into(),
        usage_megabytes: k(30.0, at),
        capacity_megabytes: k(100.0, at),
        usage_ratio: k(0.3, at),
    }];
    s
}

/// KV cache nearly full, no queue.
fn memory_bound(at: f64) -> Sli {
    let mut s = queue_bound(at);
    s.ttft_p95_seconds = k(0.2, at);
    s.queue_depth = k(0.0, at);
    s.queue_wait_seconds = k(0.0, at);
    s.memory[0].usage_ratio = k(0.97, at);
    s
}

struct Harness {
    api: FakeApi,
    ctx: Arc<Context>,
    sources: Arc<FakeSources>,
    limits: Arc<FakeSettings>,
}

fn harness(sli: fn(f64) -> Sli, default_url: Option<&str>) -> Harness {
    let api = FakeApi::default();
    let client = api.client();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "sluice-operator".into(),
            instance: Some("test".into()),
        },
    );
    let sources = Arc::new(FakeSources {
        sli: Canned(Arc::new(sli)),
        built: Mutex::new(Vec::new()),
    });
    let limits = Arc::new(FakeSettings {
        calls: Mutex::default(),
        status_at_push: Mutex::default(),
        api: api.clone(),
    });
    // A 1 s interval makes every reconcile a due tick (status times are whole seconds).
    let slo = SloLoop::new(
        Duration::from_secs(1),
        default_url.map(str::to_owned),
        sources.clone(),
        limits.clone(),
    )
    .with_allowed_prometheus_urls(vec!["http://prom.team-a:9090".into()]);
    let ctx = Arc::new(
        Context::new(
            client,
            BuildOptions {
                server_image: "registry.test/sluice-server:1".into(),
                server_cuda_image: "registry.test/sluice-server:1-cuda".into(),
                monitoring: Monitoring::Annotations,
                network_policy_for: None,
                inference_namespaces: Vec::new(),
                admin_key_id: None,
                pod_otlp_endpoint: None,
            },
            recorder,
            Metrics::new().unwrap(),
        )
        .with_slo(slo),
    );
    Harness {
        api,
        ctx,
        sources,
        limits,
    }
}

fn manifest(spec: Value) -> Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "InferenceService",
           "metadata": {"name": "tiny", "namespace": "demo"}, "spec": spec})
}

impl Harness {
    async fn reconcile(&self) {
        let v = self.api.get(ISVC).unwrap();
        let obj: Arc<DeserializeGuard<InferenceService>> =
            Arc::new(serde_json::from_value(v).unwrap());
        reconcile(obj, self.ctx.clone()).await.unwrap();
    }

    /// Marks the Deployment rolled out with `n` ready pods, as the Deployment controller would.
    fn ready(&self, n: i64) {
        self.api.edit(DEPLOY, |d| {
            let g = d["metadata"]["generation"].clone();
            d["status"] = json!({"observedGeneration": g, "replicas": n, "updatedReplicas": n,
                                 "readyReplicas": n, "availableReplicas": n});
        });
    }

    fn status(&self) -> Value {
        self.api.get(ISVC).unwrap()["status"].clone()
    }

    fn condition(&self, type_: &str) -> Value {
        let st = self.status();
        st["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == type_)
            .unwrap_or_else(|| panic!("no {type_} condition in {st:#}"))
            .clone()
    }

    fn deployment(&self) -> Value {
        self.api.get(DEPLOY).unwrap()
    }

    /// The run-time settings in the settings ConfigMap.
    fn settings(&self) -> RuntimeSettings {
        let cm = self.api.get(SETTINGS).expect("the settings ConfigMap");
        serde_json::from_str(cm["data"]["settings.json"].as_str().unwrap()).unwrap()
    }

    fn template(&self) -> Value {
        self.deployment()["spec"]["template"].clone()
    }

    /// Reasons of the Events recorded so far.
    fn event_reasons(&self) -> Vec<String> {
        self.api
            .objects_under("/apis/events.k8s.io/v1/namespaces/demo/events/")
            .iter()
            .filter_map(|e| e["reason"].as_str().map(str::to_owned))
            .collect()
    }

    /// Runs reconciles until the Deployment is ready and the loop has confirmed its class.
    async fn settle(&self, ticks: usize) {
        self.reconcile().await;
        for _ in 0..ticks {
            self.ready(self.deployment()["spec"]["replicas"].as_i64().unwrap_or(1));
            self.reconcile().await;
        }
    }
}

fn decisions(status: &Value) -> Vec<Value> {
    status["slo"]["decisions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn auto_mode_scales_out_a_queue_bound_service_through_effective_settings() {
    let h = harness(queue_bound, Some("http://prometheus.test:9090"));
    let spec = json!({"model": {"builtin": "tiny"}, "replicas": {"min": 1, "max": 4},
                      "remediation": {"mode": "Auto"}});
    h.api.insert(ISVC, manifest(spec.clone()));
    h.settle(2).await;

    let st = h.status();
    assert_eq!(st["slo"]["bottleneck"]["class"], "QueueBound", "{st:#}");
    let d = decisions(&st);
    let scale = d
        .iter()
        .find(|d| d["knob"] == "Replicas")
        .unwrap_or_else(|| panic!("a scale decision in {st:#}"));
    assert_eq!(scale["kind"], "Remediate");
    assert_eq!(scale["outcome"], "Pending");
    assert_eq!(scale["from"], "1");
    let to: i64 = scale["to"].as_str().unwrap().parse().unwrap();
    assert!(to > 1 && to <= 4);
    assert!(!scale["evidence"].as_array().unwrap().is_empty());
    assert_eq!(st["effective"]["replicas"], to);
    assert_eq!(
        h.deployment()["spec"]["replicas"],
        to,
        "the Deployment follows"
    );
    let cond = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "SLOMet")
        .unwrap()
        .clone();
    assert_eq!(cond["status"], "False");
    assert_eq!(cond["reason"], "QueueBound");
    assert_eq!(st["slo"]["state"], "Violated");
    assert!(st["slo"]["slis"]["ttftP95Seconds"].as_f64().unwrap() > 2.0);
    assert_eq!(
        h.api.get(ISVC).unwrap()["spec"],
        json!(spec),
        "the CR spec is never written"
    );
    assert!(
        !h.api
            .writes()
            .iter()
            .any(|w| w.path == ISVC && w.method != Method::GET),
        "only the status subresource is written"
    );
    let built = h.sources.built.lock().unwrap().clone();
    assert_eq!(
        built[0],
        (
            "http://prometheus.test:9090".to_owned(),
            r#"namespace="demo",pod=~"tiny-[a-z0-9]+-[a-z0-9]+""#.to_owned(),
            300
        )
    );
    assert!(
        h.event_reasons().iter().any(|r| r == "ScaleReplicas"),
        "an Event named after the action: {:?}",
        h.event_reasons()
    );
    let text = h.ctx.metrics.render();
    assert!(
        text.contains(
            r#"sluice_operator_slo_decisions_total{action="scale_replicas",class="QueueBound"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"sluice_operator_slo_state{name="tiny",namespace="demo",state="Violated"} 1"#
        )
    );
}

#[tokio::test]
async fn advise_mode_reports_and_never_acts() {
    let h = harness(queue_bound, Some("http://prometheus.test:9090"));
    h.api.insert(
        ISVC,
        manifest(
            json!({"model": {"builtin": "tiny"}, "replicas": {"min": 1, "max": 4},
                        "remediation": {"mode": "Advise"}}),
        ),
    );
    h.settle(3).await;
    let st = h.status();
    let d = decisions(&st);
    let advice = d
        .iter()
        .find(|d| d["knob"] == "Replicas")
        .unwrap_or_else(|| panic!("advice recorded in {st:#}"));
    assert_eq!(advice["outcome"], "Advised");
    assert_eq!(st["effective"]["replicas"], 1);
    assert_eq!(h.deployment()["spec"]["replicas"], 1);
    assert!(h.limits.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn memory_bound_clamps_max_tokens_on_ready_pods_and_in_the_settings() {
    let h = harness(memory_bound, None);
    // Only max_tokens may move, and the per-CR URL is used without an operator default.
    h.api.insert(
        ISVC,
        manifest(json!({"model": {"builtin": "tiny"},
                        "slo": {"prometheusUrl": "http://prom.team-a:9090"},
                        "remediation": {"mode": "Auto", "knobs": ["MaxTokens"]}})),
    );
    h.api.insert(
        PODS,
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
            {"metadata": {"name": "tiny-abc-1"},
             "status": {"podIP": "10.1.0.7", "conditions": [{"type": "Ready", "status": "True"}]}},
            {"metadata": {"name": "tiny-abc-2"},
             "status": {"podIP": "10.1.0.8", "conditions": [{"type": "Ready", "status": "False"}]}},
        ]}),
    );
    h.settle(2).await;
    let st = h.status();
    assert_eq!(st["slo"]["bottleneck"]["class"], "MemoryBound", "{st:#}");
    let clamp = decisions(&st)
        .into_iter()
        .find(|d| d["knob"] == "MaxTokens")
        .unwrap_or_else(|| panic!("a max_tokens decision in {st:#}"));
    let to: u32 = clamp["to"].as_str().unwrap().parse().unwrap();
    assert!((64..256).contains(&to), "clamped toward the floor: {to}");
    let pushed = RuntimeSettings {
        max_tokens: to as usize,
        quantization: Quantization::F16,
    };
    assert_eq!(
        *h.limits.calls.lock().unwrap(),
        vec![("http://10.1.0.7:8001".to_owned(), pushed)],
        "pushed to the ready pod only"
    );
    // Nothing reaches a pod before status records the decision: the stored status at the
    // moment of the push already holds the clamp.
    let seen = h.limits.status_at_push.lock().unwrap()[0].clone();
    let to_text = to.to_string();
    assert!(
        decisions(&seen)
            .iter()
            .any(|d| d["knob"] == "MaxTokens" && d["to"] == to_text.as_str()),
        "status at push time: {seen:#}"
    );
    assert_eq!(st["effective"]["maxTokens"], to);
    assert_eq!(h.settings(), pushed, "persisted in the settings ConfigMap");
    let args = h.template()["spec"]["containers"][0]["args"].clone();
    assert!(
        !args.to_string().contains("max-tokens") && !args.to_string().contains("quantization"),
        "knob values never enter the pod template: {args}"
    );
    assert_eq!(
        h.sources.built.lock().unwrap()[0].0,
        "http://prom.team-a:9090"
    );
}

#[tokio::test]
async fn unknown_metrics_hold_and_never_scale() {
    let h = harness(
        |at| Sli::all_unknown(at, 300, "prometheus query failed: connection refused"),
        Some("http://prometheus.test:9090"),
    );
    h.api.insert(
        ISVC,
        manifest(
            json!({"model": {"builtin": "tiny"}, "replicas": {"min": 1, "max": 4},
                        "remediation": {"mode": "Auto"}}),
        ),
    );
    // Three replicas run (an earlier scale-out); status says nothing of it.
    h.reconcile().await;
    h.api.edit(DEPLOY, |d| d["spec"]["replicas"] = json!(3));
    h.settle(3).await;
    let st = h.status();
    assert_eq!(
        st["effective"]["replicas"], 3,
        "no scale-down on unknown metrics"
    );
    assert_eq!(h.deployment()["spec"]["replicas"], 3);
    assert_eq!(st["slo"]["bottleneck"]["class"], "Unknown");
    assert_eq!(st["slo"]["state"], "Unknown");
    assert!(
        decisions(&st).iter().all(|d| d.get("knob").is_none()),
        "{st:#}"
    );
    let unknown = st["slo"]["slis"]["unknown"].as_array().unwrap();
    assert!(
        unknown
            .iter()
            .any(|u| u.as_str().unwrap().contains("connection refused"))
    );
}

#[tokio::test]
async fn off_mode_reads_nothing_and_without_a_url_nothing_is_read() {
    let h = harness(queue_bound, Some("http://prometheus.test:9090"));
    h.api.insert(
        ISVC,
        manifest(json!({"model": {"builtin": "tiny"}, "remediation": {"mode": "Off"}})),
    );
    h.settle(2).await;
    assert!(h.sources.built.lock().unwrap().is_empty());
    assert!(h.status().get("slo").is_none());

    let h = harness(queue_bound, None);
    h.api
        .insert(ISVC, manifest(json!({"model": {"builtin": "tiny"}})));
    h.settle(1).await;
    assert!(h.sources.built.lock().unwrap().is_empty());
    let cond = h.condition("SLOMet");
    assert_eq!(
        (cond["status"].as_str(), cond["reason"].as_str()),
        (Some("Unknown"), Some("NoPrometheusUrl"))
    );
}

/// Regression: any InferenceService could make the operator send requests anywhere through
/// `spec.slo.prometheusUrl` (SSRF), and the error text came back in status. A URL outside the
/// allow-list is refused before any request, with a fixed reason and message.
#[tokio::test]
async fn a_prometheus_url_outside_the_allow_list_is_never_contacted() {
    let h = harness(queue_bound, Some("http://prometheus.test:9090"));
    h.api.insert(
        ISVC,
        manifest(json!({"model": {"builtin": "tiny"},
                        "slo": {"prometheusUrl": "http://169.254.169.254/latest/meta-data"},
                        "remediation": {"mode": "Auto"}})),
    );
    h.settle(2).await;
    assert!(
        h.sources.built.lock().unwrap().is_empty(),
        "no metrics source was built for the refused URL"
    );
    let cond = h.condition("SLOMet");
    assert_eq!(
        (cond["status"].as_str(), cond["reason"].as_str()),
        (Some("Unknown"), Some("PrometheusUrlNotAllowed"))
    );
    let message = cond["message"].as_str().unwrap();
    assert!(
        !message.contains("169.254"),
        "the host is not echoed: {message}"
    );
    assert_eq!(h.deployment()["spec"]["replicas"], 1, "nothing acted");
}

/// Leaving Auto keeps the replicas a remediation chose (HPA's and KEDA's pause do the same), and
/// deleting status changes nothing that runs: the count is read off the Deployment.
#[tokio::test]
async fn leaving_auto_keeps_what_runs_and_deleting_status_changes_nothing() {
    let h = harness(queue_bound, Some("http://prometheus.test:9090"));
    h.api.insert(
        ISVC,
        manifest(
            json!({"model": {"builtin": "tiny"}, "replicas": {"min": 1, "max": 4},
                        "remediation": {"mode": "Auto"}}),
        ),
    );
    h.settle(2).await;
    let to = h.deployment()["spec"]["replicas"].as_i64().unwrap();
    assert!(to > 1, "scaled out first: {:#}", h.status());
    let template = h.template();
    let settings = h.settings();

    h.api
        .edit(ISVC, |o| o["spec"]["remediation"]["mode"] = json!("Advise"));
    h.settle(2).await;
    assert_eq!(h.deployment()["spec"]["replicas"], to, "Advise froze it");
    assert_eq!(h.status()["effective"]["replicas"], to);

    h.api.edit(ISVC, |o| {
        o.as_object_mut().unwrap().remove("status");
    });
    h.settle(2).await;
    assert_eq!(
        h.deployment()["spec"]["replicas"],
        to,
        "status is no memory"
    );
    assert_eq!(h.template(), template, "no restart");
    assert_eq!(h.settings(), settings);
    assert_eq!(
        h.status()["effective"]["replicas"],
        to,
        "status rebuilt from what runs"
    );
}

/// Withdrawing a knob freezes its value; changing the spec's own value for it wins.
#[tokio::test]
async fn a_withdrawn_knob_freezes_and_a_changed_spec_value_wins() {
    let h = harness(memory_bound, Some("http://prometheus.test:9090"));
    h.api.insert(
        ISVC,
        manifest(json!({"model": {"builtin": "tiny"},
                        "remediation": {"mode": "Auto", "knobs": ["MaxTokens"]}})),
    );
    h.settle(2).await;
    let clamped = h.settings().max_tokens;
    assert!(clamped < 256, "clamped first: {:#}", h.status());
    let template = h.template();

    h.api
        .edit(ISVC, |o| o["spec"]["remediation"]["knobs"] = json!([]));
    h.settle(2).await;
    assert_eq!(h.settings().max_tokens, clamped, "frozen, not reset to 256");

    h.api.edit(ISVC, |o| {
        o["spec"]["serving"] = json!({"maxTokens": {"default": 200, "floor": 16}});
    });
    h.settle(1).await;
    assert_eq!(
        h.settings().max_tokens,
        200,
        "the user's new default applies"
    );
    assert_eq!(h.template(), template, "neither change restarted a pod");
}

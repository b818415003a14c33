//! The whole reconcile pipeline against an in-memory API server (`support::FakeApi`).

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};
use sluice_api::InferenceService;
use sluice_operator::build::{BuildOptions, Monitoring};
use sluice_operator::error::ReconcileError;
use sluice_operator::metrics::Metrics;
use sluice_operator::reconcile::{Context, error_policy, reconcile};
use support::FakeApi;

const NS: &str = "demo";
const ISVC: &str = "/apis/sluice.dev/v1alpha1/namespaces/demo/inferenceservices/tiny";
const DEPLOY: &str = "/apis/apps/v1/namespaces/demo/deployments/tiny";
const SVC: &str = "/api/v1/namespaces/demo/services/tiny";
const PDB: &str = "/apis/policy/v1/namespaces/demo/poddisruptionbudgets/tiny";
const SM: &str = "/apis/monitoring.coreos.com/v1/namespaces/demo/servicemonitors/tiny";
const RULE: &str = "/apis/monitoring.coreos.com/v1/namespaces/demo/prometheusrules/tiny";

fn manifest(spec: Value) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "tiny", "namespace": NS},
        "spec": spec,
    })
}

fn tiny_spec() -> Value {
    json!({"model": {"builtin": "tiny"}})
}

fn context(api: &FakeApi, monitoring: Monitoring) -> Arc<Context> {
    Arc::new(context_with(
        api,
        BuildOptions {
            server_image: "registry.test/sluice-server:1".into(),
            server_cuda_image: "registry.test/sluice-server:1-cuda".into(),
            monitoring,
            network_policy_for: None,
            inference_namespaces: Vec::new(),
            admin_key_id: None,
            pod_otlp_endpoint: None,
        },
    ))
}

/// A context over `api` with these build options.
fn context_with(api: &FakeApi, build: BuildOptions) -> Context {
    let client = api.client();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "sluice-operator".into(),
            instance: Some("test".into()),
        },
    );
    Context::new(client, build, recorder, Metrics::new().unwrap())
}

/// The CR as the controller's cache would hand it over: freshly read from the store.
fn current(api: &FakeApi) -> Arc<DeserializeGuard<InferenceService>> {
    let v = api.get(ISVC).expect("InferenceService stored");
    Arc::new(serde_json::from_value(v).unwrap())
}

async fn run(api: &FakeApi, ctx: &Arc<Context>) -> Result<Action, ReconcileError> {
    reconcile(current(api), ctx.clone()).await
}

fn condition(api: &FakeApi, type_: &str) -> Value {
    let obj = api.get(ISVC).unwrap();
    obj["status"]["conditions"]
        .as_array()
        .unwrap_or_else(|| panic!("no conditions in {obj}"))
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
        .unwrap_or_else(|| panic!("no {type_} condition"))
}

fn args(api: &FakeApi) -> Vec<String> {
    serde_json::from_value(
        api.get(DEPLOY).unwrap()["spec"]["template"]["spec"]["containers"][0]["args"].clone(),
    )
    .unwrap()
}

/// `maxTokens` in the settings ConfigMap's file.
fn settings_max_tokens(api: &FakeApi) -> u64 {
    let cm = api
        .get("/api/v1/namespaces/demo/configmaps/tiny-settings")
        .expect("the settings ConfigMap");
    let file: Value = serde_json::from_str(cm["data"]["settings.json"].as_str().unwrap()).unwrap();
    file["maxTokens"].as_u64().unwrap()
}

fn arg(api: &FakeApi, flag: &str) -> String {
    let a = args(api);
    let i = a.iter().position(|x| x == flag).unwrap();
    a[i + 1].clone()
}

#[tokio::test]
async fn new_service_creates_owned_children_and_status() {
    let api = FakeApi::default();
    api.insert(ISVC, manifest(tiny_spec()));
    let ctx = context(&api, Monitoring::Annotations);
    let action = run(&api, &ctx).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));

    let uid = api.get(ISVC).unwrap()["metadata"]["uid"].clone();
    for path in [DEPLOY, SVC] {
        let obj = api.get(path).unwrap_or_else(|| panic!("{path} created"));
        let owner = &obj["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "InferenceService");
        assert_eq!(owner["uid"], uid);
        assert_eq!(owner["controller"], true);
    }
    assert!(api.get(PDB).is_none(), "one replica: no PDB");
    assert!(
        api.get(SM).is_none(),
        "no prometheus operator: no ServiceMonitor"
    );
    assert_eq!(arg(&api, "--model"), "builtin:tiny");

    let status = api.get(ISVC).unwrap()["status"].clone();
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(
        status["effective"],
        json!({"replicas": 1, "quantization": "f16", "maxTokens": 256})
    );
    assert_eq!(status["endpoint"], "http://tiny.demo.svc:8000");
    for t in ["Ready", "Progressing", "Degraded", "SLOMet"] {
        assert_eq!(condition(&api, t)["observedGeneration"], 1, "{t}");
    }
    assert_eq!(condition(&api, "Ready")["status"], "False");
    assert_eq!(condition(&api, "Progressing")["status"], "True");
    assert_eq!(condition(&api, "Degraded")["status"], "False");
    assert_eq!(condition(&api, "SLOMet")["status"], "Unknown");

    let methods: Vec<_> = api
        .writes()
        .iter()
        .map(|w| (w.method.clone(), w.path.clone()))
        .collect();
    assert!(methods.contains(&(Method::PATCH, DEPLOY.to_owned())));
    assert!(methods.contains(&(Method::PATCH, format!("{ISVC}/status"))));
    assert!(
        methods
            .iter()
            .any(|(m, p)| *m == Method::POST && p.contains("/events")),
        "an Applied event is recorded"
    );
}

#[tokio::test]
async fn spec_change_updates_the_deployment() {
    let api = FakeApi::default();
    api.insert(ISVC, manifest(tiny_spec()));
    let ctx = context(&api, Monitoring::Annotations);
    run(&api, &ctx).await.unwrap();
    assert_eq!(settings_max_tokens(&api), 256);

    api.edit(ISVC, |o| {
        o["spec"]["serving"] =
            json!({"maxTokens": {"default": 128, "floor": 32}, "maxConcurrentRequests": 8});
    });
    api.clear_writes();
    run(&api, &ctx).await.unwrap();
    assert_eq!(settings_max_tokens(&api), 128, "in the settings ConfigMap");
    assert!(!args(&api).iter().any(|a| a == "--max-tokens"));
    assert_eq!(arg(&api, "--max-concurrent-requests"), "8");
    assert!(api.writes().iter().any(|w| w.path == DEPLOY));
    assert!(
        !api.writes().iter().any(|w| w.path == SVC),
        "the Service did not change"
    );
    let status = api.get(ISVC).unwrap()["status"].clone();
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(status["effective"]["maxTokens"], 128);
    for t in ["Ready", "Progressing", "Degraded"] {
        assert_eq!(condition(&api, t)["observedGeneration"], 2, "{t}");
    }
}

#[tokio::test]
async fn invalid_spec_sets_degraded_and_creates_nothing() {
    let api = FakeApi::default();
    // Passes serde but not validation (the CEL rule would reject it at admission; this object
    // predates the rule).
    api.insert(
        ISVC,
        manifest(json!({"model": {"builtin": "tiny"}, "replicas": {"min": 3, "max": 2}})),
    );
    let ctx = context(&api, Monitoring::Annotations);
    let obj = current(&api);
    let err = reconcile(obj.clone(), ctx.clone()).await.unwrap_err();
    assert!(err.is_permanent());
    assert_eq!(err.category(), "InvalidSpec");
    assert_eq!(error_policy(obj, &err, ctx.clone()), Action::await_change());

    assert!(api.get(DEPLOY).is_none() && api.get(SVC).is_none() && api.get(PDB).is_none());
    let degraded = condition(&api, "Degraded");
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "InvalidSpec");
    assert_eq!(
        degraded["message"],
        "failed to validate InferenceService demo/tiny: spec.replicas: min 3 exceeds max 2"
    );
    assert_eq!(degraded["observedGeneration"], 1);
    assert_eq!(condition(&api, "Ready")["status"], "False");
    assert!(
        api.writes().iter().any(|w| w.path.contains("/events")),
        "a Warning event is recorded"
    );

    api.clear_writes();
    assert!(run(&api, &ctx).await.is_err());
    assert_eq!(
        api.writes(),
        vec![],
        "the same invalid spec is not re-reported"
    );

    // Fixing the spec recovers.
    api.edit(ISVC, |o| {
        o["spec"]["replicas"] = json!({"min": 1, "max": 2})
    });
    run(&api, &ctx).await.unwrap();
    assert!(api.get(DEPLOY).is_some());
    assert_eq!(condition(&api, "Degraded")["status"], "False");
    assert_eq!(condition(&api, "Degraded")["observedGeneration"], 2);
}

#[tokio::test]
async fn pdb_follows_replica_count() {
    let api = FakeApi::default();
    api.insert(
        ISVC,
        manifest(json!({"model": {"builtin": "tiny"}, "replicas": {"min": 2, "max": 3}})),
    );
    let ctx = context(&api, Monitoring::Annotations);
    run(&api, &ctx).await.unwrap();
    let pdb = api.get(PDB).expect("two replicas: PDB");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(api.get(DEPLOY).unwrap()["spec"]["replicas"], 2);

    api.edit(ISVC, |o| {
        o["spec"]["replicas"] = json!({"min": 1, "max": 1})
    });
    run(&api, &ctx).await.unwrap();
    assert!(api.get(PDB).is_none(), "one replica: PDB removed");
    assert_eq!(api.get(DEPLOY).unwrap()["spec"]["replicas"], 1);
}

#[tokio::test]
async fn service_monitor_when_prometheus_operator_is_present() {
    let api = FakeApi::default();
    api.insert(ISVC, manifest(tiny_spec()));
    let labels = [("release".to_owned(), "kps".to_owned())].into();
    let ctx = context(
        &api,
        Monitoring::ServiceMonitor {
            labels,
            alert_rules: true,
        },
    );
    run(&api, &ctx).await.unwrap();
    let sm = api.get(SM).expect("ServiceMonitor created");
    assert_eq!(sm["metadata"]["labels"]["release"], "kps");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "http");
    let rule = api.get(RULE).expect("PrometheusRule created");
    assert_eq!(rule["metadata"]["labels"]["release"], "kps");
    assert_eq!(
        rule["metadata"]["ownerReferences"][0]["kind"],
        "InferenceService"
    );
    let alerts: Vec<&str> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["alert"].as_str().unwrap())
        .collect();
    assert!(alerts.contains(&"SluiceErrorBudgetBurn") && alerts.contains(&"SluiceTtftBudgetBurn"));
    let template = api.get(DEPLOY).unwrap()["spec"]["template"]["metadata"].clone();
    assert!(
        template.get("annotations").is_none(),
        "no scrape annotations next to a ServiceMonitor"
    );
    api.clear_writes();
    run(&api, &ctx).await.unwrap();
    assert_eq!(api.writes(), vec![]);
}

#[tokio::test]
async fn transient_errors_back_off_per_object() {
    let api = FakeApi::default();
    api.insert(ISVC, manifest(tiny_spec()));
    let ctx = context(&api, Monitoring::Annotations);
    let obj = current(&api);
    api.fail_with(Some(500));
    let mut delays = Vec::new();
    for _ in 0..3 {
        let err = reconcile(obj.clone(), ctx.clone()).await.unwrap_err();
        assert!(!err.is_permanent());
        assert_eq!(err.category(), "FetchFailed");
        delays.push(error_policy(obj.clone(), &err, ctx.clone()));
    }
    assert_eq!(
        delays,
        [5, 10, 20]
            .map(|s| Action::requeue(Duration::from_secs(s)))
            .to_vec()
    );
    // Success resets the backoff.
    api.fail_with(None);
    run(&api, &ctx).await.unwrap();
    api.fail_with(Some(503));
    let err = reconcile(obj.clone(), ctx.clone()).await.unwrap_err();
    assert_eq!(
        error_policy(obj, &err, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    let text = ctx.metrics.render();
    assert!(text.contains("sluice_operator_reconcile_errors_total{category=\"FetchFailed\"} 4"));
    assert!(text.contains("sluice_operator_reconciles_total{outcome=\"success\"} 1"));
}

#[tokio::test]
async fn malformed_object_does_not_stall_the_controller() {
    let api = FakeApi::default();
    let mut bad = manifest(json!({"model": {"builtin": "tiny"}, "replicas": {"min": "lots"}}));
    bad["metadata"]["uid"] = json!("uid-bad");
    api.insert(ISVC, bad);
    let ctx = context(&api, Monitoring::Annotations);
    let obj = current(&api);
    assert!(
        obj.0.is_err(),
        "DeserializeGuard holds the error instead of failing the watch"
    );
    let err = reconcile(obj.clone(), ctx.clone()).await.unwrap_err();
    assert_eq!(err.category(), "MalformedObject");
    assert!(
        err.to_string()
            .starts_with("failed to read InferenceService demo/tiny")
    );
    assert_eq!(error_policy(obj, &err, ctx), Action::await_change());
    assert!(api.get(DEPLOY).is_none());
}

#[tokio::test]
async fn status_written_by_another_writer_is_not_clobbered() {
    let api = FakeApi::default();
    api.insert(ISVC, manifest(tiny_spec()));
    let ctx = context(&api, Monitoring::Annotations);
    let stale = current(&api);
    // Someone (the SLO loop) writes status after our read.
    api.edit(ISVC, |o| {
        o["status"] = json!({"slo": {"state": "Violated"}})
    });
    let err = reconcile(stale, ctx.clone()).await.unwrap_err();
    assert_eq!(err.category(), "StatusUpdateFailed");
    assert!(!err.is_permanent(), "a conflict is retried with fresh data");
    assert_eq!(api.get(ISVC).unwrap()["status"]["slo"]["state"], "Violated");
    run(&api, &ctx).await.unwrap();
    let status = api.get(ISVC).unwrap()["status"].clone();
    assert_eq!(status["slo"]["state"], "Violated", "carried over");
    assert_eq!(status["observedGeneration"], 1);
}

/// Regression: whoever could create an InferenceService chose `serving.image`, and the pod ran
/// it with the service's API-key Secret. Only the operator's own images, or images under an
/// allowed prefix set at install, run; anything else is an invalid spec and nothing is created.
#[tokio::test]
async fn a_server_image_outside_the_allow_list_is_refused() {
    let api = FakeApi::default();
    api.insert(
        ISVC,
        manifest(json!({"model": {"builtin": "tiny"},
                        "serving": {"image": "attacker.example/exfiltrate:latest"}})),
    );
    let ctx = context(&api, Monitoring::Annotations);
    let obj = current(&api);
    let err = reconcile(obj, ctx.clone()).await.unwrap_err();
    assert!(err.is_permanent());
    assert_eq!(err.category(), "InvalidSpec");
    assert!(api.get(DEPLOY).is_none(), "nothing runs the refused image");
    let degraded = condition(&api, "Degraded");
    assert_eq!(degraded["reason"], "InvalidSpec");
    assert!(
        degraded["message"]
            .as_str()
            .unwrap()
            .contains("spec.serving.image"),
        "{degraded}"
    );

    // An image under an allowed prefix runs.
    let allowed = Arc::new(
        Arc::try_unwrap(context(&api, Monitoring::Annotations))
            .ok()
            .unwrap()
            .with_allowed_server_images(vec!["registry.test/sluice-server:".into()]),
    );
    api.edit(ISVC, |o| {
        o["spec"]["serving"]["image"] = json!("registry.test/sluice-server:2-custom")
    });
    reconcile(current(&api), allowed).await.unwrap();
    let dep = api.get(DEPLOY).expect("deployment created");
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.test/sluice-server:2-custom"
    );
}

/// With `--network-policy`, the reconcile applies the service's NetworkPolicy with the other
/// children (owned, under the operator's field manager), and a settled service writes nothing.
#[tokio::test]
async fn the_network_policy_is_applied_with_the_children() {
    const NP: &str = "/apis/networking.k8s.io/v1/namespaces/demo/networkpolicies/tiny";
    let api = FakeApi::default();
    api.insert(ISVC, manifest(json!({"model": {"builtin": "tiny"}})));
    let base = context(&api, Monitoring::Annotations);
    let mut build = base.build.clone();
    build.network_policy_for = Some("sluice-system".into());
    let ctx = Arc::new(context_with(&api, build));
    reconcile(current(&api), ctx.clone()).await.unwrap();
    let np = api.get(NP).expect("NetworkPolicy created");
    assert_eq!(
        np["metadata"]["ownerReferences"][0]["kind"],
        "InferenceService"
    );
    assert_eq!(np["spec"]["ingress"][1]["ports"][0]["port"], 8001);
    assert_eq!(
        np["spec"]["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "sluice-system"
    );
    api.clear_writes();
    reconcile(current(&api), ctx).await.unwrap();
    assert!(
        api.writes()
            .iter()
            .all(|w| !w.path.contains("networkpolicies")),
        "an unchanged NetworkPolicy is not rewritten: {:?}",
        api.writes()
    );
}

/// Regression (hardening): the operator read each service's inference API key Secret to push
/// settings, so it held cluster-wide `secrets: get`. With an admin key seed it creates each
/// service's admin-key Secret (create-only), points the pods at it, and never reads a Secret; a
/// foreign Secret of that name is never overwritten.
#[tokio::test]
async fn admin_keys_are_created_once_and_no_secret_is_ever_read() {
    let keys = Arc::new(sluice_operator::admin_key::AdminKeys::new(b"0123456789abcdef").unwrap());
    let secret_name = format!("tiny-sluice-admin-{}", keys.id());
    let secret_path = format!("/api/v1/namespaces/demo/secrets/{secret_name}");
    let secret_path = secret_path.as_str();
    let api = FakeApi::default();
    api.insert(
        ISVC,
        manifest(json!({
            "model": {"builtin": "tiny"},
            "serving": {"apiKeySecretRef": {"name": "sluice-api-key-tiny", "key": "token"}},
        })),
    );
    let base = context(&api, Monitoring::Annotations);
    let mut build = base.build.clone();
    build.admin_key_id = Some(keys.id());
    let ctx = Arc::new(context_with(&api, build).with_admin_keys(keys.clone()));
    run(&api, &ctx).await.unwrap();
    let secret = api
        .get(secret_path)
        .expect("the admin-key Secret is created");
    assert_eq!(
        secret["stringData"]["admin-key"],
        keys.key(NS, "tiny"),
        "the key the operator will push with"
    );
    assert_eq!(
        secret["metadata"]["ownerReferences"][0]["kind"],
        "InferenceService"
    );
    let env = api.get(DEPLOY).unwrap()["spec"]["template"]["spec"]["containers"][0]["env"].clone();
    let by_name = |n: &str| {
        env.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("no {n} in {env}"))
    };
    assert_eq!(
        by_name("SLUICE_ADMIN_KEY")["valueFrom"]["secretKeyRef"]["name"],
        secret_name
    );
    assert_eq!(
        by_name("SLUICE_API_KEY")["valueFrom"]["secretKeyRef"]["name"],
        "sluice-api-key-tiny",
        "the inference key stays the user's"
    );

    // The admin TLS identity: its own create-only Secret, mounted where the server's flags
    // point, holding exactly what the operator derives (and so pins).
    let tls_name = format!("tiny-sluice-admin-tls-{}", keys.id());
    let tls = api
        .get(&format!("/api/v1/namespaces/demo/secrets/{tls_name}"))
        .expect("the admin TLS Secret is created");
    let identity = keys.identity(NS, "tiny").unwrap();
    assert_eq!(tls["type"], "kubernetes.io/tls");
    assert_eq!(tls["stringData"]["tls.crt"], identity.cert_pem.as_str());
    assert_eq!(tls["stringData"]["tls.key"], identity.key_pem.as_str());
    let pod = api.get(DEPLOY).unwrap()["spec"]["template"]["spec"].clone();
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "admin-tls")
        .cloned()
        .expect("an admin-tls volume");
    assert_eq!(volume["secret"]["secretName"], tls_name.as_str());
    let args: Vec<String> = serde_json::from_value(pod["containers"][0]["args"].clone()).unwrap();
    let arg = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .map(|i| args[i + 1].clone())
            .unwrap_or_else(|| panic!("no {flag} in {args:?}"))
    };
    assert_eq!(
        arg("--admin-tls-cert-file"),
        "/var/run/sluice/admin-tls/tls.crt"
    );
    assert_eq!(
        arg("--admin-tls-key-file"),
        "/var/run/sluice/admin-tls/tls.key"
    );

    // A foreign Secret of that name (here: after the service's own was replaced) is left as
    // it is: the operator only ever creates.
    api.remove(secret_path);
    api.insert(
        secret_path,
        json!({"metadata": {"name": secret_name}, "data": {"x": "eQ=="}}),
    );
    run(&api, &ctx).await.unwrap();
    assert_eq!(api.get(secret_path).unwrap()["data"]["x"], "eQ==");
    assert!(
        api.writes()
            .iter()
            .filter(|w| w.path.contains("/secrets"))
            .all(|w| w.method == Method::POST),
        "secrets are only ever created: {:?}",
        api.writes()
    );
    assert!(
        api.reads().iter().all(|p| !p.contains("/secrets")),
        "no Secret is read: {:?}",
        api.reads()
    );
}

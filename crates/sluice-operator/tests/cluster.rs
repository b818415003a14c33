//! Cluster tier: the CRD, the chart's RBAC and the operator against a real control plane
//! (etcd, kube-apiserver, controller-manager, scheduler, kwok; `scripts/cluster.sh`), started
//! once for this test binary. Each test works in its own namespaces; the tests that run an
//! operator take turns, so a cluster-wide operator never sees another test's services.
//!
//! ```sh
//! cargo test -p sluice-operator --test cluster -- --ignored
//! ```

mod cluster_support;
use cluster_support as cluster;

use std::sync::Once;
use std::time::{Duration, Instant};

use cluster_support::{
    AuditCursor, Chart, Operator, admin_client, eventually, kubectl, kubectl_apply,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use sluice_api::InferenceService;
use sluice_testkit::Cluster;

/// Tests that run an operator hold this, one at a time.
static OPERATORS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The shared cluster, with the repository's CRD applied.
fn cluster() -> &'static Cluster {
    static CRD: Once = Once::new();
    let c = Cluster::shared();
    CRD.call_once(|| cluster::install_crd(c));
    c
}

fn example(name: &str) -> Value {
    let path = cluster::repo().join("examples").join(name);
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `examples/tiny-cpu.yaml` renamed.
fn tiny(name: &str) -> Value {
    let mut v = example("tiny-cpu.yaml");
    v["metadata"]["name"] = json!(name);
    v
}

fn condition(isvc: &InferenceService, type_: &str) -> Option<String> {
    isvc.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

/// Waits until `name` is Ready=True with status.observedGeneration equal to its generation.
async fn ready(client: &Client, ns: &str, name: &str) -> InferenceService {
    let api: Api<InferenceService> = Api::namespaced(client.clone(), ns);
    eventually(
        &format!("{ns}/{name} Ready=True at its generation"),
        Duration::from_secs(120),
        || {
            let api = api.clone();
            async move {
                let isvc = api.get(name).await.ok()?;
                let st = isvc.status.as_ref()?;
                (condition(&isvc, "Ready").as_deref() == Some("True")
                    && st.observed_generation == isvc.metadata.generation)
                    .then_some(isvc)
            }
        },
    )
    .await
}

fn managers(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Vec<String> {
    meta.managed_fields
        .iter()
        .flatten()
        .map(|m| {
            format!(
                "{}:{}",
                m.manager.as_deref().unwrap_or(""),
                m.operation.as_deref().unwrap_or("")
            )
        })
        .collect()
}

#[test]
#[ignore = "cluster tier: needs the control plane from scripts/build-control-plane.sh"]
fn kubectl_accepts_the_examples_and_the_apiserver_rejects_bad_specs() {
    let c = cluster();
    let ns = "examples";
    cluster::namespace(c, ns);
    for file in ["tiny-cpu.yaml", "mistral-7b-gpu.yaml"] {
        let path = cluster::repo().join("examples").join(file);
        kubectl(c, &["apply", "-n", ns, "-f", path.to_str().unwrap()]);
    }

    // The invalid example: both CEL messages, from the apiserver.
    let path = cluster::repo().join("examples/invalid-replicas.yaml");
    let (ok, out) =
        Cluster::try_run(
            c.kubectl()
                .args(["apply", "-n", ns, "-f", path.to_str().unwrap()]),
        );
    assert!(!ok, "invalid-replicas.yaml was accepted: {out}");
    assert!(
        out.contains("replicas.min must not exceed replicas.max"),
        "{out}"
    );
    assert!(
        out.contains("serving.quantization must be one of serving.quantizationLadder"),
        "{out}"
    );

    // Each bad spec is refused with the message a user needs.
    let cases: &[(&str, &str, Value, &str)] = &[
        (
            "two-sources",
            "/spec/model/image",
            json!({"path": "/models/m"}),
            "exactly one of model.builtin, model.image, model.pvc or model.huggingFace",
        ),
        (
            "bad-repo",
            "/spec/model",
            json!({"huggingFace": {"repoId": "no-org", "cache": {"claimName": "c"}}}),
            "model.huggingFace.repoId must look like ORG/NAME",
        ),
        (
            "bad-revision",
            "/spec/model",
            json!({"huggingFace": {"repoId": "a/b", "revision": "../main", "cache": {"claimName": "c"}}}),
            "model.huggingFace.revision must be a branch",
        ),
        (
            "floor-over-default",
            "/spec/serving/maxTokens",
            json!({"default": 64, "floor": 128}),
            "serving.maxTokens.floor must not exceed serving.maxTokens.default",
        ),
        (
            "error-rate",
            "/spec/slo/errorRateMax",
            json!(2.0),
            "slo.errorRateMax must be a fraction in [0, 1]",
        ),
        (
            "prometheus-url",
            "/spec/slo/prometheusUrl",
            json!("ftp://prometheus:9090"),
            "slo.prometheusUrl must be an http:// or https:// URL",
        ),
        (
            "too-many",
            "/spec/replicas",
            json!({"min": 1, "max": 5000}),
            "replicas.max must be at most 1000",
        ),
        (
            "quantization",
            "/spec/serving/quantization",
            json!("q3"),
            "Unsupported value: \"q3\"",
        ),
        (
            "pvc-escape",
            "/spec/model",
            json!({"pvc": {"claimName": "c", "path": "../etc"}}),
            "model.pvc.path must be relative and must not contain '..'",
        ),
        (
            "unknown-field",
            "/spec/replicas/maximum",
            json!(3),
            "unknown field \"spec.replicas.maximum\"",
        ),
    ];
    for (name, pointer, value, message) in cases {
        let mut spec = tiny(name);
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        spec.pointer_mut(parent).unwrap()[key] = value.clone();
        let (ok, out) = kubectl_apply(c, ns, &spec.to_string());
        assert!(!ok, "{name} was accepted: {out}");
        assert!(
            out.contains(message),
            "{name}: expected {message:?} in {out}"
        );
    }

    // Printer columns and the short name.
    let table = kubectl(c, &["get", "sluicesvc", "-n", ns]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "QUANT",
            "MAXTOKENS",
            "SLO",
            "BOTTLENECK",
            "AGE"
        ],
        "{table}"
    );
    assert!(
        table.contains("tiny") && table.contains("mistral-7b"),
        "{table}"
    );
    // `kubectl explain` reads the published schema.
    let explained = kubectl(c, &["explain", "inferenceservice.spec.replicas"]);
    assert!(
        explained.contains("min") && explained.contains("max"),
        "{explained}"
    );
    assert!(
        explained.contains("GROUP:      sluice.dev") || explained.contains("sluice.dev"),
        "{explained}"
    );
}

#[tokio::test]
#[ignore = "cluster tier: needs the control plane from scripts/build-control-plane.sh"]
async fn operator_with_the_charts_rbac_reconciles_rolls_out_and_collects_garbage() {
    let _turn = OPERATORS.lock().await;
    let c = cluster();
    let client = admin_client(c).await;
    // The chart's defaults: cluster-wide ClusterRole, leader election, NetworkPolicy on.
    let chart = Chart::install(c, "sluice", "sluice-system", &[]);
    let pod = chart.operator_pods(c, 1).remove(0);
    let audit = AuditCursor::now(c);
    let mut operator = Operator::start(c, &chart, &pod, &[]);

    let ns = "apps-rbac";
    cluster::namespace(c, ns);
    let (ok, out) = kubectl_apply(c, ns, &tiny("tiny").to_string());
    assert!(ok, "{out}");
    let isvc = ready(&client, ns, "tiny").await;
    assert_eq!(isvc.status.as_ref().unwrap().ready_replicas, Some(1));

    // Children exist, owned by the InferenceService, applied server-side by one field manager.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns);
    let dep = deployments.get("tiny").await.unwrap();
    let svc = services.get("tiny").await.unwrap();
    let policy = policies.get("tiny").await.unwrap();
    for (kind, meta) in [
        ("Deployment", &dep.metadata),
        ("Service", &svc.metadata),
        ("NetworkPolicy", &policy.metadata),
    ] {
        let owner = &meta.owner_references.as_ref().expect("owner reference")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("InferenceService", Some(true)),
            "{kind}"
        );
        let m = managers(meta);
        assert!(
            m.contains(&"sluice-operator:Apply".to_owned()),
            "{kind} managers: {m:?}"
        );
        assert!(
            !m.iter()
                .any(|m| m.starts_with("sluice-operator:") && m != "sluice-operator:Apply"),
            "{kind} written by sluice-operator other than by apply: {m:?}"
        );
    }

    // A spec change rolls out: a new pod template, rolled to Ready by the real Deployment
    // controller and kwok.
    let isvcs: Api<InferenceService> = Api::namespaced(client.clone(), ns);
    isvcs
        .patch(
            "tiny",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"serving": {"resources": {"cpu": "750m"}}}})),
        )
        .await
        .unwrap();
    let isvc = ready(&client, ns, "tiny").await;
    assert_eq!(isvc.metadata.generation, Some(2));
    eventually(
        "the Deployment to roll out 750m",
        Duration::from_secs(120),
        || {
            let d = deployments.clone();
            async move {
                let dep = d.get("tiny").await.ok()?;
                let cpu = dep.spec.template.spec.as_ref()?.containers[0]
                    .resources
                    .as_ref()?
                    .requests
                    .as_ref()?
                    .get("cpu")?
                    .0
                    .clone();
                let st = dep.status.as_ref()?;
                (cpu == "750m"
                    && st.observed_generation == dep.metadata.generation
                    && st.updated_replicas == Some(1)
                    && st.ready_replicas == Some(1)
                    && st.replicas == Some(1))
                .then_some(())
            }
        },
    )
    .await;

    // The chart's RBAC was enough: the apiserver refused the operator nothing.
    let requests = audit.by(&chart.user());
    assert!(
        requests.iter().any(|e| e.is_write()),
        "no writes by {} in the audit log",
        chart.user()
    );
    let refused: Vec<String> = requests
        .iter()
        .filter(|e| e.code == Some(403))
        .map(ToString::to_string)
        .collect();
    assert!(
        refused.is_empty(),
        "the chart's RBAC refused the operator:\n{}",
        refused.join("\n")
    );

    // Deleting the InferenceService collects its children (the garbage collector, through the
    // owner references).
    isvcs
        .delete("tiny", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually(
        "the children to be collected",
        Duration::from_secs(120),
        || {
            let (d, s, p) = (deployments.clone(), services.clone(), policies.clone());
            async move {
                (d.get_opt("tiny").await.ok()?.is_none()
                    && s.get_opt("tiny").await.ok()?.is_none()
                    && p.get_opt("tiny").await.ok()?.is_none())
                .then_some(())
            }
        },
    )
    .await;

    operator.signal("TERM");
    let status = operator.wait_exit(Duration::from_secs(30));
    assert!(
        status.success(),
        "operator exited with {status}:\n{}",
        operator.log_tail()
    );
    Cluster::check(
        c.helm()
            .args(["uninstall", "sluice", "-n", "sluice-system", "--wait"]),
    );
}

/// Writes by `user` since `cursor`, except renewals of the leader Lease: a leader must renew
/// its lease (every lease duration minus the renew grace, 10 s with the chart's 15 s), or
/// another replica takes over; that is the one write a settled operator makes on purpose.
fn writes(cursor: &AuditCursor, user: &str) -> (Vec<String>, usize) {
    let all: Vec<_> = cursor
        .by(user)
        .into_iter()
        .filter(|e| e.is_write())
        .collect();
    let renewals = all.iter().filter(|e| e.resource == "leases").count();
    let others = all
        .iter()
        .filter(|e| e.resource != "leases")
        .map(ToString::to_string)
        .collect();
    (others, renewals)
}

/// Waits until `user` has made no write (lease renewals aside) for `quiet`, up to `limit`;
/// panics listing the writes of the last attempt if it never goes quiet.
async fn settle(c: &Cluster, user: &str, quiet: Duration, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let cursor = AuditCursor::now(c);
        tokio::time::sleep(quiet).await;
        let (writes, _) = writes(&cursor, user);
        if writes.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{user} never went {quiet:?} without writing; last writes:\n{}",
            writes.join("\n")
        );
    }
}

#[tokio::test]
#[ignore = "cluster tier: needs the control plane from scripts/build-control-plane.sh"]
async fn settled_services_cost_zero_writes() {
    let _turn = OPERATORS.lock().await;
    let c = cluster();
    let client = admin_client(c).await;
    // The SLO loop runs against a real Prometheus (which has no samples for these kwok pods).
    let prometheus = sluice_testkit::Prometheus::start(&[]);
    let apps = "apps-rest";
    cluster::namespace(c, apps);
    let interval = Duration::from_secs(2);
    let chart = Chart::install(
        c,
        "rest",
        "rest-system",
        &[
            &format!("watchNamespace={apps}"),
            &format!("slo.prometheusUrl={}", prometheus.url()),
            "slo.interval=2s",
        ],
    );
    let pod = chart.operator_pods(c, 1).remove(0);
    let _operator = Operator::start(c, &chart, &pod, &[]);
    let names: Vec<String> = (0..5).map(|i| format!("svc-{i}")).collect();
    for n in &names {
        let (ok, out) = kubectl_apply(c, apps, &tiny(n).to_string());
        assert!(ok, "{out}");
    }
    for n in &names {
        let isvc = ready(&client, apps, n).await;
        // The SLO loop has evaluated it (and found no samples).
        assert!(
            isvc.status.as_ref().unwrap().slo.is_some(),
            "{n} has no SLO status"
        );
    }

    settle(c, &chart.user(), interval * 2, Duration::from_secs(90)).await;
    let window = interval * 10;
    let cursor = AuditCursor::now(c);
    let queries_before = cluster::prometheus_queries(&prometheus);
    tokio::time::sleep(window).await;
    let requests = cursor.by(&chart.user()).len();
    let (writes, renewals) = writes(&cursor, &chart.user());
    assert!(
        writes.is_empty(),
        "{} writes at rest in {window:?} ({} services, SLO interval {interval:?}):\n{}",
        writes.len(),
        names.len(),
        writes.join("\n")
    );
    // The loop kept evaluating all along: it read Prometheus every interval.
    let queries = cluster::prometheus_queries(&prometheus) - queries_before;
    assert!(
        queries >= names.len() as f64 * 5.0,
        "only {queries} Prometheus queries in {window:?}"
    );
    eprintln!(
        "at rest for {window:?}: {} services, {requests} requests by the operator, 0 writes \
         besides {renewals} lease renewals, {queries} Prometheus queries",
        names.len()
    );
}

/// The Lease's holder, if any.
async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    leases
        .get(name)
        .await
        .ok()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

#[tokio::test]
#[ignore = "cluster tier: needs the control plane from scripts/build-control-plane.sh"]
async fn only_the_leader_writes_and_a_standby_takes_over() {
    let _turn = OPERATORS.lock().await;
    let c = cluster();
    let client = admin_client(c).await;
    let apps = "apps-leader";
    cluster::namespace(c, apps);
    // Two replicas with the chart's lease settings (15 s).
    let chart = Chart::install(
        c,
        "le",
        "le-system",
        &["replicaCount=2", &format!("watchNamespace={apps}")],
    );
    let lease_name = chart
        .args
        .iter()
        .find_map(|a| a.strip_prefix("--lease-name="))
        .expect("the chart names the lease")
        .to_owned();
    let lease_duration: u64 = chart
        .args
        .iter()
        .find_map(|a| a.strip_prefix("--lease-duration-seconds="))
        .expect("the chart sets the lease duration")
        .parse()
        .unwrap();
    let leases: Api<Lease> = Api::namespaced(client.clone(), &chart.namespace);
    let pods = chart.operator_pods(c, 2);
    let (a, b) = (pods[0].clone(), pods[1].clone());

    let audit = AuditCursor::now(c);
    let mut first = Operator::start(c, &chart, &a, &[]);
    eventually(&format!("{a} to lead"), Duration::from_secs(60), || {
        let l = leases.clone();
        let (lease_name, a) = (lease_name.clone(), a.clone());
        async move { (holder(&l, &lease_name).await? == a).then_some(()) }
    })
    .await;
    let mut second = Operator::start(c, &chart, &b, &[]);
    let (ok, out) = kubectl_apply(c, apps, &tiny("one").to_string());
    assert!(ok, "{out}");
    ready(&client, apps, "one").await;
    // Give the standby a full lease period to misbehave.
    tokio::time::sleep(Duration::from_secs(lease_duration)).await;
    let writes: Vec<_> = audit
        .by(&chart.user())
        .into_iter()
        .filter(|e| e.is_write())
        .collect();
    assert!(
        writes.iter().any(|e| e.resource == "deployments"),
        "the leader applied nothing"
    );
    let by_standby: Vec<String> = writes
        .iter()
        .filter(|e| e.pod.as_deref() != Some(a.as_str()))
        .map(ToString::to_string)
        .collect();
    assert!(
        by_standby.is_empty(),
        "the standby wrote:\n{}",
        by_standby.join("\n")
    );

    // kill -9 the leader: the standby takes over once the lease expires, and converges.
    first.signal("KILL");
    let killed = Instant::now();
    eventually(
        &format!("{b} to take over"),
        Duration::from_secs(lease_duration * 3),
        || {
            let l = leases.clone();
            let (lease_name, b) = (lease_name.clone(), b.clone());
            async move { (holder(&l, &lease_name).await? == b).then_some(()) }
        },
    )
    .await;
    let takeover = killed.elapsed();
    let (ok, out) = kubectl_apply(c, apps, &tiny("two").to_string());
    assert!(ok, "{out}");
    ready(&client, apps, "two").await;
    eprintln!(
        "after kill -9 of the leader, the standby led within {takeover:?} (lease {lease_duration} s)"
    );

    // SIGTERM the new leader: it releases the lease on its way out (no holder, at once), and
    // exits 0; the restarted first replica then leads.
    first = Operator::start(c, &chart, &a, &[]);
    second.signal("TERM");
    let status = second.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}:\n{}", second.log_tail());
    let lease = leases.get(&lease_name).await.unwrap();
    let h = lease
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    assert!(
        h.is_empty() || h == a,
        "the lease still names {h:?} after a clean shutdown"
    );
    eventually(
        &format!("{a} to lead again"),
        Duration::from_secs(lease_duration * 3),
        || {
            let l = leases.clone();
            let (lease_name, a) = (lease_name.clone(), a.clone());
            async move { (holder(&l, &lease_name).await? == a).then_some(()) }
        },
    )
    .await;
    let (ok, out) = kubectl_apply(c, apps, &tiny("three").to_string());
    assert!(ok, "{out}");
    ready(&client, apps, "three").await;
    assert!(first.running(), "{}", first.log_tail());
}

/// Runs `kubectl` and panics unless it succeeds.
fn k(c: &Cluster, args: &[&str]) {
    kubectl(c, args);
}

#[tokio::test]
#[ignore = "cluster tier: needs the control plane from scripts/build-control-plane.sh"]
async fn drift_is_put_back_and_foreign_objects_are_left_alone() {
    let _turn = OPERATORS.lock().await;
    let c = cluster();
    let client = admin_client(c).await;
    let apps = "apps-drift";
    cluster::namespace(c, apps);
    let chart = Chart::install(
        c,
        "drift",
        "drift-system",
        &[&format!("watchNamespace={apps}")],
    );
    let pod = chart.operator_pods(c, 1).remove(0);
    let _operator = Operator::start(c, &chart, &pod, &[]);
    let (ok, out) = kubectl_apply(c, apps, &tiny("tiny").to_string());
    assert!(ok, "{out}");
    ready(&client, apps, "tiny").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), apps);
    let services: Api<Service> = Api::namespaced(client.clone(), apps);
    let image = deployments
        .get("tiny")
        .await
        .unwrap()
        .spec
        .template
        .spec
        .unwrap()
        .containers[0]
        .image
        .clone();

    // Someone edits the children by hand (each through its own real API path: the scale
    // subresource, a strategic merge patch, a JSON patch); the operator's watches see it and
    // its server-side apply takes its fields back.
    k(c, &["-n", apps, "scale", "deployment/tiny", "--replicas=5"]);
    k(
        c,
        &[
            "-n",
            apps,
            "set",
            "image",
            "deployment/tiny",
            "server=evil:latest",
        ],
    );
    k(
        c,
        &[
            "-n",
            apps,
            "patch",
            "service/tiny",
            "--type=json",
            "-p",
            r#"[{"op": "replace", "path": "/spec/ports/0/port", "value": 9999}]"#,
        ],
    );
    eventually(
        "the Deployment and Service to be put back",
        Duration::from_secs(60),
        || {
            let (d, s, image) = (deployments.clone(), services.clone(), image.clone());
            async move {
                let dep = d.get("tiny").await.ok()?;
                let svc = s.get("tiny").await.ok()?;
                let port = svc.spec?.ports?[0].port;
                (dep.spec.replicas == Some(1)
                    && dep.spec.template.spec?.containers[0].image == image
                    && port == 8000)
                    .then_some(())
            }
        },
    )
    .await;
    // A deleted child comes back.
    k(c, &["-n", apps, "delete", "service", "tiny", "--wait=true"]);
    eventually("the Service to come back", Duration::from_secs(60), || {
        let s = services.clone();
        async move { s.get_opt("tiny").await.ok()?.map(|_| ()) }
    })
    .await;

    // A Deployment of the same name that the service does not own is left alone, and the
    // service says why.
    k(
        c,
        &[
            "-n",
            apps,
            "create",
            "deployment",
            "foreign",
            "--image=nginx:1",
        ],
    );
    let (ok, out) = kubectl_apply(c, apps, &tiny("foreign").to_string());
    assert!(ok, "{out}");
    let isvcs: Api<InferenceService> = Api::namespaced(client.clone(), apps);
    let message = eventually("Degraded=True NotOwned", Duration::from_secs(60), || {
        let i = isvcs.clone();
        async move {
            let isvc = i.get("foreign").await.ok()?;
            let d = isvc
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Degraded")?;
            (d.status == "True" && d.reason == "NotOwned").then_some(d.message)
        }
    })
    .await;
    assert!(
        message.contains("Deployment apps-drift/foreign"),
        "{message}"
    );
    let foreign = deployments.get("foreign").await.unwrap();
    assert_eq!(
        foreign.spec.template.spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("nginx:1")
    );
    assert!(
        foreign
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );
}

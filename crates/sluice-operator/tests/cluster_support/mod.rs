//! Support for the cluster tier: tests against a real control plane (`sluice_testkit::Cluster`:
//! etcd, kube-apiserver with RBAC and an audit log, controller-manager, scheduler, kwok).
//!
//! The operator runs as a process (the release binary's code, built for the tests) with the
//! credentials of the chart's ServiceAccount: a token from the TokenRequest API, so the chart's
//! RBAC is what the apiserver enforces, and the chart's own rendered flags.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde::Deserialize as _;
use serde_json::Value;
use sluice_testkit::{Cluster, Proc, free_port};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// An admin client for `cluster`.
pub async fn admin_client(cluster: &Cluster) -> Client {
    let kubeconfig = Kubeconfig::read_from(cluster.kubeconfig()).expect("read kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig is valid");
    Client::try_from(config).expect("client")
}

/// Polls `check` every 250 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `kubectl ... `, panicking with its output unless it succeeds; returns stdout.
pub fn kubectl(cluster: &Cluster, args: &[&str]) -> String {
    Cluster::check(cluster.kubectl().args(args))
}

/// `kubectl apply -f -` of `yaml` (client-side, as a user would), in `namespace`.
pub fn kubectl_apply(cluster: &Cluster, namespace: &str, yaml: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = cluster
        .kubectl()
        .args(["apply", "-n", namespace, "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn kubectl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("kubectl apply");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Creates a namespace (idempotent).
pub fn namespace(cluster: &Cluster, name: &str) {
    let (ok, out) = kubectl_apply(
        cluster,
        "default",
        &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"),
    );
    assert!(ok, "create namespace {name}: {out}");
    // Pods are refused until the controller-manager has made the default ServiceAccount.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !Cluster::try_run(cluster.kubectl().args(["-n", name, "get", "sa", "default"])).0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no default ServiceAccount in {name}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Applies the CRD the repository ships (`crds/`), server-side, and waits until it is
/// Established: for tests that do not install the chart.
pub fn install_crd(cluster: &Cluster) {
    kubectl(
        cluster,
        &[
            "apply",
            "--server-side",
            "--field-manager=sluice-tests",
            "-f",
            repo().join("crds").to_str().unwrap(),
        ],
    );
    wait_established(cluster);
}

/// Waits until the InferenceService CRD is Established. Retries `kubectl wait`, which fails at
/// once (rather than waiting) while the apiserver has not yet published the new object.
pub fn wait_established(cluster: &Cluster) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, out) = Cluster::try_run(cluster.kubectl().args([
            "wait",
            "--for=condition=Established",
            "--timeout=10s",
            "crd/inferenceservices.sluice.dev",
        ]));
        if ok {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the CRD was not Established within 60 s: {out}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// One Helm release of `charts/sluice`, and what it rendered for the operator.
pub struct Chart {
    pub release: String,
    pub namespace: String,
    pub service_account: String,
    /// The operator container's arguments, as the chart renders them.
    pub args: Vec<String>,
    /// The operator container's plain `env` values (fieldRefs are the test's to set).
    pub env: Vec<(String, String)>,
    /// The operator's Deployment name (its fake pods carry the selector labels).
    pub deployment: String,
    /// The Secret and key the operator's admin key seed is mounted from, when enabled.
    pub admin_key_seed: Option<(String, String)>,
}

impl Chart {
    /// `helm install <release> charts/sluice -n <namespace> --create-namespace --wait` with
    /// `--set` values, then reads back the rendered manifest.
    pub fn install(cluster: &Cluster, release: &str, namespace: &str, values: &[&str]) -> Chart {
        let mut cmd = cluster.helm();
        cmd.args(["install", release])
            .arg(repo().join("charts/sluice"))
            .args([
                "-n",
                namespace,
                "--create-namespace",
                "--wait",
                "--timeout",
                "120s",
            ]);
        for v in values {
            cmd.args(["--set", v]);
        }
        Cluster::check(&mut cmd);
        Chart::read(cluster, release, namespace)
    }

    /// Reads the operator's ServiceAccount, Deployment args and env from `helm get manifest`.
    pub fn read(cluster: &Cluster, release: &str, namespace: &str) -> Chart {
        let manifest = Cluster::check(
            cluster
                .helm()
                .args(["get", "manifest", release, "-n", namespace]),
        );
        let mut service_account = None;
        let mut deployment = None;
        for doc in serde_yaml::Deserializer::from_str(&manifest) {
            let Ok(v) = Value::deserialize(doc) else {
                continue;
            };
            match v["kind"].as_str() {
                Some("ServiceAccount") => {
                    service_account = v["metadata"]["name"].as_str().map(str::to_owned)
                }
                Some("Deployment") => deployment = Some(v),
                _ => {}
            }
        }
        let deployment = deployment.expect("the chart renders the operator Deployment");
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let args = container["args"]
            .as_array()
            .expect("operator args")
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        let env = container["env"]
            .as_array()
            .map(|env| {
                env.iter()
                    .filter_map(|e| {
                        Some((
                            e["name"].as_str()?.to_owned(),
                            e["value"].as_str()?.to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let admin_key_seed = deployment["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == "admin-key-seed")
            .map(|v| {
                (
                    v["secret"]["secretName"].as_str().unwrap().to_owned(),
                    v["secret"]["items"][0]["key"].as_str().unwrap().to_owned(),
                )
            });
        Chart {
            release: release.into(),
            namespace: namespace.into(),
            service_account: service_account.expect("the chart renders a ServiceAccount"),
            args,
            env,
            deployment: deployment["metadata"]["name"].as_str().unwrap().to_owned(),
            admin_key_seed,
        }
    }

    /// `system:serviceaccount:<ns>:<sa>`: the user the apiserver sees for the operator.
    pub fn user(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        )
    }

    /// Names of the operator Deployment's (fake, kwok-run) pods once they exist.
    pub fn operator_pods(&self, cluster: &Cluster, n: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let out = kubectl(
                cluster,
                &[
                    "-n",
                    &self.namespace,
                    "get",
                    "pods",
                    "-l",
                    &format!("app.kubernetes.io/instance={}", self.release),
                    "-o",
                    "jsonpath={.items[*].metadata.name}",
                ],
            );
            let pods: Vec<String> = out.split_whitespace().map(str::to_owned).collect();
            if pods.len() >= n {
                return pods;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the chart's operator Deployment has {} of {n} pods",
                pods.len()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// The operator binary running as one replica of a chart release.
pub struct Operator {
    proc: Proc,
    pub pod: String,
    pub metrics_port: u16,
}

impl Operator {
    /// Starts `sluice-operator` with the chart's rendered args (`overrides` replace flags of
    /// the same name; the metrics address becomes a loopback port) and a kubeconfig holding a
    /// TokenRequest token of the chart's ServiceAccount, bound to the fake operator pod `pod`
    /// (so the audit log names the replica that made each request).
    pub fn start(cluster: &Cluster, chart: &Chart, pod: &str, overrides: &[String]) -> Operator {
        let token = kubectl(
            cluster,
            &[
                "-n",
                &chart.namespace,
                "create",
                "token",
                &chart.service_account,
                "--duration=2h",
                "--bound-object-kind=Pod",
                &format!("--bound-object-name={pod}"),
            ],
        );
        let dir = cluster.scratch(&format!("operator-{}-{pod}", chart.namespace));
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: operator\n  user:\n    token: {}\ncontexts:\n- name: c\n  context: {{cluster: c, user: operator}}\ncurrent-context: c\n",
                cluster.server_url(),
                cluster.ca_file().display(),
                token.trim()
            ),
        )
        .unwrap();
        let metrics_port = free_port();
        let mut args: Vec<String> = Vec::new();
        let flag = |a: &str| a.split('=').next().unwrap_or(a).to_owned();
        let overridden: BTreeSet<String> = overrides.iter().map(|o| flag(o)).collect();
        for a in &chart.args {
            if a.starts_with("--metrics-addr") || overridden.contains(&flag(a)) {
                continue;
            }
            if a.starts_with("--admin-key-seed-file") {
                // The pod would mount the seed Secret there; this process gets a copy of it,
                // read with the admin's credentials (the operator's own may not read Secrets).
                let (secret, key) = chart.admin_key_seed.clone().expect("the seed volume");
                let b64 = kubectl(
                    cluster,
                    &[
                        "-n",
                        &chart.namespace,
                        "get",
                        "secret",
                        &secret,
                        "-o",
                        &format!("jsonpath={{.data.{key}}}"),
                    ],
                );
                let seed = Command::new("base64")
                    .arg("-d")
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .and_then(|mut c| {
                        use std::io::Write;
                        c.stdin.take().unwrap().write_all(b64.trim().as_bytes())?;
                        c.wait_with_output()
                    })
                    .expect("base64 -d");
                let path = dir.join("admin-key-seed");
                std::fs::write(&path, seed.stdout).unwrap();
                args.push(format!("--admin-key-seed-file={}", path.display()));
                continue;
            }
            args.push(a.clone());
        }
        args.push(format!("--metrics-addr=127.0.0.1:{metrics_port}"));
        args.extend(overrides.iter().cloned());
        // SLUICE_OPERATOR_BIN: another build of the binary, e.g. the release build for the
        // scale benchmark (the test build is unoptimised).
        let bin = std::env::var_os("SLUICE_OPERATOR_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sluice-operator")));
        let mut cmd = Command::new(bin);
        cmd.args(&args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAME", pod)
            .env("POD_NAMESPACE", &chart.namespace);
        for (k, v) in &chart.env {
            cmd.env(k, v);
        }
        cmd.env("SLUICE_LOG_JSON", "false")
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info,sluice_operator=debug");
        let proc = Proc::spawn(cmd, dir.join("operator.log"));
        Operator {
            proc,
            pod: pod.into(),
            metrics_port,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.proc.id()
    }

    /// Sends `signal` (e.g. `KILL`, `TERM`).
    pub fn signal(&self, signal: &str) {
        Cluster::check(Command::new("kill").args([format!("-{signal}"), self.pid().to_string()]));
    }

    /// Waits (up to `timeout`) for the process to exit; its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(s) = self.proc.exited() {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "operator {} did not exit within {timeout:?}:\n{}",
                self.pod,
                self.proc.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.proc.exited().is_none()
    }

    /// The last part of its log.
    pub fn log_tail(&self) -> String {
        self.proc.log_tail()
    }

    /// Its `/metrics` text.
    pub fn metrics(&self) -> String {
        sluice_testkit::http_get_body(self.metrics_port, "/metrics").unwrap_or_default()
    }
}

/// One request in the apiserver's audit log.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub verb: String,
    pub user: String,
    /// The pod a bound service-account token names, if any.
    pub pod: Option<String>,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub code: Option<u64>,
    pub user_agent: String,
}

impl AuditEvent {
    /// create, update, patch, delete, deletecollection.
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }
}

impl std::fmt::Display for AuditEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}{} {}/{} by {}{} -> {}",
            self.verb,
            self.resource,
            self.subresource
                .as_deref()
                .map(|s| format!("/{s}"))
                .unwrap_or_default(),
            self.namespace.as_deref().unwrap_or("-"),
            self.name.as_deref().unwrap_or("-"),
            self.user,
            self.pod
                .as_deref()
                .map(|p| format!(" (pod {p})"))
                .unwrap_or_default(),
            self.code.map(|c| c.to_string()).unwrap_or_default()
        )
    }
}

/// A read position in the audit log: events after it.
pub struct AuditCursor {
    path: PathBuf,
    offset: u64,
}

impl AuditCursor {
    /// A cursor at the current end of the log.
    pub fn now(cluster: &Cluster) -> AuditCursor {
        let path = cluster.audit_log();
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        AuditCursor { path, offset }
    }

    /// A cursor at the start of the log.
    pub fn start(cluster: &Cluster) -> AuditCursor {
        AuditCursor {
            path: cluster.audit_log(),
            offset: 0,
        }
    }

    /// Every event written since the cursor (complete lines only).
    pub fn events(&self) -> Vec<AuditEvent> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&self.path).expect("audit log");
        f.seek(SeekFrom::Start(self.offset)).unwrap();
        let mut text = String::new();
        f.read_to_string(&mut text).unwrap();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|e| AuditEvent {
                verb: e["verb"].as_str().unwrap_or_default().into(),
                user: e["user"]["username"].as_str().unwrap_or_default().into(),
                pod: e["user"]["extra"]["authentication.kubernetes.io/pod-name"][0]
                    .as_str()
                    .map(str::to_owned),
                resource: e["objectRef"]["resource"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
                subresource: e["objectRef"]["subresource"].as_str().map(str::to_owned),
                namespace: e["objectRef"]["namespace"].as_str().map(str::to_owned),
                name: e["objectRef"]["name"].as_str().map(str::to_owned),
                code: e["responseStatus"]["code"].as_u64(),
                user_agent: e["userAgent"].as_str().unwrap_or_default().into(),
            })
            .collect()
    }

    /// Events since the cursor by `user`.
    pub fn by(&self, user: &str) -> Vec<AuditEvent> {
        self.events()
            .into_iter()
            .filter(|e| e.user == user)
            .collect()
    }
}

/// Instant and range queries `prometheus` has answered so far, from its own `/metrics` page (it
/// does not scrape itself).
pub fn prometheus_queries(prometheus: &sluice_testkit::Prometheus) -> f64 {
    let page = sluice_testkit::http_get_body(prometheus.port(), "/metrics").unwrap_or_default();
    page.lines()
        .filter(|l| {
            l.starts_with("prometheus_http_requests_total{")
                && (l.contains("handler=\"/api/v1/query\"")
                    || l.contains("handler=\"/api/v1/query_range\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The cluster shared by the tests of this process, with the repository's CRD applied.
pub fn shared_with_crd() -> &'static Cluster {
    static CRD: std::sync::Once = std::sync::Once::new();
    let c = Cluster::shared();
    CRD.call_once(|| install_crd(c));
    c
}

/// An example manifest from `examples/`.
pub fn example(name: &str) -> Value {
    let path = repo().join("examples").join(name);
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `examples/tiny-cpu.yaml` renamed.
pub fn tiny(name: &str) -> Value {
    let mut v = example("tiny-cpu.yaml");
    v["metadata"]["name"] = serde_json::json!(name);
    v
}

/// The status of condition `type_`.
pub fn condition(isvc: &sluice_api::InferenceService, type_: &str) -> Option<String> {
    isvc.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

/// Waits until `name` is Ready=True with status.observedGeneration equal to its generation.
pub async fn ready(client: &Client, ns: &str, name: &str) -> sluice_api::InferenceService {
    let api: kube::Api<sluice_api::InferenceService> = kube::Api::namespaced(client.clone(), ns);
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

/// `manager:operation` of each managedFields entry.
pub fn managers(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Vec<String> {
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

/// Waits until the Deployment `name` runs exactly `replicas` Ready pods, all of its current
/// template, with `cpu` requested.
pub async fn rolled_out(
    deployments: &kube::Api<k8s_openapi::api::apps::v1::Deployment>,
    name: &str,
    cpu: &str,
    replicas: i32,
) {
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
                && st.ready_replicas == Some(replicas)
                && st.replicas == Some(replicas))
            .then_some(())
        },
    )
    .await;
}

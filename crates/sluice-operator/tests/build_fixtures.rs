//! Validate + build stages on YAML fixtures (`tests/fixtures/*.yaml`; each says why its values
//! were chosen). Pure: no API server involved.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sluice_api::{AppliedSettings, InferenceService, Quantization};
use sluice_contract::admin::RuntimeSettings;
use sluice_operator::build::{self, BuildOptions, Monitoring};
use sluice_operator::effective::{self, Recorded, Running};
use sluice_operator::error::ValidationError;
use sluice_operator::validate::{self, Validated};

fn load(name: &str) -> InferenceService {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn opts(monitoring: Monitoring) -> BuildOptions {
    BuildOptions {
        server_image: "registry.test/sluice-server:1".into(),
        server_cuda_image: "registry.test/sluice-server:1-cuda".into(),
        monitoring,
        network_policy_for: None,
        inference_namespaces: Vec::new(),
        admin_key_id: None,
        pod_otlp_endpoint: None,
    }
}

fn valid(name: &str) -> Validated {
    validate::validate(&load(name)).unwrap()
}

fn args(children: &build::Children) -> Vec<String> {
    children
        .deployment
        .spec
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap()
}

/// The value of `name` in rendered arguments (each flag appears once).
fn flag<'a>(args: &'a [String], name: &str) -> &'a str {
    let at: Vec<usize> = (0..args.len()).filter(|&i| args[i] == name).collect();
    assert_eq!(at.len(), 1, "{name} appears once in {args:?}");
    &args[at[0] + 1]
}

#[test]
fn tiny_cpu_uses_defaults() {
    let v = valid("tiny-cpu.yaml");
    let eff = effective::derive(&v, &Running::default());
    assert_eq!(
        eff,
        AppliedSettings {
            replicas: 1,
            quantization: Quantization::F16,
            max_tokens: 256
        }
    );
    let c = build::build(&v, &eff, &opts(Monitoring::Annotations));
    assert_eq!(
        args(&c),
        [
            "--model",
            "builtin:tiny",
            "--host",
            "0.0.0.0",
            "--port",
            "8000",
            "--admin-port",
            "8001",
            "--settings-file",
            "/etc/sluice/settings.json",
            "--max-concurrent-requests",
            "64",
            "--max-batch-size",
            "16",
            "--kv-cache-dtype",
            "f16",
            "--request-timeout",
            "60s",
            "--drain-delay",
            "5s",
            "--drain-timeout",
            "30s",
            "--header-read-timeout",
            "10s",
            "--body-read-timeout",
            "30s",
            "--max-connections",
            "1024",
            "--served-model-name",
            "tiny",
            "--device",
            "cpu",
            "--model-root",
            "/models",
            "--log-format",
            "json",
        ]
    );
    let dep = &c.deployment;
    assert_eq!(
        dep.spec.replicas, None,
        "the count has its own field manager"
    );
    assert_eq!(c.replicas, build::Replicas::Set(1));
    let pod = dep.spec.template.spec.as_ref().unwrap();
    assert_eq!(
        pod.termination_grace_period_seconds,
        Some(55),
        "preStop 5 s + drain delay 5 s + drain 30 s + slack"
    );
    let container = &pod.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("registry.test/sluice-server:1")
    );
    assert_eq!(container.ports.as_ref().unwrap()[0].container_port, 8000);
    assert_eq!(
        container.ports.as_ref().unwrap()[0].name.as_deref(),
        Some("http")
    );
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .clone()
            .unwrap()
    };
    assert_eq!(probe_path(&container.liveness_probe), "/health");
    assert_eq!(probe_path(&container.readiness_probe), "/ready");
    assert_eq!(probe_path(&container.startup_probe), "/health");
    assert!(container.resources.is_none());
    assert!(c.pdb.is_none(), "one replica: no PDB");
    assert!(c.service_monitor.is_none());
    assert!(c.prometheus_rule.is_none());
    let annotations = dep
        .spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .clone()
        .unwrap();
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "8000");
    let owner = &dep.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("InferenceService", "tiny")
    );
    assert_eq!(owner.controller, Some(true));
    let svc = c.service.spec.as_ref().unwrap();
    assert_eq!(svc.ports.as_ref().unwrap()[0].port, 8000);
    // The admin API has a container port of its own that the Service never exposes.
    let ports: Vec<(Option<String>, i32)> = dep.spec.template.spec.as_ref().unwrap().containers[0]
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone(), p.container_port))
        .collect();
    assert_eq!(
        ports,
        [(Some("http".into()), 8000), (Some("admin".into()), 8001)]
    );
    assert!(
        svc.ports.iter().flatten().all(|p| p.port != 8001),
        "the Service exposes only inference"
    );
    assert_eq!(svc.selector, dep.spec.selector.match_labels);
    assert_eq!(build::endpoint(&v), "http://tiny.demo.svc:8000");
}

/// The operator's rendered arguments, parsed by the server's own command-line parser, are
/// exactly the settings the operator meant: no flag the server does not know, none misspelled,
/// none with a value it would read differently.
#[test]
fn the_server_parses_the_operators_arguments_into_the_intended_settings() {
    use clap::Parser;
    use sluice_contract::server::ServerArgs;

    #[derive(Parser)]
    struct Server {
        #[command(flatten)]
        args: ServerArgs,
    }
    for fixture in ["tiny-cpu.yaml", "mistral-gpu.yaml", "pvc-gguf.yaml"] {
        let v = valid(fixture);
        let eff = effective::derive(&v, &Running::default());
        let c = build::build(&v, &eff, &opts(Monitoring::Annotations));
        let argv = std::iter::once("sluice-server".to_owned()).chain(args(&c));
        let parsed = Server::try_parse_from(argv)
            .unwrap_or_else(|e| panic!("{fixture}: the server rejects the operator's args: {e}"))
            .args;
        assert_eq!(parsed, build::server_settings(&v), "{fixture}");
    }
}

/// Regression: children carried `app.kubernetes.io/instance: <CR name>`, the label Argo CD
/// tracks an Application's objects by, so an Application of that name adopted and pruned them.
#[test]
fn children_do_not_carry_argo_cds_tracking_label() {
    let v = valid("tiny-cpu.yaml");
    let eff = effective::derive(&v, &Running::default());
    let c = build::build(&v, &eff, &opts(Monitoring::Annotations));
    let pod_labels = c
        .deployment
        .spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    for labels in [
        c.deployment.metadata.labels.clone().unwrap(),
        c.service.metadata.labels.clone().unwrap(),
        pod_labels,
    ] {
        assert!(
            !labels.contains_key("app.kubernetes.io/instance"),
            "{labels:?}"
        );
        assert_eq!(labels[build::INSTANCE_LABEL], "tiny");
    }
}

#[test]
fn every_pod_meets_restricted_pod_security() {
    for fixture in ["tiny-cpu.yaml", "mistral-gpu.yaml", "pvc-gguf.yaml"] {
        let v = valid(fixture);
        let c = build::build(
            &v,
            &effective::derive(&v, &Running::default()),
            &opts(Monitoring::Annotations),
        );
        let pod = c.deployment.spec.template.spec.unwrap();
        let psc = pod.security_context.unwrap();
        assert_eq!(psc.run_as_non_root, Some(true), "{fixture}");
        assert_eq!(
            psc.seccomp_profile.unwrap().type_,
            "RuntimeDefault",
            "{fixture}"
        );
        assert_eq!(pod.automount_service_account_token, Some(false));
        for container in &pod.containers {
            let sc = container.security_context.clone().unwrap();
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{fixture}");
            assert_eq!(sc.read_only_root_filesystem, Some(true), "{fixture}");
            assert_eq!(sc.run_as_non_root, Some(true), "{fixture}");
            assert_eq!(
                sc.capabilities.unwrap().drop,
                Some(vec!["ALL".to_owned()]),
                "{fixture}"
            );
            assert_eq!(
                sc.seccomp_profile.unwrap().type_,
                "RuntimeDefault",
                "{fixture}"
            );
            let tmp = container
                .volume_mounts
                .as_ref()
                .unwrap()
                .iter()
                .any(|m| m.mount_path == "/tmp");
            assert!(tmp, "{fixture}: read-only root needs a writable /tmp");
        }
    }
}

#[test]
fn mistral_gpu_from_hf_cache() {
    let v = valid("mistral-gpu.yaml");
    let eff = effective::derive(&v, &Running::default());
    assert_eq!(eff.replicas, 2);
    assert_eq!(eff.quantization, Quantization::Q8_0);
    assert_eq!(eff.max_tokens, 512);
    let labels = BTreeMap::from([("release".to_owned(), "kps".to_owned())]);
    let c = build::build(
        &v,
        &eff,
        &opts(Monitoring::ServiceMonitor {
            labels,
            alert_rules: true,
        }),
    );
    let a = args(&c);
    assert_eq!(
        flag(&a, "--model"),
        "hf:mistralai/Mistral-7B-Instruct-v0.2@41b61a33a2483885c981aa79e0df6b32407ed873"
    );
    assert_eq!(flag(&a, "--settings-file"), "/etc/sluice/settings.json");
    let rt = build::recorded(&c.settings).unwrap().runtime;
    assert_eq!((rt.quantization, rt.max_tokens), (Quantization::Q8_0, 512));
    assert_eq!(flag(&a, "--max-concurrent-requests"), "32");
    assert_eq!(flag(&a, "--drain-timeout"), "120s");
    assert_eq!(flag(&a, "--served-model-name"), "mistral-7b");
    assert_eq!(flag(&a, "--device"), "cuda", "GPU pods run the CUDA device");

    let pod = c.deployment.spec.template.spec.clone().unwrap();
    assert_eq!(
        pod.termination_grace_period_seconds,
        Some(145),
        "preStop 5 s + drain delay 5 s + drain 120 s + slack"
    );
    let container = &pod.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("registry.test/sluice-server:1-cuda")
    );
    let res = container.resources.clone().unwrap();
    assert_eq!(res.limits.as_ref().unwrap()["nvidia.com/gpu"].0, "1");
    assert_eq!(res.requests.as_ref().unwrap()["nvidia.com/gpu"].0, "1");
    assert_eq!(res.limits.as_ref().unwrap()["memory"].0, "32Gi");
    assert!(
        !res.limits.as_ref().unwrap().contains_key("cpu"),
        "no CPU limit"
    );
    let env = container.env.clone().unwrap();
    let get = |n: &str| env.iter().find(|e| e.name == n).cloned().unwrap();
    assert_eq!(
        get("HF_HOME").value.as_deref(),
        Some("/var/cache/huggingface")
    );
    assert_eq!(get("HF_HUB_OFFLINE").value.as_deref(), Some("1"));
    let key = get("SLUICE_API_KEY")
        .value_from
        .unwrap()
        .secret_key_ref
        .unwrap();
    assert_eq!(
        (key.name.as_str(), key.key.as_str()),
        ("sluice-api-key-mistral", "token")
    );
    let vol = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "hf-cache")
        .unwrap();
    let pvc = vol.persistent_volume_claim.unwrap();
    assert_eq!(
        (pvc.claim_name.as_str(), pvc.read_only),
        ("hf-cache", Some(true))
    );
    let mount = container
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == "hf-cache")
        .unwrap();
    assert_eq!(mount.read_only, Some(true));
    let tol = &pod.tolerations.unwrap()[0];
    assert_eq!(tol.key.as_deref(), Some("nvidia.com/gpu"));
    assert_eq!(
        pod.node_selector.unwrap()["nvidia.com/gpu.product"],
        "NVIDIA-A10G"
    );
    let rolling = c
        .deployment
        .spec
        .strategy
        .clone()
        .unwrap()
        .rolling_update
        .unwrap();
    assert_eq!(rolling.max_surge, Some(IntOrString::Int(0)));

    let pdb = c.pdb.expect("two replicas: PDB");
    assert_eq!(pdb.spec.unwrap().max_unavailable, Some(IntOrString::Int(1)));
    let sm = c.service_monitor.expect("prometheus operator present");
    assert_eq!(sm.metadata.labels.unwrap()["release"], "kps");
    assert_eq!(sm.data["spec"]["endpoints"][0]["port"], "http");
    let rule = c.prometheus_rule.expect("alert rules on");
    assert_eq!(rule.metadata.labels.unwrap()["release"], "kps");
    let group = &rule.data["spec"]["groups"][0];
    assert_eq!(group["name"], "sluice-llm-mistral");
    // Error ratio and TTFT: four burn-rate alerts each; TPOT and memory: one each.
    assert_eq!(group["rules"].as_array().unwrap().len(), 10);
    assert!(
        c.deployment
            .spec
            .template
            .metadata
            .unwrap()
            .annotations
            .is_none()
    );
}

#[test]
fn pvc_gguf_mounts_the_claim() {
    let v = valid("pvc-gguf.yaml");
    let c = build::build(
        &v,
        &effective::derive(&v, &Running::default()),
        &opts(Monitoring::Annotations),
    );
    let a = args(&c);
    assert_eq!(flag(&a, "--model"), "/models/llama/llama-3.2-1b.Q4_0.gguf");
    let rt = build::recorded(&c.settings).unwrap().runtime;
    assert_eq!(rt.quantization, Quantization::Q4_0);
    let pod = c.deployment.spec.template.spec.unwrap();
    let vol = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "model")
        .unwrap();
    assert_eq!(vol.persistent_volume_claim.unwrap().claim_name, "models");
    assert!(pod.tolerations.is_none(), "CPU pod: no GPU toleration");
}

#[test]
fn name_that_cannot_name_a_service_is_rejected() {
    let err = validate::validate(&load("invalid-name.yaml")).unwrap_err();
    assert!(matches!(err, ValidationError::InvalidName { .. }));
    assert!(
        err.to_string()
            .starts_with("failed to validate InferenceService demo/7b.model")
    );
}

#[test]
fn starting_quantization_off_the_ladder_is_rejected() {
    let err = validate::validate(&load("invalid-ladder.yaml")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to validate InferenceService demo/off-ladder: spec.serving.quantization: q4k is not in quantizationLadder"
    );
}

fn running(
    replicas: u32,
    q: Quantization,
    max_tokens: usize,
    spec: (Quantization, u32),
) -> Running {
    Running {
        replicas: Some(replicas),
        settings: Some(Recorded {
            runtime: RuntimeSettings {
                max_tokens,
                quantization: q,
            },
            spec_quantization: spec.0,
            spec_max_tokens: spec.1,
        }),
    }
}

#[test]
fn auto_mode_starts_from_what_runs_within_bounds() {
    let v = valid("mistral-gpu.yaml");
    let spec = (v.serving.quantization, v.serving.max_tokens.default);
    let eff = effective::derive(&v, &running(9, Quantization::Q4_0, 64, spec));
    assert_eq!(
        eff,
        AppliedSettings {
            replicas: 4,
            quantization: Quantization::Q4_0,
            max_tokens: 128
        },
        "replicas clamped to max, tokens clamped to floor, ladder level kept"
    );
    assert_eq!(
        effective::derive(&v, &running(2, Quantization::Q4K, 200, spec)).quantization,
        Quantization::Q8_0,
        "off the ladder: the spec's start"
    );
    assert_eq!(
        effective::derive(&v, &Running::default()),
        effective::start(&v),
        "nothing runs yet"
    );
}

#[test]
fn withdrawn_knobs_and_advise_mode_freeze_what_runs() {
    let mut isvc = load("mistral-gpu.yaml");
    let spec = (
        isvc.spec.serving.quantization,
        isvc.spec.serving.max_tokens.default,
    );
    let now = running(3, Quantization::Q4_0, 200, spec);
    isvc.spec.remediation.knobs = vec![sluice_api::Knob::Replicas];
    let v = validate::validate(&isvc).unwrap();
    let eff = effective::derive(&v, &now);
    assert_eq!(
        (eff.replicas, eff.quantization, eff.max_tokens),
        (3, Quantization::Q4_0, 200)
    );
    isvc.spec.remediation.mode = sluice_api::Mode::Advise;
    let v = validate::validate(&isvc).unwrap();
    assert_eq!(
        effective::derive(&v, &now),
        AppliedSettings {
            replicas: 3,
            quantization: Quantization::Q4_0,
            max_tokens: 200
        }
    );
    // A new spec value for a knob is the user speaking: it wins over the frozen one.
    isvc.spec.serving.max_tokens.default = 300;
    let v = validate::validate(&isvc).unwrap();
    assert_eq!(effective::derive(&v, &now).max_tokens, 300);
    // With the count set through the scale subresource, that count runs.
    isvc.spec.replicas.count = Some(2);
    let v = validate::validate(&isvc).unwrap();
    assert_eq!(effective::derive(&v, &now).replicas, 2);
}

#[test]
fn replicas_count_is_refused_where_sluice_moves_replicas() {
    let mut isvc = load("mistral-gpu.yaml");
    isvc.spec.replicas.count = Some(2);
    let err = validate::validate(&isvc).unwrap_err().to_string();
    assert!(err.contains("spec.replicas.count"), "{err}");
    isvc.spec.remediation.knobs = vec![sluice_api::Knob::Quantization];
    assert!(validate::validate(&isvc).is_ok());
    isvc.spec.replicas.count = Some(isvc.spec.replicas.max + 1);
    let err = validate::validate(&isvc).unwrap_err().to_string();
    assert!(err.contains("outside"), "{err}");
}

/// The settings ConfigMap round-trips what [`effective::derive`] reads back, and knob values
/// never enter the pod template.
#[test]
fn the_settings_config_map_carries_the_knobs_and_the_template_does_not() {
    let v = valid("mistral-gpu.yaml");
    let eff = AppliedSettings {
        replicas: 2,
        quantization: Quantization::Q4_0,
        max_tokens: 200,
    };
    let c = build::build(&v, &eff, &opts(Monitoring::Annotations));
    let rec = build::recorded(&c.settings).expect("readable");
    assert_eq!(
        rec.runtime,
        RuntimeSettings {
            max_tokens: 200,
            quantization: Quantization::Q4_0
        }
    );
    assert_eq!(rec.spec_quantization, v.serving.quantization);
    assert_eq!(rec.spec_max_tokens, v.serving.max_tokens.default);
    let other = AppliedSettings {
        quantization: Quantization::Q8_0,
        max_tokens: 150,
        replicas: 4,
    };
    let d = build::build(&v, &other, &opts(Monitoring::Annotations));
    assert_eq!(c.deployment, d.deployment, "the template does not move");
    assert_eq!(c.deployment.spec.replicas, None);
    assert_eq!(d.replicas, build::Replicas::Set(4));
}

/// With `--network-policy`, each service gets a NetworkPolicy: its Service port from anywhere,
/// the admin port only from the operator's namespace, for exactly the service's pods.
#[test]
fn the_network_policy_admits_the_admin_port_only_from_the_operator() {
    let v = valid("tiny-cpu.yaml");
    let eff = effective::derive(&v, &Running::default());
    let mut o = opts(Monitoring::Annotations);
    assert!(
        build::build(&v, &eff, &o).network_policy.is_none(),
        "off by default"
    );
    o.network_policy_for = Some("sluice-system".into());
    let c = build::build(&v, &eff, &o);
    let np = c.network_policy.expect("a NetworkPolicy");
    let spec = np.spec.unwrap();
    assert_eq!(
        spec.pod_selector.unwrap().match_labels,
        c.deployment.spec.selector.match_labels
    );
    assert_eq!(spec.policy_types, Some(vec!["Ingress".to_owned()]));
    let rules = spec.ingress.unwrap();
    let port = |r: &k8s_openapi::api::networking::v1::NetworkPolicyIngressRule| {
        r.ports.as_ref().unwrap()[0].port.clone()
    };
    assert_eq!(rules.len(), 2);
    assert_eq!(port(&rules[0]), Some(IntOrString::Int(8000)));
    assert!(
        rules[0].from.is_none(),
        "inference and metrics from anywhere"
    );
    assert_eq!(port(&rules[1]), Some(IntOrString::Int(8001)));
    let from = rules[1].from.as_ref().unwrap();
    assert_eq!(from.len(), 1);
    assert_eq!(
        from[0].namespace_selector.as_ref().unwrap().match_labels,
        Some(BTreeMap::from([(
            "kubernetes.io/metadata.name".to_owned(),
            "sluice-system".to_owned()
        )]))
    );
    assert!(from[0].pod_selector.is_none() && from[0].ip_block.is_none());
    let owner = &np.metadata.owner_references.unwrap()[0];
    assert_eq!(owner.kind, "InferenceService");
}

/// Regression (hardening): pods had no `preStop`, so endpoints still routed clients to a pod
/// that had begun to shut down. The kubelet's own sleep runs first (the image has no shell).
#[test]
fn pods_pause_in_pre_stop_before_sigterm() {
    let v = valid("tiny-cpu.yaml");
    let eff = effective::derive(&v, &Running::default());
    let c = build::build(&v, &eff, &opts(Monitoring::Annotations));
    let container = &c.deployment.spec.template.spec.as_ref().unwrap().containers[0];
    let pre_stop = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .expect("a preStop hook");
    assert_eq!(
        pre_stop.sleep.as_ref().map(|s| s.seconds),
        Some(build::PRE_STOP_SLEEP_SECS)
    );
    assert!(pre_stop.exec.is_none(), "no shell in the image");
}

/// Regression (hardening): the admin API took the inference key. With an admin key seed the
/// pods read their own admin key from the per-service Secret, and the inference key (when the
/// spec names one) stays the inference key.
#[test]
fn admin_credentials_reach_the_pods_from_their_own_secret() {
    let v = valid("tiny-cpu.yaml");
    let eff = effective::derive(&v, &Running::default());
    let pod_of = |admin_key_id: Option<&str>| {
        let o = BuildOptions {
            admin_key_id: admin_key_id.map(str::to_owned),
            pod_otlp_endpoint: None,
            ..opts(Monitoring::Annotations)
        };
        build::build(&v, &eff, &o)
            .deployment
            .spec
            .template
            .spec
            .unwrap()
    };
    let env_of = |admin_key_id: Option<&str>| {
        pod_of(admin_key_id).containers[0]
            .env
            .clone()
            .unwrap_or_default()
    };
    assert!(
        env_of(None)
            .iter()
            .all(|e| e.name != sluice_contract::server::ADMIN_KEY_ENV)
    );
    let env = env_of(Some("0a1b2c3d"));
    let admin = env
        .iter()
        .find(|e| e.name == sluice_contract::server::ADMIN_KEY_ENV)
        .expect("the admin key variable");
    let from = admin
        .value_from
        .as_ref()
        .and_then(|f| f.secret_key_ref.as_ref())
        .expect("from a Secret, never inline");
    assert_eq!(from.name, "tiny-sluice-admin-0a1b2c3d");
    assert_eq!(from.key, build::ADMIN_KEY_SECRET_KEY);
    assert!(admin.value.is_none());

    let secret = build::build_admin_secret(&v, "0a1b2c3d", "k");
    assert_eq!(secret.metadata.name, Some(from.name.clone()));
    assert_eq!(
        secret.metadata.owner_references.as_ref().unwrap()[0].uid,
        v.uid,
        "garbage-collected with the service"
    );
    assert_eq!(secret.immutable, Some(true));

    // With the seed, the admin port serves TLS from the service's own identity Secret; without
    // it, plain HTTP as before (and no volume that would wait for a Secret nobody creates).
    let plain = pod_of(None);
    assert!(
        plain.containers[0]
            .args
            .iter()
            .flatten()
            .all(|a| !a.starts_with("--admin-tls"))
    );
    assert!(
        plain
            .volumes
            .iter()
            .flatten()
            .all(|v| v.name != "admin-tls")
    );
    let tls = pod_of(Some("0a1b2c3d"));
    let volume = tls
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "admin-tls")
        .expect("the admin TLS volume");
    assert_eq!(
        volume.secret.as_ref().unwrap().secret_name.as_deref(),
        Some("tiny-sluice-admin-tls-0a1b2c3d")
    );
    let args = tls.containers[0].args.clone().unwrap();
    let parsed = {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: sluice_contract::server::ServerArgs,
        }
        Cli::try_parse_from(std::iter::once("sluice-server".to_owned()).chain(args.clone()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .args
    };
    let mount = tls.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "admin-tls")
        .expect("mounted");
    assert_eq!(
        parsed.admin_tls_cert_file,
        Some(std::path::Path::new(&mount.mount_path).join("tls.crt"))
    );
    assert_eq!(
        parsed.admin_tls_key_file,
        Some(std::path::Path::new(&mount.mount_path).join("tls.key"))
    );
    let identity = sluice_operator::admin_key::AdminKeys::new(b"0123456789abcdef")
        .unwrap()
        .identity(&v.namespace, &v.name)
        .unwrap();
    let tls_secret = build::build_admin_tls_secret(&v, "0a1b2c3d", &identity);
    assert_eq!(
        tls_secret.metadata.name,
        volume.secret.as_ref().unwrap().secret_name
    );
    assert_eq!(tls_secret.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(tls_secret.immutable, Some(true));
}

/// Hardening: the inference port can be limited to the namespaces the install names (the
/// service's own always included, each once).
#[test]
fn the_network_policy_admits_inference_only_from_named_namespaces() {
    let v = valid("tiny-cpu.yaml");
    let eff = effective::derive(&v, &Running::default());
    let mut o = opts(Monitoring::Annotations);
    o.network_policy_for = Some("sluice-system".into());
    o.inference_namespaces = vec!["monitoring".into(), "apps".into(), v.namespace.clone()];
    let np = build::build(&v, &eff, &o).network_policy.unwrap();
    let rules = np.spec.unwrap().ingress.unwrap();
    let names: Vec<String> = rules[0]
        .from
        .as_ref()
        .expect("inference from named namespaces only")
        .iter()
        .map(|p| {
            p.namespace_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()["kubernetes.io/metadata.name"]
                .clone()
        })
        .collect();
    let mut want = vec![
        "apps".to_owned(),
        "monitoring".to_owned(),
        v.namespace.clone(),
    ];
    want.sort();
    assert_eq!(names, want);
}

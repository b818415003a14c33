//! The server Deployment: `sluice-server` args from the effective settings, probes on `/health`
//! and `/ready`, restricted Pod Security settings, model volumes and scheduling.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, Lifecycle, LifecycleHandler, LocalObjectReference,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext,
    SleepAction, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::settings::{SETTINGS_MOUNT, settings_name, settings_path};
use super::{
    ADMIN_KEY_SECRET_KEY, BuildOptions, Monitoring, admin_secret_name, admin_tls_secret_name,
    child_meta, labels, selector_labels,
};
use crate::validate::{ModelSource, Validated};
use sluice_contract::ModelRef;
use sluice_contract::server::{ADMIN_KEY_ENV, API_KEY_ENV};
use sluice_contract::server::{DeviceKind, LogFormat, ServerArgs};

/// Container port of `sluice-server` (named `http`).
pub const SERVER_PORT: i32 = 8000;
/// Container port of the server's admin API (named `admin`): reached by the operator on the
/// pod IP, never exposed by the Service.
pub const ADMIN_PORT: i32 = 8001;
/// Where the admin TLS Secret is mounted.
pub const ADMIN_TLS_MOUNT: &str = "/var/run/sluice/admin-tls";
/// Where a model PVC is mounted.
pub const MODEL_MOUNT: &str = "/models";
/// Where a Hugging Face cache PVC is mounted (also `HF_HOME`).
pub const HF_CACHE_MOUNT: &str = "/var/cache/huggingface";
/// Unprivileged uid/gid the server runs as (the images' `nonroot` user).
const RUN_AS: i64 = 65532;
/// Extra grace after the server's drain delay and timeout: process exit and kubelet slack.
const GRACE_SLACK_SECS: i64 = 15;

/// The `preStop` pause before the kubelet sends SIGTERM: the pod is already Terminating, so
/// the endpoint controllers and every kube-proxy drop it meanwhile, and no client is routed to
/// a server that has begun to drain. The server's own drain delay then covers routers that lag
/// further (ingresses, meshes).
pub const PRE_STOP_SLEEP_SECS: i64 = 5;
/// GPU resource name of the NVIDIA device plugin.
const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// The server's `--model` value for a validated source, in the contract's grammar.
pub fn model_arg(model: &ModelSource) -> ModelRef {
    match model {
        ModelSource::Builtin(b) => ModelRef::Builtin(*b),
        ModelSource::ImagePath(p) => ModelRef::Path(p.into()),
        ModelSource::Pvc { path, .. } if path.is_empty() => ModelRef::Path(MODEL_MOUNT.into()),
        ModelSource::Pvc { path, .. } => ModelRef::Path(format!("{MODEL_MOUNT}/{path}").into()),
        ModelSource::HuggingFace {
            repo_id, revision, ..
        } => ModelRef::HuggingFace {
            repo: repo_id.clone(),
            revision: revision.clone(),
        },
    }
}

/// `sluice-server` arguments, rendered from the server's own [`ServerArgs`]. Quantization and
/// `max_tokens` are not among them: the server reads them from the settings ConfigMap
/// (`--settings-file`), so moving them never changes the pod template.
pub fn server_args(v: &Validated) -> Vec<String> {
    server_settings(v).to_args()
}

/// The server's settings for this service. The cap and the precision stay at the flags'
/// defaults here (the flags are not rendered): the settings file carries them.
pub fn server_settings(v: &Validated) -> ServerArgs {
    ServerArgs {
        model: model_arg(&v.model),
        host: "0.0.0.0".into(),
        port: SERVER_PORT.unsigned_abs() as u16,
        admin_port: Some(ADMIN_PORT.unsigned_abs() as u16),
        settings_file: Some(settings_path().into()),
        max_concurrent_requests: v.serving.max_concurrent_requests as usize,
        max_batch_size: v.serving.max_batch_size as usize,
        drain_timeout: Duration::from_secs(v.serving.drain_timeout_secs),
        served_model_name: Some(v.served_name.clone()),
        device: if v.serving.resources.gpu > 0 {
            DeviceKind::Cuda
        } else {
            DeviceKind::Cpu
        },
        log_format: LogFormat::Json,
        // Run-time loads (the admin API) stay inside the model volume's mount point.
        model_root: Some(MODEL_MOUNT.into()),
        ..ServerArgs::default()
    }
}

fn env(v: &Validated, opts: &BuildOptions) -> Vec<EnvVar> {
    let mut env = Vec::new();
    if matches!(v.model, ModelSource::HuggingFace { .. }) {
        env.push(EnvVar {
            name: "HF_HOME".into(),
            value: Some(HF_CACHE_MOUNT.into()),
            ..EnvVar::default()
        });
        // Belt and braces: the server never downloads, and neither may any library it uses.
        env.push(EnvVar {
            name: "HF_HUB_OFFLINE".into(),
            value: Some("1".into()),
            ..EnvVar::default()
        });
    }
    if let Some(secret) = &v.serving.api_key {
        env.push(EnvVar {
            name: API_KEY_ENV.into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.name.clone(),
                    key: secret.key.clone(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        });
    }
    if let Some(key_id) = &opts.admin_key_id {
        env.push(EnvVar {
            name: ADMIN_KEY_ENV.into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: admin_secret_name(v, key_id),
                    key: ADMIN_KEY_SECRET_KEY.into(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        });
    }
    env.extend(super::otlp::env(v, opts));
    env
}

fn volumes(v: &Validated) -> (Vec<Volume>, Vec<VolumeMount>) {
    // The root filesystem is read-only; the server may still need scratch space.
    let mut volumes = vec![Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "tmp".into(),
        mount_path: "/tmp".into(),
        ..VolumeMount::default()
    }];
    volumes.push(Volume {
        name: "settings".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: settings_name(v),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    });
    mounts.push(VolumeMount {
        name: "settings".into(),
        mount_path: SETTINGS_MOUNT.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    });
    let claim = match &v.model {
        ModelSource::Pvc { claim_name, .. } => Some(("model", claim_name, MODEL_MOUNT)),
        ModelSource::HuggingFace {
            cache_claim_name, ..
        } => Some(("hf-cache", cache_claim_name, HF_CACHE_MOUNT)),
        ModelSource::Builtin(_) | ModelSource::ImagePath(_) => None,
    };
    if let Some((name, claim_name, mount_path)) = claim {
        volumes.push(Volume {
            name: name.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name.clone(),
                read_only: Some(true),
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: name.into(),
            mount_path: mount_path.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    (volumes, mounts)
}

/// The service's admin TLS Secret, mounted read-only where the server's
/// `--admin-tls-cert-file`/`--admin-tls-key-file` point (see [`crate::admin_tls`]).
fn admin_tls_volume(v: &Validated, key_id: &str) -> (Volume, VolumeMount) {
    let volume = Volume {
        name: "admin-tls".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(admin_tls_secret_name(v, key_id)),
            // Readable by owner and group only: fsGroup makes the server's group the files' group.
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    };
    let mount = VolumeMount {
        name: "admin-tls".into(),
        mount_path: ADMIN_TLS_MOUNT.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    (volume, mount)
}

fn resources(v: &Validated) -> Option<ResourceRequirements> {
    let r = &v.serving.resources;
    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    if let Some(cpu) = &r.cpu {
        // No CPU limit: CFS throttling would surface as TTFT/TPOT spikes the SLO loop misreads.
        requests.insert("cpu".to_owned(), cpu.clone());
    }
    if let Some(memory) = &r.memory {
        requests.insert("memory".to_owned(), memory.clone());
        limits.insert("memory".to_owned(), memory.clone());
    }
    if r.gpu > 0 {
        let gpus = Quantity(r.gpu.to_string());
        requests.insert(GPU_RESOURCE.to_owned(), gpus.clone());
        limits.insert(GPU_RESOURCE.to_owned(), gpus);
    }
    (!requests.is_empty() || !limits.is_empty()).then(|| ResourceRequirements {
        requests: (!requests.is_empty()).then_some(requests),
        limits: (!limits.is_empty()).then_some(limits),
        ..ResourceRequirements::default()
    })
}

fn http_probe(path: &str, period: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

fn tolerations(v: &Validated) -> Option<Vec<Toleration>> {
    if !v.serving.tolerations.is_empty() {
        return Some(v.serving.tolerations.clone());
    }
    // GPU nodes are commonly tainted `nvidia.com/gpu:NoSchedule`; without a toleration a GPU
    // service would never schedule.
    (v.serving.resources.gpu > 0).then(|| {
        vec![Toleration {
            key: Some(GPU_RESOURCE.into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Toleration::default()
        }]
    })
}

fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

/// The server Deployment. Pure, and independent of the effective settings: no knob changes
/// the pod template (quantization and the cap are in the settings ConfigMap, the replica count
/// has its own field manager).
pub fn build_deployment(v: &Validated, opts: &BuildOptions) -> Deployment {
    let gpu = v.serving.resources.gpu > 0;
    let image = v.serving.image.clone().unwrap_or_else(|| {
        if gpu {
            opts.server_cuda_image.clone()
        } else {
            opts.server_image.clone()
        }
    });
    let (mut volumes, mut volume_mounts) = volumes(v);
    if let Some((volume, mount)) = super::otlp::ca_volume(v, opts) {
        volumes.push(volume);
        volume_mounts.push(mount);
    }
    let env = env(v, opts);
    let mut server = server_settings(v);
    if let Some(key_id) = &opts.admin_key_id {
        let (volume, mount) = admin_tls_volume(v, key_id);
        volumes.push(volume);
        volume_mounts.push(mount);
        server.admin_tls_cert_file = Some(format!("{ADMIN_TLS_MOUNT}/tls.crt").into());
        server.admin_tls_key_file = Some(format!("{ADMIN_TLS_MOUNT}/tls.key").into());
    }
    let annotations = match opts.monitoring {
        Monitoring::Annotations => Some(BTreeMap::from([
            ("prometheus.io/scrape".to_owned(), "true".to_owned()),
            ("prometheus.io/port".to_owned(), SERVER_PORT.to_string()),
            ("prometheus.io/path".to_owned(), "/metrics".to_owned()),
        ])),
        Monitoring::ServiceMonitor { .. } => None,
    };
    let container = Container {
        name: "server".into(),
        image: Some(image),
        args: Some(server.to_args()),
        ports: Some(vec![
            ContainerPort {
                name: Some(sluice_contract::server::HTTP_PORT_NAME.into()),
                container_port: SERVER_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("admin".into()),
                container_port: ADMIN_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
        ]),
        env: (!env.is_empty()).then_some(env),
        resources: resources(v),
        // Model loading can take minutes on big models; the startup probe holds off liveness
        // until the server answers, for up to 10 minutes.
        startup_probe: Some(http_probe("/health", 5, 120)),
        liveness_probe: Some(http_probe("/health", 10, 3)),
        readiness_probe: Some(http_probe("/ready", 5, 2)),
        security_context: Some(container_security_context()),
        volume_mounts: Some(volume_mounts),
        // The kubelet's own sleep: the image needs no shell.
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: PRE_STOP_SLEEP_SECS,
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        ..Container::default()
    };
    let pod = PodSpec {
        containers: vec![container],
        volumes: Some(volumes),
        // The server only needs the port it listens on: no API token, no service env vars.
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        // preStop sleep → SIGTERM → the server keeps serving (not ready) for the drain delay,
        // then drains for up to the drain timeout; the grace period (which counts the preStop
        // hook) must not end before all three are over.
        termination_grace_period_seconds: Some(
            i64::try_from(server.drain_delay.as_secs() + v.serving.drain_timeout_secs)
                .unwrap_or(3600)
                + PRE_STOP_SLEEP_SECS
                + GRACE_SLACK_SECS,
        ),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            fs_group: Some(RUN_AS),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        node_selector: (!v.serving.node_selector.is_empty())
            .then(|| v.serving.node_selector.clone()),
        tolerations: tolerations(v),
        affinity: v.serving.affinity.clone(),
        image_pull_secrets: (!v.serving.image_pull_secrets.is_empty()).then(|| {
            v.serving
                .image_pull_secrets
                .iter()
                .map(|name| LocalObjectReference { name: name.clone() })
                .collect()
        }),
        ..PodSpec::default()
    };
    // A GPU pod cannot surge onto a GPU that is not free, so GPU rollouts replace in place;
    // CPU rollouts surge so capacity never dips.
    let rolling = if gpu {
        RollingUpdateDeployment {
            max_surge: Some(IntOrString::Int(0)),
            max_unavailable: Some(IntOrString::Int(1)),
        }
    } else {
        RollingUpdateDeployment {
            max_surge: Some(IntOrString::Int(1)),
            max_unavailable: Some(IntOrString::Int(0)),
        }
    };
    Deployment {
        metadata: child_meta(v),
        spec: DeploymentSpec {
            // Never set here: the count has a field manager of its own (see
            // `crate::reconcile::replicas`), so that when Sluice does not choose it, an HPA,
            // KEDA or `kubectl scale` owns it without a fight.
            replicas: None,
            selector: LabelSelector {
                match_labels: Some(selector_labels(v)),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(rolling),
            }),
            revision_history_limit: Some(3),
            progress_deadline_seconds: Some(900),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(v)),
                    annotations,
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        },
        status: None,
    }
}

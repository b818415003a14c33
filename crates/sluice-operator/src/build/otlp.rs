//! The pods' trace export (pure): the OpenTelemetry SDK's standard environment for the
//! endpoint the service declares or the operator's default, and the CA bundle volume.

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, EnvVar, EnvVarSource, KeyToPath, ObjectFieldSelector, Volume,
    VolumeMount,
};

use super::BuildOptions;
use crate::validate::Validated;
use crate::validate::otlp::Endpoint;

/// Where the CA bundle is mounted in the pod.
pub const CA_MOUNT: &str = "/etc/sluice/otlp-ca";
const CA_FILE: &str = "ca.crt";
const CA_VOLUME: &str = "otlp-ca";

/// The endpoint the pods export to, if any: the service's own, or the operator's default
/// unless the service turned export off.
pub fn endpoint<'a>(v: &'a Validated, opts: &'a BuildOptions) -> Option<&'a str> {
    match &v.tracing.endpoint {
        Endpoint::Url(u) => Some(u),
        Endpoint::Off => None,
        Endpoint::Inherit => opts.pod_otlp_endpoint.as_deref(),
    }
}

fn var(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value),
        ..EnvVar::default()
    }
}

/// `OTEL_*` variables; empty when the pods do not export.
pub fn env(v: &Validated, opts: &BuildOptions) -> Vec<EnvVar> {
    let Some(endpoint) = endpoint(v, opts) else {
        return Vec::new();
    };
    let mut env = vec![
        // Declared before OTEL_RESOURCE_ATTRIBUTES, which refers to it with $(…).
        EnvVar {
            name: "SLUICE_POD_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        },
        var("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_string()),
        // One trace service per InferenceService, as `sluice analyze --jaeger --service` asks.
        var("OTEL_SERVICE_NAME", v.name.clone()),
        var(
            "OTEL_RESOURCE_ATTRIBUTES",
            format!(
                "service.namespace={ns},k8s.namespace.name={ns},k8s.pod.name=$(SLUICE_POD_NAME)",
                ns = v.namespace
            ),
        ),
    ];
    if let Some(ratio) = v.tracing.sampling_ratio {
        // Parent-based: a caller that sampled its request keeps the whole trace.
        env.push(var(
            "OTEL_TRACES_SAMPLER",
            "parentbased_traceidratio".into(),
        ));
        env.push(var("OTEL_TRACES_SAMPLER_ARG", ratio.to_string()));
    }
    if v.tracing.ca.is_some() {
        env.push(var(
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            format!("{CA_MOUNT}/{CA_FILE}"),
        ));
    }
    env
}

/// The CA bundle's ConfigMap volume and mount, when the pods export and trust a CA.
pub fn ca_volume(v: &Validated, opts: &BuildOptions) -> Option<(Volume, VolumeMount)> {
    endpoint(v, opts)?;
    let ca = v.tracing.ca.as_ref()?;
    Some((
        Volume {
            name: CA_VOLUME.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: ca.name.clone(),
                items: Some(vec![KeyToPath {
                    key: ca.key.clone(),
                    path: CA_FILE.into(),
                    ..KeyToPath::default()
                }]),
                optional: Some(false),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        VolumeMount {
            name: CA_VOLUME.into(),
            mount_path: CA_MOUNT.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
    ))
}

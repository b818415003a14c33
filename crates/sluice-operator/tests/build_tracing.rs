//! Build stage, trace export: which `OTEL_*` variables and CA volume the pods get from
//! `spec.tracing` and the operator's `--pod-otlp-endpoint`. Pure: no API server involved.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use sluice_api::{ConfigMapKeyRef, InferenceService, TracingSpec};
use sluice_operator::build::{self, BuildOptions, Monitoring};
use sluice_operator::effective::{self, Running};
use sluice_operator::validate;

fn service(tracing: Option<TracingSpec>) -> InferenceService {
    let path = format!(
        "{}/tests/fixtures/tiny-cpu.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut isvc: InferenceService =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    isvc.spec.tracing = tracing;
    isvc
}

fn pod(isvc: &InferenceService, default: Option<&str>) -> PodSpec {
    let v = validate::validate(isvc).unwrap();
    let eff = effective::derive(&v, &Running::default());
    let opts = BuildOptions {
        server_image: "registry.test/sluice-server:1".into(),
        server_cuda_image: "registry.test/sluice-server:1-cuda".into(),
        monitoring: Monitoring::Annotations,
        network_policy_for: None,
        inference_namespaces: Vec::new(),
        admin_key_id: None,
        pod_otlp_endpoint: default.map(str::to_owned),
    };
    build::build(&v, &eff, &opts)
        .deployment
        .spec
        .template
        .spec
        .unwrap()
}

fn otel_env(c: &Container) -> BTreeMap<String, String> {
    c.env
        .iter()
        .flatten()
        .filter(|e| e.name.starts_with("OTEL_"))
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

fn tracing(endpoint: Option<&str>, ratio: Option<f64>) -> TracingSpec {
    TracingSpec {
        otlp_endpoint: endpoint.map(str::to_owned),
        sampling_ratio: ratio,
        ca_config_map_ref: None,
    }
}

#[test]
fn no_endpoint_anywhere_means_no_export() {
    let p = pod(&service(None), None);
    assert!(otel_env(&p.containers[0]).is_empty());
}

#[test]
fn the_operator_default_reaches_pods_that_declare_nothing() {
    let isvc = service(None);
    let p = pod(&isvc, Some("http://jaeger-collector.tracing:4318"));
    let c = &p.containers[0];
    let env = otel_env(c);
    let ns = isvc.metadata.namespace.clone().unwrap();
    let name = isvc.metadata.name.clone().unwrap();
    assert_eq!(
        env,
        BTreeMap::from([
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                "http://jaeger-collector.tracing:4318".into()
            ),
            ("OTEL_SERVICE_NAME".into(), name),
            (
                "OTEL_RESOURCE_ATTRIBUTES".into(),
                format!(
                    "service.namespace={ns},k8s.namespace.name={ns},k8s.pod.name=$(SLUICE_POD_NAME)"
                )
            ),
        ])
    );
    // $(SLUICE_POD_NAME) expands only when that variable is declared earlier.
    let names: Vec<&str> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
    let pod_name = names.iter().position(|n| *n == "SLUICE_POD_NAME").unwrap();
    let attrs = names
        .iter()
        .position(|n| *n == "OTEL_RESOURCE_ATTRIBUTES")
        .unwrap();
    assert!(pod_name < attrs, "{names:?}");
}

#[test]
fn the_service_overrides_or_turns_off_the_default() {
    let own = pod(
        &service(Some(tracing(Some("https://tempo.team-a:4318"), Some(0.25)))),
        Some("http://default:4318"),
    );
    let env = otel_env(&own.containers[0]);
    assert_eq!(
        env["OTEL_EXPORTER_OTLP_ENDPOINT"],
        "https://tempo.team-a:4318"
    );
    assert_eq!(env["OTEL_TRACES_SAMPLER"], "parentbased_traceidratio");
    assert_eq!(env["OTEL_TRACES_SAMPLER_ARG"], "0.25");

    let off = pod(
        &service(Some(tracing(Some(""), None))),
        Some("http://default:4318"),
    );
    assert!(otel_env(&off.containers[0]).is_empty());

    let ratio_only = pod(
        &service(Some(tracing(None, Some(0.5)))),
        Some("http://default:4318"),
    );
    let env = otel_env(&ratio_only.containers[0]);
    assert_eq!(env["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://default:4318");
    assert_eq!(env["OTEL_TRACES_SAMPLER_ARG"], "0.5");
}

#[test]
fn a_ca_bundle_is_mounted_from_its_config_map() {
    let mut t = tracing(Some("https://otel.internal:4318"), None);
    t.ca_config_map_ref = Some(ConfigMapKeyRef {
        name: "otel-ca".into(),
        key: "bundle.pem".into(),
    });
    let p = pod(&service(Some(t)), None);
    let env = otel_env(&p.containers[0]);
    assert_eq!(
        env["OTEL_EXPORTER_OTLP_CERTIFICATE"],
        "/etc/sluice/otlp-ca/ca.crt"
    );
    let volume = p
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "otlp-ca")
        .expect("the CA volume");
    let cm = volume.config_map.as_ref().unwrap();
    assert_eq!(cm.name, "otel-ca");
    let item = &cm.items.as_ref().unwrap()[0];
    assert_eq!(
        (item.key.as_str(), item.path.as_str()),
        ("bundle.pem", "ca.crt")
    );
    let mount = p.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "otlp-ca")
        .expect("the CA mount");
    assert_eq!(mount.mount_path, "/etc/sluice/otlp-ca");
    assert_eq!(mount.read_only, Some(true));
}

#[test]
fn an_invalid_endpoint_is_refused_naming_the_field() {
    let err = validate::validate(&service(Some(tracing(Some("otel:4318"), None)))).unwrap_err();
    assert!(
        err.to_string().contains("spec.tracing.otlpEndpoint"),
        "{err}"
    );
}

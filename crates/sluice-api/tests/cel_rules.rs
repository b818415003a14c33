//! The CEL rules of the CRD schema, evaluated client-side with kube's CEL validator against the
//! generated schema (the same rules the apiserver enforces on create/update).

use sluice_api::InferenceService;

/// Parses a manifest whose spec is `spec` (YAML, indented under `spec:`) and runs the CEL rules.
fn validate(spec: &str) -> Result<(), String> {
    let manifest = format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: InferenceService\nmetadata:\n  name: t\n  namespace: default\nspec:\n{spec}"
    );
    let isvc: InferenceService =
        serde_yaml::from_str(&manifest).map_err(|e| format!("parse: {e}"))?;
    isvc.validate_cel().map_err(|e| format!("{e:?}"))
}

fn assert_rejected(spec: &str, message: &str) {
    match validate(spec) {
        Ok(()) => panic!("expected rejection with {message:?} for\n{spec}"),
        Err(e) => assert!(e.contains(message), "expected {message:?} in {e}"),
    }
}

const TINY: &str = "  model:\n    builtin: tiny\n";

#[test]
fn minimal_builtin_spec_is_valid() {
    validate(TINY).unwrap();
}

#[test]
fn full_gpu_spec_is_valid() {
    validate(
        r#"  model:
    huggingFace:
      repoId: mistralai/Mistral-7B-Instruct-v0.2
      revision: 41b61a33a2483885c981aa79e0df6b32407ed873
      cache: {claimName: hf-cache}
  serving:
    quantization: q8_0
    quantizationLadder: [f16, q8_0, q4_0]
    maxTokens: {default: 512, floor: 128}
    resources: {gpu: 1, cpu: "4", memory: 32Gi}
  replicas: {min: 1, max: 4}
  slo: {ttftP95: 1s, tpotAvg: 50ms, vramMaxPercent: 85, errorRateMax: 0.001, window: 5m}
  remediation: {mode: Auto, knobs: [Replicas, Quantization]}
"#,
    )
    .unwrap();
}

#[test]
fn replicas_min_above_max_is_rejected() {
    assert_rejected(
        &format!("{TINY}  replicas: {{min: 3, max: 2}}\n"),
        "replicas.min must not exceed replicas.max",
    );
}

#[test]
fn zero_min_replicas_is_rejected() {
    assert_rejected(
        &format!("{TINY}  replicas: {{min: 0, max: 2}}\n"),
        "replicas.min must be at least 1",
    );
}

#[test]
fn no_model_source_is_rejected() {
    assert_rejected(
        "  model: {format: safetensors}\n",
        "exactly one of model.builtin",
    );
}

#[test]
fn two_model_sources_are_rejected() {
    assert_rejected(
        "  model:\n    builtin: tiny\n    image: {path: /models/x}\n",
        "exactly one of model.builtin",
    );
}

#[test]
fn relative_image_path_is_rejected() {
    assert_rejected(
        "  model:\n    image: {path: models/x}\n",
        "model.image.path must be absolute",
    );
}

#[test]
fn pvc_path_escaping_the_volume_is_rejected() {
    assert_rejected(
        "  model:\n    pvc: {claimName: m, path: ../etc}\n",
        "model.pvc.path must be relative",
    );
}

#[test]
fn gguf_format_needs_a_gguf_file() {
    assert_rejected(
        "  model:\n    image: {path: /models/dir}\n    format: gguf\n",
        "model.format gguf needs",
    );
    validate("  model:\n    image: {path: /models/m.gguf}\n    format: gguf\n").unwrap();
}

#[test]
fn malformed_repo_id_is_rejected() {
    assert_rejected(
        "  model:\n    huggingFace: {repoId: no-slash, cache: {claimName: c}}\n",
        "repoId must look like ORG/NAME",
    );
}

#[test]
fn starting_quantization_outside_the_ladder_is_rejected() {
    assert_rejected(
        &format!("{TINY}  serving: {{quantization: q4k, quantizationLadder: [f16, q8_0]}}\n"),
        "serving.quantization must be one of serving.quantizationLadder",
    );
}

#[test]
fn repeated_ladder_level_is_rejected() {
    assert_rejected(
        &format!("{TINY}  serving: {{quantizationLadder: [f16, q8_0, f16]}}\n"),
        "must not repeat a level",
    );
}

#[test]
fn max_tokens_floor_above_default_is_rejected() {
    assert_rejected(
        &format!("{TINY}  serving: {{maxTokens: {{default: 128, floor: 256}}}}\n"),
        "serving.maxTokens.floor must not exceed serving.maxTokens.default",
    );
}

#[test]
fn non_positive_durations_are_rejected() {
    assert_rejected(
        &format!("{TINY}  slo: {{ttftP95: 0s}}\n"),
        "slo.ttftP95 must be positive",
    );
    assert_rejected(
        &format!("{TINY}  slo: {{tpotAvg: -5ms}}\n"),
        "slo.tpotAvg must be positive",
    );
    assert_rejected(
        &format!("{TINY}  remediation: {{cooldowns: {{scaleUp: 0s}}}}\n"),
        "remediation.cooldowns.scaleUp must be positive",
    );
    assert_rejected(
        &format!("{TINY}  serving: {{drainTimeout: 0s}}\n"),
        "serving.drainTimeout must be positive",
    );
}

#[test]
fn too_short_window_is_rejected() {
    assert_rejected(
        &format!("{TINY}  slo: {{window: 10s}}\n"),
        "slo.window must be between 30s and 24h",
    );
}

#[test]
fn percentages_out_of_range_are_rejected() {
    assert_rejected(
        &format!("{TINY}  slo: {{vramMaxPercent: 0}}\n"),
        "slo.vramMaxPercent must be in (0, 100]",
    );
    assert_rejected(
        &format!("{TINY}  slo: {{vramMaxPercent: 120}}\n"),
        "slo.vramMaxPercent must be in (0, 100]",
    );
    assert_rejected(
        &format!("{TINY}  slo: {{errorRateMax: 1.5}}\n"),
        "slo.errorRateMax must be a fraction in [0, 1]",
    );
}

#[test]
fn too_many_gpus_are_rejected() {
    assert_rejected(
        &format!("{TINY}  serving: {{resources: {{gpu: 64}}}}\n"),
        "serving.resources.gpu must be between 0 and 16",
    );
}

#[test]
fn defaults_are_the_seed_slas() {
    let isvc: InferenceService = serde_yaml::from_str(&format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: InferenceService\nmetadata: {{name: t}}\nspec:\n{TINY}"
    ))
    .unwrap();
    let slo = &isvc.spec.slo;
    assert_eq!(slo.ttft_p95, std::time::Duration::from_secs(1));
    assert_eq!(slo.tpot_avg, std::time::Duration::from_millis(50));
    assert_eq!(slo.vram_max_percent, 85);
    assert_eq!(slo.error_rate_max, 0.001);
}

/// Regression: the CRD admitted revisions the server rejects (a CrashLoop instead of an
/// admission error). The CEL rule and the server's grammar now agree on every sample.
#[test]
fn hugging_face_revisions_are_admitted_exactly_when_the_server_accepts_them() {
    for &(revision, ok) in sluice_contract::model::HF_REVISION_SAMPLES {
        if revision.is_empty() {
            continue; // minLength, not the CEL rule, refuses it
        }
        let spec = format!(
            "  model:\n    huggingFace:\n      repoId: org/name\n      revision: {revision:?}\n      cache: {{claimName: hf}}\n"
        );
        let admitted = validate(&spec);
        assert_eq!(admitted.is_ok(), ok, "{revision:?}: {admitted:?}");
        if !ok {
            assert!(
                admitted.unwrap_err().contains("model.huggingFace.revision"),
                "{revision:?}"
            );
        }
    }
}

/// Regression: the CRD admitted repository ids with `..` that the server refuses.
#[test]
fn hugging_face_repo_ids_are_admitted_exactly_when_the_server_accepts_them() {
    for &(repo, ok) in sluice_contract::model::HF_REPO_SAMPLES {
        if repo.len() < 3 {
            continue; // minLength, not the CEL rule, refuses it
        }
        let spec = format!(
            "  model:\n    huggingFace:\n      repoId: {repo:?}\n      cache: {{claimName: hf}}\n"
        );
        let admitted = validate(&spec);
        assert_eq!(admitted.is_ok(), ok, "{repo:?}: {admitted:?}");
        if !ok {
            assert!(
                admitted.unwrap_err().contains("model.huggingFace.repoId"),
                "{repo:?}"
            );
        }
    }
}

/// Regression (hardening): `apiKeySecretRef` could name any Secret in the namespace, so whoever
/// may create an InferenceService chose which Secret its pods receive. Only Secrets named for
/// Sluice are admitted now.
#[test]
fn api_key_secrets_must_carry_the_sluice_prefix() {
    let with = |name: &str| {
        format!("{TINY}  serving:\n    apiKeySecretRef: {{name: {name}, key: token}}\n")
    };
    validate(&with("sluice-api-key-chat")).unwrap();
    for name in [
        "db-password",
        "sluice-api-key-",
        "x-sluice-api-key-chat",
        "sluice-api-keychat",
    ] {
        assert!(validate(&with(name)).is_err(), "{name} must be refused");
    }
    assert_rejected(&with("db-password"), "must start with 'sluice-api-key-'");
    assert_eq!(
        sluice_api::API_KEY_SECRET_CEL,
        format!(
            "self.startsWith('{0}') && self.size() > {1}",
            sluice_api::API_KEY_SECRET_PREFIX,
            sluice_api::API_KEY_SECRET_PREFIX.len()
        ),
        "the CEL rule and the operator's check use one prefix"
    );
}

//! The InferenceService manifests under `examples/` against the CRD's CEL rules: the valid ones
//! pass, the invalid one fails with the messages its comment promises.

use std::path::PathBuf;

use sluice_api::InferenceService;

fn example(name: &str) -> InferenceService {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn valid_examples_pass_the_schema_rules() {
    for name in ["tiny-cpu.yaml", "mistral-7b-gpu.yaml"] {
        let isvc = example(name);
        if let Err(e) = isvc.validate_cel() {
            panic!("{name}: {e:?}");
        }
    }
}

#[test]
fn seed_slas_in_the_gpu_example() {
    let slo = example("mistral-7b-gpu.yaml").spec.slo;
    assert_eq!(slo.ttft_p95, std::time::Duration::from_secs(1));
    assert_eq!(slo.tpot_avg, std::time::Duration::from_millis(50));
    assert_eq!(slo.vram_max_percent, 85);
    assert_eq!(slo.error_rate_max, 0.001);
}

#[test]
fn invalid_example_is_rejected_with_both_messages() {
    let err = format!(
        "{:?}",
        example("invalid-replicas.yaml").validate_cel().unwrap_err()
    );
    assert!(
        err.contains("replicas.min must not exceed replicas.max"),
        "{err}"
    );
    assert!(
        err.contains("serving.quantization must be one of serving.quantizationLadder"),
        "{err}"
    );
}

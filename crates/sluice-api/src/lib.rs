//! Custom resource types of Sluice: `InferenceService` in `sluice.dev/v1alpha1`.
//!
//! Types only: the schema (with CEL validation rules) is derived from them, and
//! [`crd_yaml`] renders the CustomResourceDefinition that `crds/` and the Helm chart carry.
//! No client code lives here.

pub mod model;
pub mod remediation;
pub mod spec;
pub mod status;
pub mod tracing;

pub use model::{
    BuiltinModel, HuggingFaceCache, HuggingFaceModel, ImageModel, ModelFormat, ModelSpec, PvcModel,
};
pub use remediation::{CapacitySpec, Cooldowns, RemediationSpec};
pub use spec::{
    API_KEY_SECRET_CEL, API_KEY_SECRET_PREFIX, ApiKeySecretRef, InferenceService,
    InferenceServiceSpec, MaxTokensSpec, ReplicaBounds, ResourcesSpec, ServingSpec, SloSpec,
};
pub use status::{
    Bottleneck, Decision, InferenceServiceStatus, ObjectiveStatus, SliSnapshot, SloStatus,
    condition,
};
pub use tracing::{ConfigMapKeyRef, TracingSpec};
// The vocabulary the spec and status are written in is the contract crate's; re-exported so a
// user of the CRD types needs one import.
pub use sluice_contract::{
    AppliedSettings, Baseline, BottleneckClass, DecisionKind, DecisionOutcome, Degraded, Evidence,
    Knob, Mode, Objective, ObjectiveState, Quantization,
};

use kube::CustomResourceExt;

/// File name of the generated CRD, in `crds/` and in the chart's `crds/`.
pub const CRD_FILE_NAME: &str = "inferenceservices.sluice.dev.yaml";

/// The CustomResourceDefinition as YAML, exactly as committed under `crds/`.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    let body = serde_yaml::to_string(&InferenceService::crd())?;
    Ok(format!(
        "# Generated from crates/sluice-api by `sluice-operator crd`; do not edit.\n{body}"
    ))
}

//! Custom resource types of Sluice: `InferenceService` in `sluice.dev/v1alpha1`.
//!
//! Types only: the schema (with CEL validation rules) is derived from them, and
//! [`crd_yaml`] renders the CustomResourceDefinition that `crds/` and the Helm chart carry.
//! No client code lives here.

pub mod model;
pub mod remediation;
pub mod spec;
pub mod status;

pub use model::{
    BuiltinModel, HuggingFaceCache, HuggingFaceModel, ImageModel, ModelFormat, ModelSpec, PvcModel,
};
pub use remediation::{Cooldowns, Knob, RemediationMode, RemediationSpec};
pub use spec::{
    InferenceService, InferenceServiceSpec, MaxTokensSpec, Quantization, ReplicaBounds,
    ResourcesSpec, SecretKeyRef, ServingSpec, SloSpec,
};
pub use status::{
    Bottleneck, BottleneckClass, Decision, DecisionBaseline, DecisionKind, DecisionOutcome,
    EffectiveSettings, Evidence, InferenceServiceStatus, Objective, ObjectiveState,
    ObjectiveStatus, SliSnapshot, SloDegraded, SloStatus, condition,
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

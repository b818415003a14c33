//! Where the model comes from: built in, baked into the image, on a PVC, or in a Hugging Face
//! cache volume. The operator never downloads weights.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The model to serve. Exactly one source (`builtin`, `image`, `pvc`, `huggingFace`) must be set.
/// The operator never downloads weights: they are baked into the image, on a volume, or already in
/// a Hugging Face cache volume.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("(has(self.builtin) ? 1 : 0) + (has(self.image) ? 1 : 0) + (has(self.pvc) ? 1 : 0) + (has(self.huggingFace) ? 1 : 0) == 1")
        .message("exactly one of model.builtin, model.image, model.pvc or model.huggingFace must be set"),
    validation = Rule::new("!has(self.format) || self.format != 'gguf' || (has(self.image) && self.image.path.endsWith('.gguf')) || (has(self.pvc) && self.pvc.path.endsWith('.gguf'))")
        .message("model.format gguf needs model.image.path or model.pvc.path naming a .gguf file"),
)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    /// A model compiled into the server. `tiny` is a small random-weight Llama-style model that
    /// runs on any CPU; use it to try Sluice out. `tinyllama` has TinyLlama-1.1B's shape (random
    /// weights, about 4.4 GB in f32) for load tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<BuiltinModel>,
    /// Weights baked into the server image (set `serving.image` to that image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageModel>,
    /// Weights on a PersistentVolumeClaim, mounted read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<PvcModel>,
    /// A Hugging Face repository resolved inside a pre-populated Hugging Face cache volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hugging_face: Option<HuggingFaceModel>,
    /// File format of the weights. `gguf` expects a path to a single `.gguf` file; `safetensors`
    /// a directory with `config.json`, `*.safetensors` and `tokenizer.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ModelFormat>,
    /// Model name reported by the OpenAI-compatible API (`/v1/models`). Defaults to the
    /// resource's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub served_name: Option<String>,
}

/// Models compiled into `sluice-server`: the contract's, so the CRD offers exactly what the
/// server's `--model builtin:NAME` accepts.
pub use sluice_contract::Builtin as BuiltinModel;

/// Weights stored inside the server image.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImageModel {
    /// Absolute path of the model directory or `.gguf` file inside the image.
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("model.image.path must be absolute"))]
    #[schemars(length(min = 1, max = 4096))]
    pub path: String,
}

/// Weights on a PersistentVolumeClaim in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PvcModel {
    /// Name of the PersistentVolumeClaim.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
    /// Path of the model directory or `.gguf` file relative to the volume root; empty means the
    /// volume root itself.
    #[serde(default)]
    #[x_kube(validation = Rule::new("!self.startsWith('/') && !self.contains('..')")
        .message("model.pvc.path must be relative and must not contain '..'"))]
    #[schemars(length(max = 4096))]
    pub path: String,
}

/// A Hugging Face model read from a mounted cache (the layout `huggingface-cli download` writes).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HuggingFaceModel {
    /// Repository id, `ORG/NAME`.
    #[x_kube(validation = Rule::new(sluice_contract::model::HF_REPO_CEL)
        .message("model.huggingFace.repoId must look like ORG/NAME (letters, digits, '.', '_', '-'; no '..')"))]
    #[schemars(length(min = 3, max = 200))]
    pub repo_id: String,
    /// Branch, tag or commit to resolve in the cache. Pin a commit for reproducible rollouts.
    #[serde(default = "default_revision")]
    #[x_kube(validation = Rule::new(sluice_contract::model::HF_REVISION_CEL)
        .message("model.huggingFace.revision must be a branch, tag, commit or ref path: letters, digits, '.', '_', '-' and '/' between non-empty parts that do not start with '.', and no '..'"))]
    #[schemars(length(min = 1, max = 255))]
    pub revision: String,
    /// The PersistentVolumeClaim that holds the Hugging Face cache (`HF_HOME`). It is mounted
    /// read-only; populate it beforehand (for example with a Job running `huggingface-cli download`).
    pub cache: HuggingFaceCache,
}

fn default_revision() -> String {
    "main".to_owned()
}

/// Where the Hugging Face cache lives.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HuggingFaceCache {
    /// Name of the PersistentVolumeClaim holding the cache.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
}

/// On-disk format of model weights.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    /// A directory with `config.json`, `*.safetensors` and `tokenizer.json`.
    #[default]
    Safetensors,
    /// A single GGUF file (already quantized weights are used as they are).
    Gguf,
}

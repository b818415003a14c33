//! The server's admin API as the operator and the CLI call it: paths and bodies.

use serde::{Deserialize, Serialize};

use crate::Quantization;

/// `GET` returns the current [`Limits`]; `PUT` applies a partial one.
pub const LIMITS_PATH: &str = "/admin/limits";
/// `POST` loads a model in the background and swaps it in.
pub const MODEL_LOAD_PATH: &str = "/model/load";
/// `POST` unloads the model.
pub const MODEL_UNLOAD_PATH: &str = "/model/unload";
/// `GET` returns a [`SettingsReport`]; `PUT` asks for new [`RuntimeSettings`] and answers with
/// the report at once (a precision switch goes on in the background).
pub const SETTINGS_PATH: &str = "/admin/settings";
/// Key of the [`RuntimeSettings`] JSON in the operator's per-service ConfigMap, and the file
/// name the server reads under its mount (`--settings-file`).
pub const SETTINGS_FILE: &str = "settings.json";

/// The settings the operator moves on a running server without restarting it: the `max_tokens`
/// cap takes effect at once; a new weight precision is loaded while the old weights serve and
/// swapped in when loaded, failing no request. The body of `PUT /admin/settings`, and the file a
/// server watches (`--settings-file`), so a pod started later runs them from its first request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuntimeSettings {
    /// Cap on generated tokens per request.
    pub max_tokens: usize,
    /// Weight precision.
    pub quantization: Quantization,
}

/// Where a server stands with its [`RuntimeSettings`] (`GET /admin/settings`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SettingsReport {
    /// The settings last asked for (by the file or a `PUT`).
    pub wanted: RuntimeSettings,
    /// The `max_tokens` cap and the precision of the weights serving now.
    pub running: RuntimeSettings,
    /// Why the wanted precision is not (yet) serving: loading, or refused with the reason
    /// (say, the memory budget cannot hold both sets of weights during the switch). None when
    /// `running == wanted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
}

impl SettingsReport {
    /// True once the server runs what was asked.
    pub fn settled(&self) -> bool {
        self.running == self.wanted
    }
}

/// The server's run-time limits (`GET /admin/limits`), or a partial update of them
/// (`PUT /admin/limits`): fields left out keep their value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Cap on generated tokens per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<usize>,
    /// Requests admitted at once (queued + running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_requests: Option<usize>,
    /// Sequences batched into one forward step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_size: Option<usize>,
}

impl Limits {
    /// An update that sets only the `max_tokens` cap.
    pub fn max_tokens(n: usize) -> Self {
        Limits {
            max_tokens: Some(n),
            ..Limits::default()
        }
    }
}

/// `GET` lists the served model ([`ModelList`]), OpenAI-compatible.
pub const MODELS_PATH: &str = "/v1/models";

/// The body of `GET /v1/models`: OpenAI's list shape with one entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// The served model.
    pub data: Vec<ModelCard>,
}

/// One served model: OpenAI's fields plus what `sluice profile` and the operator size by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// The name clients use.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// Always `sluice`.
    pub owned_by: String,
    /// Where the weights came from.
    pub source: String,
    /// Effective precision of the linear weights (as the server names it).
    pub quantization: String,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// Prompt plus generated tokens of one sequence.
    pub context_length: usize,
    /// The `max_tokens` cap in force.
    pub max_tokens: usize,
    /// Bytes of weights resident.
    #[serde(default)]
    pub weight_bytes: u64,
    /// KV-cache bytes per token of one sequence.
    #[serde(default)]
    pub kv_bytes_per_token: u64,
    /// Seconds the weights took to load.
    #[serde(default)]
    pub load_seconds: f64,
}

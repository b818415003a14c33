//! The server's admin API as the operator and the CLI call it: paths and bodies.

use serde::{Deserialize, Serialize};

/// `GET` returns the current [`Limits`]; `PUT` applies a partial one.
pub const LIMITS_PATH: &str = "/admin/limits";
/// `POST` loads a model in the background and swaps it in.
pub const MODEL_LOAD_PATH: &str = "/model/load";
/// `POST` unloads the model.
pub const MODEL_UNLOAD_PATH: &str = "/model/unload";

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

//! The settings a service runs with: what the operator applied and reads back from what runs.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::quantization::Quantization;

/// The settings in force: chosen by the operator, never written back to the spec.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AppliedSettings {
    /// Replica count.
    // Stored as int32, as the status field was first published.
    #[schemars(with = "i32")]
    pub replicas: u32,
    /// Quantization passed to the server.
    pub quantization: Quantization,
    /// `max_tokens` cap passed to the server.
    pub max_tokens: u32,
}

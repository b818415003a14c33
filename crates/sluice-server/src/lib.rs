//! `sluice-server`: the candle + axum inference server that Sluice deploys for every
//! `InferenceService`, and the source of the SLIs the operator steers by.

pub mod admission;
pub mod cli;
pub mod engine;
pub mod error;
pub mod http;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod settings;
pub mod validate;

//! The vocabulary Sluice's crates and processes share, defined once: the SLO terms the engine
//! decides in and the `InferenceService` status stores, the settings a service runs with, the
//! quantization levels, and the server's contract (its flags, admin API and metric names).
//!
//! Nothing here does I/O. A new quantization level, bottleneck class or server flag is added
//! here, and the compiler lists every match that must learn about it.

pub mod action;
pub mod admin;
pub mod metrics;
pub mod model;
pub mod quantization;
pub mod server;
pub mod settings;
pub mod slo;

pub use action::{ACTION_LABELS, Action, StoredActionError};
pub use model::{Builtin, ModelRef};
pub use quantization::{Quantization, QuantizationFlag};
pub use settings::AppliedSettings;
pub use slo::{
    Baseline, BottleneckClass, DecisionKind, DecisionOutcome, Degraded, Evidence, Knob, Mode,
    Objective, ObjectiveState, Outcome,
};

//! The Sluice operator: turns `InferenceService` objects into running `sluice-server` pods.
//!
//! The reconcile pipeline is staged — [`validate`] and [`build`] are pure, [`apply`] and the
//! status write in [`reconcile`] are thin — so decisions are tested without a cluster.

pub mod admin_key;
pub mod admin_tls;
pub mod apply;
pub mod build;
pub mod cli;
pub mod dashboard;
pub mod diff;
pub mod effective;
pub mod error;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod rules;
pub mod run;
pub mod slo;
pub mod status;
pub mod validate;

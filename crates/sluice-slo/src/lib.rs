//! Sluice SLO engine: reads a service's SLIs, names its bottleneck and plans one remedy.
//!
//! Pure and Kubernetes-free so every decision can be tested on canned data:
//! - [`promql`] builds the queries (exact strings, tested as such);
//! - [`source`] (feature `sources`, on by default: the only I/O, at the edge) reads SLIs from
//!   Prometheus or by scraping `/metrics` directly, turning every failure into an explicit
//!   Unknown;
//! - [`classify`] maps a snapshot to compute-, memory-, I/O-, queue- or software-bound (or
//!   Healthy/Unknown) with the rule and evidence that decided it;
//! - [`control`] is the one loop every fleet runs (operator, local processes, simulator);
//! - [`plan`] turns the class, the history and the effective settings into at most one change,
//!   with cooldowns, hysteresis, step-back and reverts of changes that did not help.
//!
//! The operator maps its CRD to [`SloSpec`]/[`Settings`], calls [`MetricsSource::read`] and
//! [`plan()`], acts on [`Plan::act`] and stores [`Decision`]s; see `docs/slo.md`.

pub mod classify;
pub mod control;
pub mod plan;
pub mod promql;
pub mod report;
pub mod sli;
#[cfg(feature = "sources")]
pub mod source;
pub mod spec;

pub use classify::{Classification, RuleHit, Thresholds, classify};
pub use control::{ControlLoop, Fleet, Observed, TickReport};
pub use plan::{Decision, DecisionUpdate, ObjectiveStatus, Plan, apply_plan, plan};
pub use promql::{QuerySet, Selector, SelectorError, Window};
pub use report::error_chain;
pub use sli::{MemorySli, Sli, SliValue, UnixSeconds};
#[cfg(feature = "sources")]
pub use source::{
    FleetSnapshot, MetricsSource, PrometheusFleet, PrometheusSource, PrometheusSourceError,
    ScrapeSource,
};
pub use spec::{CapacityModel, Knobs, Settings, SloSpec, SloTargets, SpecError, Tuning};

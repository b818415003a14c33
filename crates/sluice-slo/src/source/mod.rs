//! Where SLIs come from: the [`MetricsSource`] trait and its two implementations.
//!
//! [`PrometheusSource`] runs the [`crate::promql`] queries against a Prometheus server (and
//! [`PrometheusFleet`] runs them once for every service);
//! [`ScrapeSource`] reads the servers' own `/metrics` pages and computes the same SLIs from
//! successive scrapes, for clusters without Prometheus and for the CLI. Both turn every failure
//! into [`crate::SliValue::Unknown`] with a reason: reading metrics never fails as a whole, so the
//! planner always gets a snapshot and holds when it cannot see.

mod connection;
mod exposition;
mod fleet;
mod prometheus;
mod quantile;
mod scrape;

pub use connection::{BasicAuth, Connection, ConnectionError};
#[cfg(feature = "clap")]
pub use connection::{ConnectionArgs, parse_header};
pub use exposition::{ExpositionError, ExpositionSample, parse_exposition};
pub use fleet::{FleetSnapshot, PrometheusFleet, SharedFleetSnapshot};
pub use prometheus::{PrometheusSource, PrometheusSourceError};
pub use quantile::bucket_quantile;
pub use scrape::{Scrape, ScrapeSource, TargetPage, compute_sli, peak_memory_ratio};

use async_trait::async_trait;

use crate::sli::{Sli, UnixSeconds};

/// Reads one service's SLIs.
///
/// Object safe (via `async_trait`) so the operator can hold `Arc<dyn MetricsSource>` and tests
/// can substitute canned snapshots.
#[async_trait]
pub trait MetricsSource: Send + Sync {
    /// Reads the SLIs over the source's window ending at `now`. Never fails: anything that
    /// cannot be measured is `Unknown` with its reason.
    async fn read(&self, now: UnixSeconds) -> Sli;
}

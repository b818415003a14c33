//! Every service's SLIs from one set of queries: the same PromQL as [`PrometheusSource`], with
//! each aggregation kept per (`namespace`, service) ([`Selector::per_service`]). The SLO loop
//! reads a whole fleet with 16 or 17 queries per interval, where one source per service would
//! send that many for each service (17,000 queries per interval for 1,000 services).

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::join_all;

use super::connection::Connection;
use super::prometheus::{PrometheusSource, PrometheusSourceError, Rows, assemble, rows, texts};
use crate::promql::{SERVICE_LABEL, Selector, Window};
use crate::sli::{Sli, UnixSeconds};

/// Reads every service under a scope at once.
#[derive(Debug, Clone)]
pub struct PrometheusFleet {
    source: PrometheusSource,
}

impl PrometheusFleet {
    /// A fleet reader for the Prometheus at `url`, over the services whose pods `scope` selects
    /// (empty: all), with `window` and the TTFT quantile `ttft_quantile` (0.95 for P95).
    pub fn new(
        url: &str,
        scope: &Selector,
        window: Window,
        ttft_quantile: f64,
    ) -> Result<Self, PrometheusSourceError> {
        Self::connect(url, &Connection::default(), scope, window, ttft_quantile)
    }

    /// Like [`PrometheusFleet::new`] through `connection` (TLS trust, credentials, headers).
    pub fn connect(
        url: &str,
        connection: &Connection,
        scope: &Selector,
        window: Window,
        ttft_quantile: f64,
    ) -> Result<Self, PrometheusSourceError> {
        let sel = scope.clone().per_service();
        Ok(Self {
            source: PrometheusSource::connect(
                url,
                connection,
                &sel,
                Some(&sel),
                window,
                ttft_quantile,
            )?,
        })
    }

    /// The queries it sends.
    pub fn queries(&self) -> &crate::promql::QuerySet {
        self.source.queries()
    }

    /// Runs the queries once, concurrently, and indexes the answers by service.
    pub async fn read(&self, now: UnixSeconds) -> FleetSnapshot {
        let q = self.source.queries();
        let results: Vec<Rows> = join_all(texts(q).into_iter().map(|t| self.source.run(t)))
            .await
            .into_iter()
            .map(rows)
            .collect();
        FleetSnapshot::index(
            results,
            q.gpu_utilization.is_some(),
            now,
            self.source.max_sample_age(),
            self.source.window().as_secs(),
        )
    }
}

/// One read of a whole fleet, answered per service.
#[derive(Debug, Clone)]
pub struct FleetSnapshot {
    at: UnixSeconds,
    window: u64,
    max_age: f64,
    has_gpu: bool,
    /// Per query: the error every service shares, if the query failed.
    errors: Vec<Option<String>>,
    by_service: HashMap<(String, String), Vec<Vec<super::prometheus::Row>>>,
}

impl FleetSnapshot {
    fn index(
        results: Vec<Rows>,
        has_gpu: bool,
        at: UnixSeconds,
        max_age: f64,
        window: u64,
    ) -> Self {
        let n = results.len();
        let mut by_service: HashMap<(String, String), Vec<Vec<super::prometheus::Row>>> =
            HashMap::new();
        let mut errors = Vec::with_capacity(n);
        for (i, result) in results.into_iter().enumerate() {
            match result {
                Err(e) => errors.push(Some(e)),
                Ok(rows) => {
                    errors.push(None);
                    for row in rows {
                        let (Some(ns), Some(svc)) =
                            (row.labels.get("namespace"), row.labels.get(SERVICE_LABEL))
                        else {
                            continue;
                        };
                        let key = (ns.clone(), svc.clone());
                        by_service.entry(key).or_insert_with(|| vec![Vec::new(); n])[i].push(row);
                    }
                }
            }
        }
        Self {
            at,
            window,
            max_age,
            has_gpu,
            errors,
            by_service,
        }
    }

    /// When the queries ran.
    pub fn at(&self) -> UnixSeconds {
        self.at
    }

    /// How many services have any series.
    pub fn services(&self) -> usize {
        self.by_service.len()
    }

    /// The SLIs of the Deployment `service` in `namespace`, exactly as a [`PrometheusSource`]
    /// scoped to its pods would have read them at [`FleetSnapshot::at`].
    pub fn sli(&self, namespace: &str, service: &str) -> Sli {
        let mine = self
            .by_service
            .get(&(namespace.to_owned(), service.to_owned()));
        let results: Vec<Rows> = self
            .errors
            .iter()
            .enumerate()
            .map(|(i, e)| match e {
                Some(e) => Err(e.clone()),
                None => Ok(mine.map(|m| m[i].clone()).unwrap_or_default()),
            })
            .collect();
        assemble(&results, self.has_gpu, self.at, self.max_age, self.window)
    }
}

/// A snapshot shared by every service's tick within one interval.
pub type SharedFleetSnapshot = Arc<FleetSnapshot>;

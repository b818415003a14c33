//! [`MetricsSource`] backed by a Prometheus server through `prometheus-http-query`.
//!
//! All queries of a [`QuerySet`] run concurrently as instant queries. A query error, an empty
//! result, a non-finite value or a sample older than `max_sample_age` is Unknown. Freshness is
//! also checked at the source: `time() - min(timestamp(llm_model_info{…}))` tells how old the
//! stalest pod's last scrape is, and when that exceeds the limit every SLI is Unknown, because a
//! gauge that stopped being scraped is still returned by Prometheus for up to its lookback delta.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use prometheus_http_query::Client;
use prometheus_http_query::response::{Data, PromqlResult};

use super::MetricsSource;
use super::connection::Connection;
use crate::promql::{QuerySet, Selector, Window};
use crate::sli::{MemorySli, Sli, SliValue, UnixSeconds};

/// Default limit on sample and scrape age (seconds): two 15 s scrapes missed plus slack.
pub const DEFAULT_MAX_SAMPLE_AGE_SECONDS: f64 = 60.0;

/// The source could not be constructed.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusSourceError {
    /// The URL did not parse or the HTTP client could not be built.
    #[error("failed to create prometheus client for {url:?}: {message}")]
    Client {
        /// The URL given.
        url: String,
        /// What went wrong.
        message: String,
    },
}

/// SLIs from Prometheus for one service.
#[derive(Clone)]
pub struct PrometheusSource {
    client: Client,
    connection: Arc<Connection>,
    url: String,
    queries: QuerySet,
    window: Window,
    max_sample_age: f64,
}

impl std::fmt::Debug for PrometheusSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusSource")
            .field("url", &self.url)
            .field("window", &self.window)
            .field("max_sample_age", &self.max_sample_age)
            .finish_non_exhaustive()
    }
}

impl PrometheusSource {
    /// A source querying `url` (e.g. `http://prometheus:9090`) with a 10 s request timeout.
    ///
    /// `selector` scopes the server metrics to the service's pods; `gpu_selector` scopes the DCGM
    /// exporter's series (None where no GPUs or no exporter). `ttft_quantile` is 0.95 for P95.
    pub fn new(
        url: &str,
        selector: &Selector,
        gpu_selector: Option<&Selector>,
        window: Window,
        ttft_quantile: f64,
    ) -> Result<Self, PrometheusSourceError> {
        Self::connect(
            url,
            &Connection::default(),
            selector,
            gpu_selector,
            window,
            ttft_quantile,
        )
    }

    /// Like [`PrometheusSource::new`] through `connection` (TLS trust, credentials, headers).
    pub fn connect(
        url: &str,
        connection: &Connection,
        selector: &Selector,
        gpu_selector: Option<&Selector>,
        window: Window,
        ttft_quantile: f64,
    ) -> Result<Self, PrometheusSourceError> {
        let http = connection.client(Duration::from_secs(10)).map_err(|e| {
            PrometheusSourceError::Client {
                url: url.to_owned(),
                message: e.to_string(),
            }
        })?;
        let mut source =
            Self::with_http_client(http, url, selector, gpu_selector, window, ttft_quantile)?;
        source.connection = Arc::new(connection.clone());
        Ok(source)
    }

    /// Like [`PrometheusSource::new`] with a caller-built HTTP client (proxies, say).
    pub fn with_http_client(
        http: reqwest::Client,
        url: &str,
        selector: &Selector,
        gpu_selector: Option<&Selector>,
        window: Window,
        ttft_quantile: f64,
    ) -> Result<Self, PrometheusSourceError> {
        let client = Client::from(http, url).map_err(|e| PrometheusSourceError::Client {
            url: url.to_owned(),
            message: e.to_string(),
        })?;
        Ok(Self {
            client,
            connection: Arc::default(),
            url: url.to_owned(),
            queries: QuerySet::new(selector, gpu_selector, window, ttft_quantile),
            window,
            max_sample_age: DEFAULT_MAX_SAMPLE_AGE_SECONDS,
        })
    }

    /// Sets the age (seconds) beyond which a sample or a pod's last scrape counts as stale.
    pub fn with_max_sample_age(mut self, seconds: f64) -> Self {
        self.max_sample_age = seconds;
        self
    }

    /// The queries this source runs.
    pub fn queries(&self) -> &QuerySet {
        &self.queries
    }

    /// Age (seconds) beyond which a sample counts as stale.
    pub fn max_sample_age(&self) -> f64 {
        self.max_sample_age
    }

    /// The window the rate queries cover.
    pub fn window(&self) -> Window {
        self.window
    }

    pub(super) async fn run(&self, query: &str) -> Result<PromqlResult, String> {
        let mut request = self.client.query(query);
        if let Some(token) = self.connection.authorization().map_err(|e| e.to_string())? {
            request = request.header(reqwest::header::AUTHORIZATION, token);
        }
        request
            .get()
            .await
            .map_err(|e| format!("prometheus query failed: {}", crate::error_chain(&e)))
    }

    /// Runs `vector(1)`: whether the API answers through this source's connection (TLS,
    /// credentials) at all, with the error when it does not.
    pub async fn ping(&self) -> Result<(), String> {
        self.run("vector(1)").await.map(|_| ())
    }
}

/// One sample of an instant-query result, with its labels.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub(super) labels: std::collections::HashMap<String, String>,
    pub(super) value: f64,
    pub(super) at: f64,
}

/// An instant-query result as rows (a scalar is one unlabelled row), or why there is none.
pub(super) type Rows = Result<Vec<Row>, String>;

pub(super) fn rows(result: Result<PromqlResult, String>) -> Rows {
    match result?.data() {
        Data::Scalar(s) => Ok(vec![Row {
            labels: Default::default(),
            value: s.value(),
            at: s.timestamp(),
        }]),
        Data::Vector(v) => Ok(v
            .iter()
            .map(|iv| Row {
                labels: iv.metric().clone(),
                value: iv.sample().value(),
                at: iv.sample().timestamp(),
            })
            .collect()),
        Data::Matrix(_) => Err("unexpected range result".into()),
    }
}

/// One result reduced to a single value.
fn single(result: &Rows, now: UnixSeconds, max_age: f64, empty_reason: &str) -> SliValue {
    let rows = match result {
        Ok(r) => r,
        Err(e) => return SliValue::unknown(e.clone()),
    };
    match rows.as_slice() {
        [] => SliValue::unknown(empty_reason),
        [row] => checked(row.value, row.at, now, max_age),
        many => SliValue::unknown(format!("expected one series, got {}", many.len())),
    }
}

fn checked(value: f64, at: f64, now: UnixSeconds, max_age: f64) -> SliValue {
    let age = now - at;
    if age > max_age {
        return SliValue::unknown(format!("stale: sample is {age:.0} s old"));
    }
    if value.is_nan() {
        return SliValue::unknown("no data in window (NaN, e.g. 0/0)");
    }
    SliValue::known(value, at)
}

/// A `by (memory_type)` result as a map from type to value.
fn by_memory_type(
    result: &Rows,
    now: UnixSeconds,
    max_age: f64,
) -> Result<BTreeMap<String, SliValue>, String> {
    let rows = result.as_ref().map_err(Clone::clone)?;
    Ok(rows
        .iter()
        .map(|r| {
            let t = r
                .labels
                .get("memory_type")
                .cloned()
                .unwrap_or_else(|| "unknown".into());
            (t, checked(r.value, r.at, now, max_age))
        })
        .collect())
}

fn memory_slis(
    usage: &Rows,
    capacity: &Rows,
    ratio: &Rows,
    now: UnixSeconds,
    max_age: f64,
) -> Vec<MemorySli> {
    let maps = [usage, capacity, ratio].map(|r| by_memory_type(r, now, max_age));
    let mut types: Vec<String> = maps
        .iter()
        .filter_map(|m| m.as_ref().ok())
        .flat_map(|m| m.keys().cloned())
        .collect();
    types.sort();
    types.dedup();
    let get = |i: usize, t: &str| match &maps[i] {
        Ok(m) => m
            .get(t)
            .cloned()
            .unwrap_or_else(|| SliValue::unknown("empty result")),
        Err(e) => SliValue::unknown(e.clone()),
    };
    types
        .iter()
        .map(|t| MemorySli {
            memory_type: t.clone(),
            usage_megabytes: get(0, t),
            capacity_megabytes: get(1, t),
            usage_ratio: get(2, t),
        })
        .collect()
}

/// The query texts of a set, in the order [`assemble`] reads their results.
pub(super) fn texts(q: &QuerySet) -> Vec<&str> {
    let mut texts: Vec<&str> = vec![
        &q.scrape_age,
        &q.ttft,
        &q.tpot,
        &q.request_rate,
        &q.error_ratio,
        &q.internal_error_ratio,
        &q.rejection_ratio,
        &q.queue_depth,
        &q.running_sequences,
        &q.tokens_per_second,
        &q.queue_wait,
        &q.service_time,
        &q.reporting_pods,
        &q.memory_usage,
        &q.memory_capacity,
        &q.memory_ratio,
    ];
    if let Some(g) = &q.gpu_utilization {
        texts.push(g);
    }
    texts
}

/// One service's SLIs from the results of [`texts`], in that order.
pub(super) fn assemble(
    results: &[Rows],
    has_gpu: bool,
    now: UnixSeconds,
    max_age: f64,
    window: u64,
) -> Sli {
    let age = single(
        &results[0],
        now,
        max_age,
        "no pod exports llm_model_info for the selector",
    );
    match age {
        SliValue::Unknown { reason } => {
            return Sli::all_unknown(now, window, &format!("freshness unknown: {reason}"));
        }
        SliValue::Known { value, .. } if value > max_age => {
            let reason = format!(
                "stale: the stalest pod was last scraped {value:.0} s ago (limit {max_age:.0} s)"
            );
            tracing::debug!(%reason, "prometheus data stale");
            return Sli::all_unknown(now, window, &reason);
        }
        SliValue::Known { .. } => {}
    }

    let one = |i: usize, empty: &str| single(&results[i], now, max_age, empty);
    let no_traffic = "empty result (no series for the selector)";
    let gpu = if has_gpu {
        one(
            16,
            "no DCGM_FI_DEV_GPU_UTIL series for the GPU selector (CPU-only or no DCGM exporter)",
        )
    } else {
        SliValue::unknown("GPU utilisation not configured (no DCGM selector)")
    };
    Sli {
        at: now,
        window_seconds: window,
        ttft_p95_seconds: one(1, no_traffic),
        tpot_seconds: one(2, no_traffic),
        request_rate_per_second: one(3, no_traffic),
        error_ratio: one(4, no_traffic),
        internal_error_ratio: one(5, no_traffic),
        rejection_ratio: one(6, no_traffic),
        queue_depth: one(7, no_traffic),
        running_sequences: one(8, no_traffic),
        tokens_per_second: one(9, no_traffic),
        queue_wait_seconds: one(10, no_traffic),
        service_time_seconds: one(11, no_traffic),
        gpu_utilization_ratio: gpu,
        reporting_pods: one(12, no_traffic),
        memory: memory_slis(&results[13], &results[14], &results[15], now, max_age),
    }
}

#[async_trait]
impl MetricsSource for PrometheusSource {
    async fn read(&self, now: UnixSeconds) -> Sli {
        let q = &self.queries;
        let results: Vec<Rows> = join_all(texts(q).into_iter().map(|t| self.run(t)))
            .await
            .into_iter()
            .map(rows)
            .collect();
        assemble(
            &results,
            q.gpu_utilization.is_some(),
            now,
            self.max_sample_age,
            self.window.as_secs(),
        )
    }
}

//! [`MetricsSource`] that scrapes the servers' own `/metrics` pages, no Prometheus needed.
//!
//! Each read fetches every target, keeps the parsed page, and computes SLIs over the window from
//! the difference between the current scrape and the oldest kept scrape inside the window (or
//! the newest before it when reads are sparser than the window), the way `rate()` would:
//! counters are differenced per series with reset handling and summed across targets, histogram
//! buckets likewise before the quantile is taken. Gauges come from the current scrape. A failed
//! or unparsable target makes the whole snapshot Unknown: a partial sum would under-report the
//! load and could scale the service down.

use sluice_contract::metrics::{self as names, RequestStatus};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;

use super::MetricsSource;
use super::exposition::{ExpositionSample, parse_exposition};
use super::quantile::bucket_quantile;
use crate::promql::Window;
use crate::sli::{MemorySli, Sli, SliValue, UnixSeconds};

type Labels = BTreeMap<String, String>;

/// One target's page, indexed by (metric name, labels).
#[derive(Debug, Clone, Default)]
pub struct TargetPage {
    series: HashMap<(String, Labels), f64>,
}

impl TargetPage {
    /// Indexes parsed samples; a repeated series keeps its last value.
    pub fn new(samples: Vec<ExpositionSample>) -> Self {
        Self {
            series: samples
                .into_iter()
                .map(|s| ((s.name, s.labels), s.value))
                .collect(),
        }
    }

    fn with_name<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a Labels, f64)> + 'a {
        self.series
            .iter()
            .filter(move |((n, _), _)| n == name)
            .map(|((_, l), v)| (l, *v))
    }
}

/// All targets' pages at one moment.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// When the scrape was taken.
    pub at: UnixSeconds,
    /// Page per target URL.
    pub pages: BTreeMap<String, TargetPage>,
}

/// Sums `cur - prev` over the series of `name` whose labels pass `keep`, across targets present
/// in both scrapes. A decrease is a counter reset (the new value is the increase); a series new
/// on a known target counts from 0. None when no such series exists on any such target.
fn counter_delta(
    prev: &Scrape,
    cur: &Scrape,
    name: &str,
    keep: &dyn Fn(&Labels) -> bool,
) -> Option<f64> {
    let mut total = None;
    for (target, page) in &cur.pages {
        let Some(before) = prev.pages.get(target) else {
            continue;
        };
        for (labels, c) in page.with_name(name).filter(|(l, _)| keep(l)) {
            let p = before
                .series
                .get(&(name.to_owned(), labels.clone()))
                .copied();
            let d = match p {
                Some(p) if c >= p => c - p,
                _ => c,
            };
            *total.get_or_insert(0.0) += d;
        }
    }
    total
}

fn gauge_sum(cur: &Scrape, name: &str) -> Option<f64> {
    let mut total = None;
    for page in cur.pages.values() {
        for (_, v) in page.with_name(name) {
            *total.get_or_insert(0.0) += v;
        }
    }
    total
}

fn all(_: &Labels) -> bool {
    true
}

struct Window2<'a> {
    prev: &'a Scrape,
    cur: &'a Scrape,
    elapsed: f64,
}

impl Window2<'_> {
    fn rate(&self, name: &str) -> SliValue {
        match counter_delta(self.prev, self.cur, name, &all) {
            Some(d) => SliValue::known(d / self.elapsed, self.cur.at),
            None => SliValue::unknown(format!("{name} not exported")),
        }
    }

    fn mean(&self, histogram: &str) -> SliValue {
        let sum = counter_delta(self.prev, self.cur, &format!("{histogram}_sum"), &all);
        let count = counter_delta(self.prev, self.cur, &format!("{histogram}_count"), &all);
        match (sum, count) {
            (Some(s), Some(c)) if c > 0.0 => SliValue::known(s / c, self.cur.at),
            (Some(_), Some(_)) => SliValue::unknown("no observations in window"),
            _ => SliValue::unknown(format!("{histogram} not exported")),
        }
    }

    fn quantile(&self, q: f64, histogram: &str) -> SliValue {
        let name = format!("{histogram}_bucket");
        let mut by_le: BTreeMap<String, f64> = BTreeMap::new();
        for (target, page) in &self.cur.pages {
            let Some(before) = self.prev.pages.get(target) else {
                continue;
            };
            for (labels, c) in page.with_name(&name) {
                let Some(le) = labels.get("le") else { continue };
                let p = before.series.get(&(name.clone(), labels.clone())).copied();
                let d = match p {
                    Some(p) if c >= p => c - p,
                    _ => c,
                };
                *by_le.entry(le.clone()).or_default() += d;
            }
        }
        if by_le.is_empty() {
            return SliValue::unknown(format!("{name} not exported"));
        }
        let mut buckets = Vec::with_capacity(by_le.len());
        for (le, count) in by_le {
            let bound = match le.as_str() {
                "+Inf" | "Inf" => f64::INFINITY,
                other => match other.parse::<f64>() {
                    Ok(b) => b,
                    Err(_) => return SliValue::unknown(format!("invalid le label {le:?}")),
                },
            };
            buckets.push((bound, count));
        }
        match bucket_quantile(q, &buckets) {
            Some(v) => SliValue::known(v, self.cur.at),
            None => SliValue::unknown("no observations in window"),
        }
    }

    fn status_ratio(&self, statuses: &[RequestStatus]) -> SliValue {
        let total = counter_delta(self.prev, self.cur, names::REQUESTS_TOTAL, &all);
        let matching = counter_delta(self.prev, self.cur, names::REQUESTS_TOTAL, &|l: &Labels| {
            l.get(names::STATUS_LABEL)
                .is_some_and(|s| statuses.iter().any(|st| st.as_str() == s))
        });
        match total {
            None => SliValue::unknown("llm_requests_total not exported"),
            Some(t) if t <= 0.0 => SliValue::unknown("no requests in window"),
            // A status that never happened has no series yet: zero, not unknown.
            Some(t) => SliValue::known(matching.unwrap_or(0.0) / t, self.cur.at),
        }
    }
}

fn gauge(cur: &Scrape, name: &str) -> SliValue {
    gauge_sum(cur, name)
        .map(|v| SliValue::known(v, cur.at))
        .unwrap_or_else(|| SliValue::unknown(format!("{name} not exported")))
}

fn memory(cur: &Scrape) -> Vec<MemorySli> {
    let mut usage: BTreeMap<String, f64> = BTreeMap::new();
    let mut capacity: BTreeMap<String, f64> = BTreeMap::new();
    let mut ratio: BTreeMap<String, f64> = BTreeMap::new();
    for page in cur.pages.values() {
        let mut cap_here: HashMap<&str, f64> = HashMap::new();
        for (l, v) in page.with_name(names::MEMORY_CAPACITY_MEGABYTES) {
            if let Some(t) = l.get(names::MEMORY_TYPE_LABEL) {
                *capacity.entry(t.clone()).or_default() += v;
                *cap_here.entry(t.as_str()).or_default() += v;
            }
        }
        for (l, v) in page.with_name(names::MEMORY_USAGE_MEGABYTES) {
            if let Some(t) = l.get(names::MEMORY_TYPE_LABEL) {
                *usage.entry(t.clone()).or_default() += v;
                if let Some(c) = cap_here.get(t.as_str()).filter(|c| **c > 0.0) {
                    let r = ratio.entry(t.clone()).or_insert(f64::MIN);
                    *r = r.max(v / c);
                }
            }
        }
    }
    let mut types: Vec<&String> = usage.keys().chain(capacity.keys()).collect();
    types.sort();
    types.dedup();
    let known = |m: &BTreeMap<String, f64>, t: &str, what: &str| {
        m.get(t)
            .map(|v| SliValue::known(*v, cur.at))
            .unwrap_or_else(|| SliValue::unknown(format!("no {what} for memory_type {t:?}")))
    };
    types
        .into_iter()
        .map(|t| MemorySli {
            memory_type: t.clone(),
            usage_megabytes: known(&usage, t, "usage"),
            capacity_megabytes: known(&capacity, t, "capacity"),
            usage_ratio: known(&ratio, t, "positive capacity"),
        })
        .collect()
}

/// Raises each memory type's known usage ratio to its highest value in `earlier` scrapes
/// (keeping the current snapshot's timestamp).
pub fn peak_memory_ratio<'a>(memory: &mut [MemorySli], earlier: impl Iterator<Item = &'a Scrape>) {
    for scrape in earlier {
        for old in self::memory(scrape) {
            let (Some(r), Some(m)) = (
                old.usage_ratio.value(),
                memory.iter_mut().find(|m| m.memory_type == old.memory_type),
            ) else {
                continue;
            };
            if let SliValue::Known { value, .. } = &mut m.usage_ratio
                && r > *value
            {
                *value = r;
            }
        }
    }
}

/// Computes a snapshot from the current scrape and the scrape at the start of the window.
///
/// Pure, so the CLI and tests can feed canned pages. Without `prev` the rate-based SLIs are
/// Unknown and only gauges are known.
pub fn compute_sli(prev: Option<&Scrape>, cur: &Scrape, window_seconds: u64, ttft_q: f64) -> Sli {
    let mut sli = Sli::all_unknown(cur.at, window_seconds, "rates need two scrapes");
    sli.queue_depth = gauge(cur, names::QUEUE_DEPTH);
    sli.running_sequences = gauge(cur, names::RUNNING_SEQUENCES);
    sli.memory = memory(cur);
    let pods = cur
        .pages
        .values()
        .filter(|p| p.with_name(names::MODEL_INFO).next().is_some())
        .count();
    sli.reporting_pods = SliValue::known(pods as f64, cur.at);
    sli.gpu_utilization_ratio = {
        let vals: Vec<f64> = cur
            .pages
            .values()
            .flat_map(|p| p.with_name("DCGM_FI_DEV_GPU_UTIL").map(|(_, v)| v))
            .collect();
        if vals.is_empty() {
            SliValue::unknown("no DCGM_FI_DEV_GPU_UTIL among the scraped targets")
        } else {
            SliValue::known(vals.iter().sum::<f64>() / vals.len() as f64 / 100.0, cur.at)
        }
    };
    let Some(prev) = prev else {
        return sli;
    };
    let elapsed = cur.at - prev.at;
    if elapsed <= 0.0 {
        return sli;
    }
    let w = Window2 { prev, cur, elapsed };
    sli.ttft_p95_seconds = w.quantile(ttft_q, names::TTFT_SECONDS);
    sli.tpot_seconds = w.mean(names::TPOT_SECONDS);
    sli.request_rate_per_second = w.rate(names::REQUESTS_TOTAL);
    sli.error_ratio = w.status_ratio(&RequestStatus::ERRORS);
    sli.internal_error_ratio = w.status_ratio(&[RequestStatus::Error]);
    sli.rejection_ratio = w.status_ratio(&[RequestStatus::Rejected]);
    sli.tokens_per_second = w.rate(names::GENERATED_TOKENS_TOTAL);
    sli.queue_wait_seconds = w.mean(names::QUEUE_WAIT_SECONDS);
    sli.service_time_seconds = match (
        w.mean(names::REQUEST_DURATION_SECONDS).value(),
        sli.queue_wait_seconds.value(),
    ) {
        (Some(d), Some(q)) => SliValue::known((d - q).max(0.0), cur.at),
        _ => SliValue::unknown("request duration or queue wait unknown"),
    };
    sli
}

/// SLIs computed from direct scrapes of the servers' `/metrics` URLs.
#[derive(Debug)]
pub struct ScrapeSource {
    http: reqwest::Client,
    targets: RwLock<Vec<String>>,
    window: Window,
    ttft_quantile: f64,
    history: Mutex<VecDeque<Scrape>>,
}

impl ScrapeSource {
    /// Scrapes `targets` (full URLs, e.g. `http://10.0.0.5:8000/metrics`) with a 5 s timeout.
    pub fn new(targets: Vec<String>, window: Window, ttft_quantile: f64) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self::with_http_client(http, targets, window, ttft_quantile)
    }

    /// Like [`ScrapeSource::new`] with a caller-built client.
    pub fn with_http_client(
        http: reqwest::Client,
        targets: Vec<String>,
        window: Window,
        ttft_quantile: f64,
    ) -> Self {
        Self {
            http,
            targets: RwLock::new(targets),
            window,
            ttft_quantile,
            history: Mutex::new(VecDeque::new()),
        }
    }

    /// Replaces the target list (pods came or went); kept scrapes of remaining targets still count.
    pub fn set_targets(&self, targets: Vec<String>) {
        *self.targets.write().unwrap_or_else(|e| e.into_inner()) = targets;
    }

    async fn fetch(&self, url: &str) -> Result<TargetPage, String> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("failed to scrape {url}: {e}"))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("failed to scrape {url}: HTTP {status}"));
        }
        let text = resp
            .text()
            .await
            .map_err(|e| format!("failed to read {url}: {e}"))?;
        let samples = parse_exposition(&text).map_err(|e| format!("{url}: {e}"))?;
        Ok(TargetPage::new(samples))
    }
}

/// The kept scrape that starts the window ending at `now`.
fn window_start(history: &VecDeque<Scrape>, now: UnixSeconds, window: f64) -> Option<&Scrape> {
    history
        .iter()
        .filter(|s| s.at < now)
        .find(|s| s.at >= now - window)
        .or_else(|| history.iter().rev().find(|s| s.at < now))
}

#[async_trait]
impl MetricsSource for ScrapeSource {
    async fn read(&self, now: UnixSeconds) -> Sli {
        let window = self.window.as_secs();
        let targets = self
            .targets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if targets.is_empty() {
            return Sli::all_unknown(now, window, "no scrape targets");
        }
        let pages = join_all(targets.iter().map(|t| self.fetch(t))).await;
        let mut cur = Scrape {
            at: now,
            pages: BTreeMap::new(),
        };
        for (target, page) in targets.into_iter().zip(pages) {
            match page {
                Ok(p) => {
                    cur.pages.insert(target, p);
                }
                Err(reason) => {
                    tracing::debug!(%reason, "scrape failed");
                    return Sli::all_unknown(now, window, &reason);
                }
            }
        }
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let mut sli = compute_sli(
            window_start(&history, now, window as f64),
            &cur,
            window,
            self.ttft_quantile,
        );
        // Memory pressure is the peak within the window, as with Prometheus' max_over_time.
        let earlier = history
            .iter()
            .filter(|s| s.at >= now - window as f64 && s.at < now);
        peak_memory_ratio(&mut sli.memory, earlier);
        history.push_back(cur);
        // Keep one window plus the scrape just before it, for sparse reads.
        while history.len() > 2 && history.get(1).is_some_and(|s| s.at < now - window as f64) {
            history.pop_front();
        }
        sli
    }
}

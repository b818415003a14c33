//! The SLO loop: on a periodic requeue per InferenceService it reads the service's SLIs through
//! a [`MetricsSource`], lets the pure engine ([`sluice_slo::plan()`]) classify the bottleneck and
//! choose at most one change, and, in `Auto` mode only, carries it out.
//!
//! Decide pure, act thin: [`mapping`] and [`report`] are pure translations between the CRD and
//! the engine, [`evaluate`] runs one tick on a given snapshot without I/O, and [`actuate`] is the
//! only part that talks to pods. The chosen settings are built by the same reconcile: replicas
//! into the Deployment's count, quantization and `max_tokens` into the settings ConfigMap every
//! pod re-reads; the latter two are also pushed at once to every ready pod's `/admin/settings`
//! (a quantization change is a hot swap in each server, never a restart).

pub mod actuate;
pub mod evaluate;
pub mod mapping;
pub mod news;
pub mod report;
pub mod tick;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_slo::source::Connection;
use sluice_slo::{
    FleetSnapshot, MetricsSource, PrometheusFleet, PrometheusSource, Selector, Sli, Window,
};

pub use actuate::{HttpSettingsClient, PodTarget, PushReport, SettingsClient, SettingsPushError};
pub use evaluate::{Evaluation, evaluate, is_due};

/// Builds the metrics source for one service (Prometheus in production, canned in tests).
pub trait SourceFactory: Send + Sync {
    /// A source reading the service selected by `selector` from the Prometheus at `url`.
    fn source(
        &self,
        url: &str,
        selector: &Selector,
        window: Window,
    ) -> Result<Arc<dyn MetricsSource>, String>;

    /// A reader of every service's SLIs at once from the Prometheus at `url`, where the source
    /// supports it (None: one [`SourceFactory::source`] per service).
    fn fleet(&self, _url: &str, _window: Window) -> Option<Result<Arc<PrometheusFleet>, String>> {
        None
    }
}

/// [`SourceFactory`] for [`PrometheusSource`] (TTFT P95, no DCGM selector: GPU utilisation is
/// read only where an exporter labels the same pods), through one [`Connection`] (TLS trust,
/// credentials, headers) for every Prometheus URL.
#[derive(Debug, Default)]
pub struct PrometheusFactory {
    pub connection: Connection,
}

impl SourceFactory for PrometheusFactory {
    fn source(
        &self,
        url: &str,
        selector: &Selector,
        window: Window,
    ) -> Result<Arc<dyn MetricsSource>, String> {
        let gpu = selector.clone();
        PrometheusSource::connect(url, &self.connection, selector, Some(&gpu), window, 0.95)
            .map(|s| Arc::new(s) as Arc<dyn MetricsSource>)
            .map_err(|e| e.to_string())
    }

    fn fleet(&self, url: &str, window: Window) -> Option<Result<Arc<PrometheusFleet>, String>> {
        Some(
            PrometheusFleet::connect(url, &self.connection, &Selector::new(), window, 0.95)
                .map(Arc::new)
                .map_err(|e| e.to_string()),
        )
    }
}

/// Default time between two evaluations of one service.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);

impl Default for SloLoop {
    /// 15 s interval, no default Prometheus URL, Prometheus sources, HTTP settings client.
    fn default() -> Self {
        Self::new(
            DEFAULT_INTERVAL,
            None,
            Arc::new(PrometheusFactory::default()),
            Arc::new(HttpSettingsClient::default()),
        )
    }
}

/// Configuration and in-memory state of the SLO loop.
pub struct SloLoop {
    /// Time between two evaluations of one service.
    pub interval: Duration,
    /// Prometheus URL used when the CR sets none; without either the loop reports
    /// `MetricsUnknown` and never acts.
    pub prometheus_url: Option<String>,
    /// Builds the metrics source.
    pub sources: Arc<dyn SourceFactory>,
    /// Pushes the run-time settings to pods.
    pub settings: Arc<dyn SettingsClient>,
    /// URL prefixes a service's `spec.slo.prometheusUrl` may use (besides `prometheus_url`).
    pub allowed_prometheus_urls: Vec<String>,
    /// SLI snapshots per InferenceService uid, oldest first. Lost on restart on purpose: the
    /// decision log in status carries what must survive, and fresh snapshots re-confirm a class.
    history: Mutex<HashMap<String, Vec<Sli>>>,
    /// Per (Prometheus URL, window): the fleet reader and its latest snapshot, shared by every
    /// service's tick for one interval, so Prometheus sees a handful of queries per interval
    /// however many services there are.
    fleets: tokio::sync::Mutex<HashMap<(String, u64), Fleet>>,
}

/// A fleet reader and what it read last.
struct Fleet {
    reader: Arc<PrometheusFleet>,
    last: Option<Arc<FleetSnapshot>>,
}

impl SloLoop {
    /// A loop with the given interval, default Prometheus URL, source factory and settings client.
    pub fn new(
        interval: Duration,
        prometheus_url: Option<String>,
        sources: Arc<dyn SourceFactory>,
        settings: Arc<dyn SettingsClient>,
    ) -> Self {
        Self {
            interval,
            prometheus_url,
            sources,
            settings,
            allowed_prometheus_urls: Vec::new(),
            history: Mutex::new(HashMap::new()),
            fleets: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Allows services to name Prometheus URLs under these prefixes.
    pub fn with_allowed_prometheus_urls(mut self, prefixes: Vec<String>) -> Self {
        self.allowed_prometheus_urls = prefixes;
        self
    }

    /// Whether a service may read SLIs from `url`: the operator's own URL, or one under an
    /// allowed prefix (matched up to a path boundary, so `http://p:9090` does not allow
    /// `http://p:90901`).
    pub fn allows_prometheus_url(&self, url: &str) -> bool {
        self.prometheus_url.as_deref() == Some(url)
            || self.allowed_prometheus_urls.iter().any(|p| {
                url == p
                    || url.strip_prefix(p.as_str()).is_some_and(|rest| {
                        p.ends_with('/') || rest.starts_with('/') || rest.starts_with('?')
                    })
            })
    }

    /// Appends `sli` to the service's history and returns the history (oldest first), keeping
    /// snapshots younger than `keep_seconds` and at most [`sluice_slo::control::HISTORY_CAP`].
    pub fn remember(&self, uid: &str, sli: Sli, keep_seconds: f64) -> Vec<Sli> {
        // A poisoned lock only means another tick panicked while pushing a snapshot.
        let mut all = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let h = all.entry(uid.to_owned()).or_default();
        sluice_slo::control::remember(h, sli, keep_seconds);
        h.clone()
    }

    /// The SLIs of Deployment `name` in `namespace` from the shared fleet snapshot of (`url`,
    /// `window`), read anew when the last one is an interval old (1 s of slack, as
    /// [`is_due`]). None when the source factory reads per service only.
    pub async fn fleet_sli(
        &self,
        url: &str,
        window: Window,
        namespace: &str,
        name: &str,
        now: f64,
    ) -> Option<Result<Sli, String>> {
        let key = (url.to_owned(), window.as_secs());
        // Held across the read on purpose: the services due at the same moment wait for one
        // read instead of each sending their own.
        let mut fleets = self.fleets.lock().await;
        if !fleets.contains_key(&key) {
            let reader = match self.sources.fleet(url, window)? {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            };
            fleets.insert(key.clone(), Fleet { reader, last: None });
        }
        let fleet = fleets.get_mut(&key)?;
        let fresh = fleet
            .last
            .as_ref()
            .filter(|s| now - s.at() < self.interval.as_secs_f64() - 1.0 && now >= s.at());
        let snapshot = match fresh {
            Some(s) => s.clone(),
            None => {
                let s = Arc::new(fleet.reader.read(now).await);
                fleet.last = Some(s.clone());
                s
            }
        };
        Some(Ok(snapshot.sli(namespace, name)))
    }

    /// When the service's SLIs were last read (Unix seconds), if since this process started.
    pub fn last_read(&self, uid: &str) -> Option<f64> {
        let all = self.history.lock().unwrap_or_else(|p| p.into_inner());
        all.get(uid).and_then(|h| h.last()).map(|s| s.at)
    }

    /// Forgets a service's history (mode Off, or the service went away).
    pub fn forget(&self, uid: &str) {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid);
    }
}

impl std::fmt::Debug for SloLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SloLoop")
            .field("interval", &self.interval)
            .field("prometheus_url", &self.prometheus_url)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_service_prometheus_urls_must_be_on_the_allow_list() {
        let lp = SloLoop::new(
            DEFAULT_INTERVAL,
            Some("http://prometheus.monitoring:9090".into()),
            Arc::new(PrometheusFactory::default()),
            Arc::new(HttpSettingsClient::default()),
        )
        .with_allowed_prometheus_urls(vec![
            "http://prom.team-a:9090".into(),
            "https://thanos.example/tenant/".into(),
        ]);
        for (url, ok) in [
            ("http://prometheus.monitoring:9090", true),
            ("http://prom.team-a:9090", true),
            ("http://prom.team-a:9090/", true),
            ("http://prom.team-a:9090/prefix", true),
            ("https://thanos.example/tenant/a", true),
            ("http://prom.team-a:90901", false),
            ("http://prom.team-a:9090.evil.example", false),
            ("http://prom.team-a:9090@evil.example", false),
            ("https://thanos.example/other", false),
            ("http://169.254.169.254/latest", false),
            ("http://prometheus.monitoring:9090/x", false),
        ] {
            assert_eq!(lp.allows_prometheus_url(url), ok, "{url}");
        }
    }
}

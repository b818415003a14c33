//! Resource use during a bench, read from the server's Prometheus `/metrics` page: peak memory
//! (`llm_memory_usage_megabytes` against `llm_memory_capacity_megabytes`) and mean GPU
//! utilisation when an exporter on the page reports one. Scrape failures are not bench failures:
//! unknown resources are simply left out of the report.

use sluice_contract::metrics as names;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_parse::{Sample, Scrape, Value};
use serde::Serialize;

/// Memory type preferred for the report: on GPU servers the accelerator memory; on CPU the
/// server reports weights + KV cache under the same name.
const MEMORY_TYPE: &str = names::MemoryType::Vram.as_str();

/// What the scrapes showed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ResourceUsage {
    /// Peak `llm_memory_usage_megabytes{memory_type="vram"}` seen during the run.
    pub memory_peak_mb: Option<f64>,
    /// `llm_memory_capacity_megabytes{memory_type="vram"}`.
    pub memory_capacity_mb: Option<f64>,
    /// Mean GPU utilisation in percent over the scrapes that reported one.
    pub gpu_utilization_pct: Option<f64>,
    /// Successful scrapes.
    pub scrapes: u32,
    /// Why the last scrape failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip)]
    gpu_sum: f64,
    #[serde(skip)]
    gpu_n: u32,
}

impl ResourceUsage {
    /// Folds one scraped page into the running figures.
    pub fn observe(&mut self, samples: &[Sample]) {
        self.scrapes += 1;
        let sum_of = |name: &str| {
            let mut found = false;
            let total = samples
                .iter()
                .filter(|s| s.metric == name)
                .filter(|s| s.labels.get(names::MEMORY_TYPE_LABEL) == Some(MEMORY_TYPE))
                .filter_map(scalar)
                .inspect(|_| found = true)
                .sum::<f64>();
            found.then_some(total)
        };
        if let Some(used) = sum_of(names::MEMORY_USAGE_MEGABYTES) {
            self.memory_peak_mb = Some(self.memory_peak_mb.map_or(used, |p| p.max(used)));
        }
        if let Some(cap) = sum_of(names::MEMORY_CAPACITY_MEGABYTES) {
            self.memory_capacity_mb = Some(cap);
        }
        if let Some(pct) = gpu_utilization_pct(samples) {
            self.gpu_sum += pct;
            self.gpu_n += 1;
            self.gpu_utilization_pct = Some(self.gpu_sum / f64::from(self.gpu_n));
        }
    }
}

/// Mean over GPUs of the first utilisation metric present (DCGM exporter, or our own names).
fn gpu_utilization_pct(samples: &[Sample]) -> Option<f64> {
    const METRICS: [(&str, f64); 3] = [
        ("DCGM_FI_DEV_GPU_UTIL", 1.0),
        ("llm_gpu_utilization_percent", 1.0),
        ("llm_gpu_utilization_ratio", 100.0),
    ];
    METRICS.iter().find_map(|(name, scale)| {
        let values: Vec<f64> = samples
            .iter()
            .filter(|s| s.metric == *name)
            .filter_map(scalar)
            .map(|v| v * scale)
            .collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    })
}

/// The finite value of a gauge, counter or untyped sample.
fn scalar(s: &Sample) -> Option<f64> {
    match s.value {
        Value::Gauge(v) | Value::Counter(v) | Value::Untyped(v) if v.is_finite() => Some(v),
        _ => None,
    }
}

/// Parses a Prometheus text exposition page.
pub fn parse_page(text: &str) -> Result<Vec<Sample>, std::io::Error> {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).map(|s| s.samples)
}

/// Scrapes `url` every `every` into `usage` until the task is aborted.
pub async fn sample_periodically(
    client: reqwest::Client,
    url: reqwest::Url,
    every: Duration,
    usage: Arc<Mutex<ResourceUsage>>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        scrape_into(&client, &url, &usage).await;
    }
}

/// One scrape; failures are remembered, not raised.
pub async fn scrape_into(
    client: &reqwest::Client,
    url: &reqwest::Url,
    usage: &Mutex<ResourceUsage>,
) {
    let result = async {
        let resp = client
            .get(url.clone())
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| format!("failed to scrape {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("failed to scrape {url}: HTTP {}", resp.status()));
        }
        let text = resp
            .text()
            .await
            .map_err(|e| format!("failed to scrape {url}: {e}"))?;
        parse_page(&text).map_err(|e| format!("failed to parse metrics from {url}: {e}"))
    }
    .await;
    let mut u = usage.lock().unwrap_or_else(|p| p.into_inner());
    match result {
        Ok(samples) => u.observe(&samples),
        Err(e) => u.last_error = Some(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"
# TYPE llm_memory_usage_megabytes gauge
llm_memory_usage_megabytes{memory_type="vram"} 120.5
llm_memory_usage_megabytes{memory_type="ram"} 900
llm_memory_usage_megabytes{memory_type="kv_cache"} 20.5
llm_memory_capacity_megabytes{memory_type="vram"} 1024
"#;

    #[test]
    fn keeps_peak_memory_and_capacity() {
        let mut u = ResourceUsage::default();
        u.observe(&parse_page(PAGE).unwrap());
        u.observe(&parse_page(&PAGE.replace("120.5", "100")).unwrap());
        assert_eq!(u.memory_peak_mb, Some(120.5));
        assert_eq!(u.memory_capacity_mb, Some(1024.0));
        assert_eq!(u.gpu_utilization_pct, None);
        assert_eq!(u.scrapes, 2);
    }

    #[test]
    fn averages_gpu_utilization_over_gpus_and_scrapes() {
        let mut u = ResourceUsage::default();
        let page = "DCGM_FI_DEV_GPU_UTIL{gpu=\"0\"} 60\nDCGM_FI_DEV_GPU_UTIL{gpu=\"1\"} 80\n";
        u.observe(&parse_page(page).unwrap());
        u.observe(&parse_page("llm_gpu_utilization_ratio 0.5\n").unwrap());
        assert_eq!(u.gpu_utilization_pct, Some(60.0));
        assert_eq!(u.memory_peak_mb, None);
    }
}

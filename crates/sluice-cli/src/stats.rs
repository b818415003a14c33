//! Turns request samples into the numbers a bench reports: HDR-histogram percentiles of TTFT,
//! TPOT and end-to-end latency, token-weighted mean TPOT, throughput and error counts by kind.
//! Pure: the same samples always give the same summary, so it is tested on hand-computed data.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::bench::sample::{Sample, TimingSource};

/// Significant figures kept by the histograms: values are exact to within 0.1%.
const SIGFIGS: u8 = 3;

/// Percentiles of one latency in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyStats {
    pub count: u64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Microsecond HDR histogram with nearest-rank percentiles.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    hist: Histogram<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> Self {
        // Auto-resizing, so no latency is ever clamped or dropped.
        let hist = Histogram::new(SIGFIGS).expect("3 significant figures is a valid precision");
        LatencyHistogram { hist }
    }

    pub fn record(&mut self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        // `record` grows the auto-resizing histogram; `saturating_record` would clamp to its
        // current (tiny) bound instead. Only values beyond u64 range can still fail.
        if self.hist.record(micros).is_err() {
            self.hist.saturating_record(micros);
        }
    }

    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// Nearest-rank percentile in milliseconds (`q` in 0..=1); the midpoint of the HDR bucket
    /// that holds the ranked value, so the error is at most half a bucket (< 0.05%).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let v = self.hist.value_at_quantile(q);
        self.hist.median_equivalent(v) as f64 / 1000.0
    }

    pub fn stats(&self) -> Option<LatencyStats> {
        if self.hist.is_empty() {
            return None;
        }
        Some(LatencyStats {
            count: self.hist.len(),
            min_ms: self.hist.median_equivalent(self.hist.min()) as f64 / 1000.0,
            mean_ms: self.hist.mean() / 1000.0,
            p50_ms: self.quantile_ms(0.50),
            p90_ms: self.quantile_ms(0.90),
            p95_ms: self.quantile_ms(0.95),
            p99_ms: self.quantile_ms(0.99),
            max_ms: self.hist.median_equivalent(self.hist.max()) as f64 / 1000.0,
        })
    }
}

/// Everything a bench measured, ready for the table, JSON and markdown report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Seconds the load ran (the denominator of every rate).
    pub duration_s: f64,
    pub requests: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Failed / all requests (0 when there were none).
    pub error_rate: f64,
    /// Failures by stable kind label (`http_429`, `http_503`, `timeout`, `connect`, `stream_broken`, ...).
    pub errors: BTreeMap<String, u64>,
    /// In-flight requests cancelled when the run ended (not counted as successes or failures).
    pub cancelled_at_end: u64,
    pub throughput_rps: f64,
    pub output_tokens: u64,
    pub output_tokens_per_s: f64,
    /// `client` when TTFT was seen on the wire, `server` when taken from response timings.
    pub ttft_source: Option<TimingSource>,
    pub ttft: Option<LatencyStats>,
    /// Per-request mean inter-token time.
    pub tpot: Option<LatencyStats>,
    /// Mean over every inter-token interval of every successful request (token-weighted).
    pub tpot_avg_ms: Option<f64>,
    /// End-to-end latency of successful requests.
    pub latency: Option<LatencyStats>,
}

impl Summary {
    pub fn from_samples(samples: &[Sample], duration: Duration, cancelled_at_end: u64) -> Summary {
        let mut ttft = LatencyHistogram::new();
        let mut tpot = LatencyHistogram::new();
        let mut latency = LatencyHistogram::new();
        let mut errors = BTreeMap::<String, u64>::new();
        let mut output_tokens = 0u64;
        let (mut decode_time, mut decode_intervals) = (Duration::ZERO, 0u64);
        let mut source = None;

        for s in samples {
            if let Some(kind) = s.error {
                *errors.entry(kind.label()).or_default() += 1;
                continue;
            }
            latency.record(s.latency);
            output_tokens += s.tokens;
            if let Some(t) = s.ttft {
                ttft.record(t);
                // Client-side beats server-reported when a run mixes both.
                if source != Some(TimingSource::Client) {
                    source = Some(s.timing_source);
                }
            }
            if let Some(t) = s.tpot {
                tpot.record(t);
                let intervals = s.tokens.saturating_sub(1);
                decode_time += t * u32::try_from(intervals).unwrap_or(u32::MAX);
                decode_intervals += intervals;
            }
        }

        let requests = samples.len() as u64;
        let failed = errors.values().sum::<u64>();
        let succeeded = requests - failed;
        let secs = duration.as_secs_f64();
        let per_s = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        Summary {
            duration_s: secs,
            requests,
            succeeded,
            failed,
            error_rate: if requests == 0 {
                0.0
            } else {
                failed as f64 / requests as f64
            },
            errors,
            cancelled_at_end,
            throughput_rps: per_s(succeeded),
            output_tokens,
            output_tokens_per_s: per_s(output_tokens),
            ttft_source: source,
            ttft: ttft.stats(),
            tpot: tpot.stats(),
            tpot_avg_ms: (decode_intervals > 0)
                .then(|| decode_time.as_secs_f64() * 1000.0 / decode_intervals as f64),
            latency: latency.stats(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::sample::ErrorKind;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn close(actual: f64, expected: f64) {
        // HDR keeps 3 significant figures: the midpoint is within 0.05% of the true value.
        let tol = expected.abs() * 0.0005 + 1e-9;
        assert!(
            (actual - expected).abs() <= tol,
            "expected {expected}, got {actual}"
        );
    }

    fn ok(start_s: f64, latency: u64, ttft: u64, tokens: u64) -> Sample {
        Sample {
            start_s,
            latency: ms(latency),
            ttft: Some(ms(ttft)),
            tokens,
            tpot: crate::bench::sample::tpot_of(ms(latency), ms(ttft), tokens),
            timing_source: TimingSource::Client,
            error: None,
            error_detail: None,
        }
    }

    #[test]
    fn nearest_rank_percentiles_of_1_to_100_ms() {
        let mut h = LatencyHistogram::new();
        for v in 1..=100 {
            h.record(ms(v));
        }
        let s = h.stats().unwrap();
        // Nearest rank: P50 is the 50th value, P95 the 95th, P99 the 99th.
        close(s.p50_ms, 50.0);
        close(s.p90_ms, 90.0);
        close(s.p95_ms, 95.0);
        close(s.p99_ms, 99.0);
        close(s.min_ms, 1.0);
        close(s.max_ms, 100.0);
        close(s.mean_ms, 50.5);
        assert_eq!(s.count, 100);
    }

    #[test]
    fn percentiles_of_ten_values_round_up_to_the_next_rank() {
        let mut h = LatencyHistogram::new();
        for v in [10, 20, 30, 40, 50, 60, 70, 80, 90, 100] {
            h.record(ms(v));
        }
        close(h.quantile_ms(0.5), 50.0);
        // ceil(0.95 * 10) = 10th value.
        close(h.quantile_ms(0.95), 100.0);
        close(h.quantile_ms(0.99), 100.0);
        close(h.quantile_ms(0.1), 10.0);
    }

    #[test]
    fn skewed_distribution_has_exact_tail() {
        // 990 fast requests and 10 slow ones: P99 is still fast, P99.9 is slow.
        let mut h = LatencyHistogram::new();
        for _ in 0..990 {
            h.record(ms(20));
        }
        for _ in 0..10 {
            h.record(Duration::from_secs(2));
        }
        close(h.quantile_ms(0.99), 20.0);
        close(h.quantile_ms(0.999), 2000.0);
        close(
            h.stats().unwrap().mean_ms,
            (990.0 * 20.0 + 10.0 * 2000.0) / 1000.0,
        );
    }

    #[test]
    fn summary_counts_errors_and_rates() {
        let samples = vec![
            // 100 ms TTFT then 10 more tokens 20 ms apart: TPOT 20 ms.
            ok(0.0, 300, 100, 11),
            // 200 ms TTFT then 4 intervals of 50 ms: TPOT 50 ms.
            ok(1.0, 400, 200, 5),
            Sample::failed(2.0, ms(5), ErrorKind::RateLimited, "full"),
            Sample::failed(3.0, ms(5), ErrorKind::RateLimited, "full"),
            Sample::failed(4.0, ms(60_000), ErrorKind::Timeout, "slow"),
        ];
        let s = Summary::from_samples(&samples, Duration::from_secs(4), 1);
        assert_eq!((s.requests, s.succeeded, s.failed), (5, 2, 3));
        assert_eq!(s.errors.get("http_429"), Some(&2));
        assert_eq!(s.errors.get("timeout"), Some(&1));
        assert_eq!(s.cancelled_at_end, 1);
        close(s.error_rate, 0.6);
        close(s.throughput_rps, 0.5);
        assert_eq!(s.output_tokens, 16);
        close(s.output_tokens_per_s, 4.0);
        // Token-weighted: (10 * 20 + 4 * 50) / 14 intervals.
        close(s.tpot_avg_ms.unwrap(), 400.0 / 14.0);
        let ttft = s.ttft.unwrap();
        close(ttft.p50_ms, 100.0);
        close(ttft.p99_ms, 200.0);
        assert_eq!(s.ttft_source, Some(TimingSource::Client));
        // Failed requests never enter the latency percentiles.
        assert_eq!(s.latency.unwrap().count, 2);
    }

    #[test]
    fn empty_run_has_no_percentiles_and_no_nan() {
        let s = Summary::from_samples(&[], Duration::from_secs(1), 0);
        assert_eq!(s.requests, 0);
        assert_eq!(s.error_rate, 0.0);
        assert!(s.ttft.is_none() && s.tpot_avg_ms.is_none() && s.latency.is_none());
    }
}

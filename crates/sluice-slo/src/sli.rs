//! SLI snapshot types: what one read of a service's metrics yields.
//!
//! Every value is either `Known` with the timestamp it describes or `Unknown` with the reason;
//! a failed query, an empty result, NaN/Inf or a stale sample is never turned into 0, because a
//! 0 would read as "idle" and could scale a busy service down.

use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch; the engine's one clock type (Prometheus uses the same).
pub type UnixSeconds = f64;

/// One SLI value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum SliValue {
    /// A finite measured value and the time it describes.
    Known {
        /// The value, in the unit named by the field that holds it.
        value: f64,
        /// When the value was measured or evaluated.
        at: UnixSeconds,
    },
    /// Not measurable now, and why.
    Unknown {
        /// Human-readable cause, e.g. "empty result" or "stale: last sample 130 s old".
        reason: String,
    },
}

impl SliValue {
    /// A known value; NaN and infinities become Unknown so callers never carry them around.
    pub fn known(value: f64, at: UnixSeconds) -> Self {
        if value.is_finite() {
            SliValue::Known { value, at }
        } else {
            SliValue::unknown(format!("non-finite value {value}"))
        }
    }

    /// An unknown value.
    pub fn unknown(reason: impl Into<String>) -> Self {
        SliValue::Unknown {
            reason: reason.into(),
        }
    }

    /// The value if known.
    pub fn value(&self) -> Option<f64> {
        match self {
            SliValue::Known { value, .. } => Some(*value),
            SliValue::Unknown { .. } => None,
        }
    }

    /// The reason if unknown.
    pub fn unknown_reason(&self) -> Option<&str> {
        match self {
            SliValue::Known { .. } => None,
            SliValue::Unknown { reason } => Some(reason),
        }
    }

    /// True when known.
    pub fn is_known(&self) -> bool {
        matches!(self, SliValue::Known { .. })
    }
}

impl Default for SliValue {
    fn default() -> Self {
        SliValue::unknown("not measured")
    }
}

/// Memory SLIs for one `memory_type` (`vram`, `ram`, `kv_cache`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemorySli {
    /// The `memory_type` label value.
    pub memory_type: String,
    /// In use, summed over pods (MB).
    pub usage_megabytes: SliValue,
    /// Capacity, summed over pods (MB).
    pub capacity_megabytes: SliValue,
    /// Worst per-pod use/capacity ratio (0..1).
    pub usage_ratio: SliValue,
}

/// Memory types whose pressure limits serving; `ram` is host memory and is reported only.
pub const PRESSURE_MEMORY_TYPES: &[&str] = &[
    sluice_contract::metrics::MemoryType::PRESSURE[0].as_str(),
    sluice_contract::metrics::MemoryType::PRESSURE[1].as_str(),
];

/// One snapshot of a service's SLIs over a window ending at `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sli {
    /// When the snapshot was taken.
    pub at: UnixSeconds,
    /// Length of the rate window the values cover (seconds).
    pub window_seconds: u64,
    /// TTFT quantile (P95 unless configured otherwise), seconds.
    pub ttft_p95_seconds: SliValue,
    /// Mean time per output token, seconds.
    pub tpot_seconds: SliValue,
    /// Finished requests per second.
    pub request_rate_per_second: SliValue,
    /// Share of requests ending `error|timeout|rejected`.
    pub error_ratio: SliValue,
    /// Share ending `error` (internal failures).
    pub internal_error_ratio: SliValue,
    /// Share ending `rejected` (HTTP 429: admission full).
    pub rejection_ratio: SliValue,
    /// Requests waiting for admission, all pods.
    pub queue_depth: SliValue,
    /// Sequences being decoded, all pods.
    pub running_sequences: SliValue,
    /// Generated tokens per second, all pods.
    pub tokens_per_second: SliValue,
    /// Mean queue wait, seconds.
    pub queue_wait_seconds: SliValue,
    /// Mean request duration excluding queue wait, seconds.
    pub service_time_seconds: SliValue,
    /// Mean GPU utilisation 0..1 (DCGM); Unknown on CPU-only servers.
    pub gpu_utilization_ratio: SliValue,
    /// Pods exporting metrics.
    pub reporting_pods: SliValue,
    /// Memory by type.
    pub memory: Vec<MemorySli>,
}

impl Sli {
    /// A snapshot in which every value is Unknown for the same reason (e.g. source unreachable).
    pub fn all_unknown(at: UnixSeconds, window_seconds: u64, reason: &str) -> Self {
        let u = || SliValue::unknown(reason);
        Sli {
            at,
            window_seconds,
            ttft_p95_seconds: u(),
            tpot_seconds: u(),
            request_rate_per_second: u(),
            error_ratio: u(),
            internal_error_ratio: u(),
            rejection_ratio: u(),
            queue_depth: u(),
            running_sequences: u(),
            tokens_per_second: u(),
            queue_wait_seconds: u(),
            service_time_seconds: u(),
            gpu_utilization_ratio: u(),
            reporting_pods: u(),
            memory: Vec::new(),
        }
    }

    /// The memory type under the most pressure among `vram` and `kv_cache`, with its ratio.
    ///
    /// Unknown when neither type has a known ratio.
    pub fn memory_pressure(&self) -> Option<(&str, f64)> {
        self.memory
            .iter()
            .filter(|m| PRESSURE_MEMORY_TYPES.contains(&m.memory_type.as_str()))
            .filter_map(|m| m.usage_ratio.value().map(|r| (m.memory_type.as_str(), r)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// Usage ratio of one memory type, if known.
    pub fn memory_ratio_of(&self, memory_type: &str) -> Option<f64> {
        self.memory
            .iter()
            .find(|m| m.memory_type == memory_type)
            .and_then(|m| m.usage_ratio.value())
    }

    /// Named values, for evidence and for listing what is unknown.
    pub fn named(&self) -> Vec<(&'static str, &SliValue)> {
        vec![
            ("ttftP95Seconds", &self.ttft_p95_seconds),
            ("tpotSeconds", &self.tpot_seconds),
            ("requestRatePerSecond", &self.request_rate_per_second),
            ("errorRatio", &self.error_ratio),
            ("internalErrorRatio", &self.internal_error_ratio),
            ("rejectionRatio", &self.rejection_ratio),
            ("queueDepth", &self.queue_depth),
            ("runningSequences", &self.running_sequences),
            ("tokensPerSecond", &self.tokens_per_second),
            ("queueWaitSeconds", &self.queue_wait_seconds),
            ("serviceTimeSeconds", &self.service_time_seconds),
            ("gpuUtilizationRatio", &self.gpu_utilization_ratio),
            ("reportingPods", &self.reporting_pods),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_are_unknown() {
        assert!(!SliValue::known(f64::NAN, 1.0).is_known());
        assert!(!SliValue::known(f64::INFINITY, 1.0).is_known());
        assert_eq!(SliValue::known(0.0, 1.0).value(), Some(0.0));
    }

    #[test]
    fn serialises_camel_case_with_state_tag() {
        let v = serde_json::to_value(SliValue::known(0.5, 10.0)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"state": "known", "value": 0.5, "at": 10.0})
        );
        let u = serde_json::to_value(SliValue::unknown("empty result")).unwrap();
        assert_eq!(
            u,
            serde_json::json!({"state": "unknown", "reason": "empty result"})
        );
        let s = serde_json::to_value(Sli::all_unknown(1.0, 60, "x")).unwrap();
        assert!(s.get("ttftP95Seconds").is_some());
        assert!(s.get("windowSeconds").is_some());
    }

    #[test]
    fn memory_pressure_takes_the_worst_of_vram_and_kv_cache() {
        let mut s = Sli::all_unknown(1.0, 60, "x");
        let m = |t: &str, r: f64| MemorySli {
            memory_type: t.into(),
            usage_megabytes: SliValue::unknown("x"),
            capacity_megabytes: SliValue::unknown("x"),
            usage_ratio: SliValue::known(r, 1.0),
        };
        s.memory = vec![m("ram", 0.99), m("vram", 0.7), m("kv_cache", 0.9)];
        assert_eq!(s.memory_pressure(), Some(("kv_cache", 0.9)));
        assert_eq!(s.memory_ratio_of("ram"), Some(0.99));
    }
}

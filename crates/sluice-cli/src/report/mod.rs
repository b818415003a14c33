//! The result of a bench and its renderings: the seed's markdown section, the terminal table,
//! JSON and SVG plots.

pub mod markdown;
pub mod plot;
pub mod table;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::bench::resources::ResourceUsage;
use crate::bench::sample::Sample;
use crate::cli::Endpoint;
use crate::stats::Summary;

/// How the load was generated, as the report states it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum LoadDescription {
    Closed {
        users: u32,
        spawn_rate: f64,
        run_time_s: f64,
    },
    Poisson {
        rate: f64,
        run_time_s: f64,
    },
    Trace {
        file: String,
        requests: usize,
        time_scale: f64,
        /// Wall time the replay spans (the last arrival, or --run-time when it cuts the trace).
        run_time_s: f64,
    },
}

impl LoadDescription {
    pub fn run_time(&self) -> Duration {
        let s = match self {
            LoadDescription::Closed { run_time_s, .. }
            | LoadDescription::Poisson { run_time_s, .. }
            | LoadDescription::Trace { run_time_s, .. } => *run_time_s,
        };
        Duration::from_secs_f64(s.max(0.0))
    }
}

/// Everything one bench produced.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Local date of the run (YYYY-MM-DD).
    pub date: String,
    pub url: String,
    pub endpoint: Endpoint,
    pub load: LoadDescription,
    pub summary: Summary,
    pub resources: ResourceUsage,
    /// The run was stopped by Ctrl-C before its end.
    pub interrupted: bool,
    /// First message seen for each error kind.
    pub error_examples: BTreeMap<String, String>,
    /// Per-request data for plots; not part of the JSON summary.
    #[serde(skip)]
    pub samples: Vec<Sample>,
}

/// Milliseconds with precision that suits their size (450 ms, 45.2 ms, 4.51 ms).
pub fn fmt_ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

/// A number without trailing zeros: 2 → "2", 0.5 → "0.5", 1/3 → "0.33".
pub fn fmt_num(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// A run length as the user would type it: 5m, 1h 30m, 20s.
pub fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs_f64().round() as u64;
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(fmt_ms(450.4), "450 ms");
        assert_eq!(fmt_ms(45.24), "45.2 ms");
        assert_eq!(fmt_ms(4.514), "4.51 ms");
        assert_eq!(fmt_num(2.0), "2");
        assert_eq!(fmt_num(0.5), "0.5");
        assert_eq!(fmt_num(1.0 / 3.0), "0.33");
        assert_eq!(fmt_duration(Duration::from_secs(300)), "5m");
        assert_eq!(fmt_duration(Duration::from_secs(5400)), "1h 30m");
        assert_eq!(fmt_duration(Duration::from_millis(19_600)), "20s");
    }
}

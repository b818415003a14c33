//! Arguments of `sluice simulate` (clap derive), validated at parse time.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use sluice_contract::Quantization;
use sluice_sim::Pattern;

use crate::cli::parse_positive_duration;

/// A policy to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyName {
    /// The operator's SLO loop and planner, with the operator's defaults.
    Sluice,
    /// The same loop with model-based sizing: the profile's capacity at the workload's mean
    /// token mix as the spec's capacity model.
    SluiceModel,
    /// The Kubernetes HPA on `--hpa-metric` at `--hpa-target`.
    Hpa,
    /// KEDA: queue length per replica at `--keda-target`, through the HPA algorithm.
    Keda,
    /// Fixed replicas (`--replicas`).
    Static,
}

/// What the HPA averages per pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HpaMetricName {
    /// In-flight requests per pod.
    Concurrency,
    /// Busy share of each pod's step loop (CPU or GPU utilisation), 0..1.
    Utilization,
}

/// Arguments of `sluice simulate`.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Server profile (JSON, as `sluice profile` writes; shipped ones are in profiles/).
    #[arg(long, env = "SLUICE_SIM_PROFILE")]
    pub profile: PathBuf,

    /// Trace to replay (`TIMESTAMP,ContextTokens,GeneratedTokens`, the Azure format).
    #[arg(long, env = "SLUICE_SIM_TRACE", conflicts_with = "pattern")]
    pub trace: Option<PathBuf>,

    /// Synthetic load instead of a trace: `step:FROM:TO:AT_S`, `ramp:FROM:TO`,
    /// `diurnal:LOW:HIGH:PERIOD_S` or `burst:BASE:PEAK:EVERY_S:LENGTH_S` (rates in req/s).
    #[arg(long, env = "SLUICE_SIM_PATTERN", value_parser = parse_pattern)]
    pub pattern: Option<Pattern>,

    /// Seconds simulated (default: the trace's span after scaling, or 1h for a pattern).
    #[arg(long, env = "SLUICE_SIM_DURATION", value_parser = parse_positive_duration)]
    pub duration: Option<Duration>,

    /// Multiplies every trace arrival time (0.5 = twice as fast).
    #[arg(long, env = "SLUICE_SIM_TIME_SCALE", default_value_t = 1.0, value_parser = positive)]
    pub time_scale: f64,

    /// Multiplies the arrival rate keeping the trace's shape and duration.
    #[arg(long, env = "SLUICE_SIM_RATE_SCALE", default_value_t = 1.0, value_parser = positive)]
    pub rate_scale: f64,

    /// Trace rows skipped before replaying.
    #[arg(long, env = "SLUICE_SIM_SKIP", default_value_t = 0)]
    pub skip: usize,

    /// Trace rows replayed at most.
    #[arg(long, env = "SLUICE_SIM_LIMIT")]
    pub limit: Option<usize>,

    /// Cap every trace row's prompt at this many tokens (as `sluice bench --max-prompt-tokens`
    /// does, to replay the same slice against a small model and here).
    #[arg(long, env = "SLUICE_SIM_MAX_PROMPT_TOKENS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_prompt_tokens: Option<u32>,

    /// Mean prompt tokens of synthetic requests.
    #[arg(long, env = "SLUICE_SIM_PROMPT_TOKENS", default_value_t = 256)]
    pub prompt_tokens: u32,

    /// Mean output tokens of synthetic requests.
    #[arg(long, env = "SLUICE_SIM_OUTPUT_TOKENS", default_value_t = 128)]
    pub output_tokens: u32,

    /// Seed of the synthetic arrivals and of rate scaling.
    #[arg(long, env = "SLUICE_SIM_SEED", default_value_t = 1)]
    pub seed: u64,

    /// Policies to compare (comma-separated).
    #[arg(
        long,
        env = "SLUICE_SIM_POLICIES",
        value_delimiter = ',',
        default_value = "sluice,sluice-model,hpa,keda,static"
    )]
    pub policies: Vec<PolicyName>,

    /// What the HPA scales on.
    #[arg(long, env = "SLUICE_SIM_HPA_METRIC", value_enum, default_value_t = HpaMetricName::Concurrency)]
    pub hpa_metric: HpaMetricName,

    /// The HPA's target per pod (in-flight requests, or a 0..1 utilisation).
    #[arg(long, env = "SLUICE_SIM_HPA_TARGET", default_value_t = 8.0, value_parser = positive)]
    pub hpa_target: f64,

    /// KEDA's target waiting requests per replica.
    #[arg(long, env = "SLUICE_SIM_KEDA_TARGET", default_value_t = 4.0, value_parser = positive)]
    pub keda_target: f64,

    /// Replicas at the start (and the static policy's count).
    #[arg(long, env = "SLUICE_SIM_REPLICAS", default_value_t = 1)]
    pub replicas: u32,

    /// Fewest replicas any policy may run.
    #[arg(long, env = "SLUICE_SIM_MIN_REPLICAS", default_value_t = 1)]
    pub min_replicas: u32,

    /// Most replicas any policy may run.
    #[arg(long, env = "SLUICE_SIM_MAX_REPLICAS", default_value_t = 10)]
    pub max_replicas: u32,

    /// Quantizations sluice may walk, highest precision first (default: the profile's).
    #[arg(long, env = "SLUICE_SIM_LADDER", value_delimiter = ',')]
    pub quantization_ladder: Vec<Quantization>,

    /// `serving.maxTokens.default`: the cap in force at the start.
    #[arg(long, env = "SLUICE_SIM_MAX_TOKENS", default_value_t = 1024)]
    pub max_tokens: u32,

    /// `serving.maxTokens.floor`: the lowest cap sluice may clamp to (= --max-tokens: fixed).
    #[arg(long, env = "SLUICE_SIM_MAX_TOKENS_FLOOR", default_value_t = 128)]
    pub max_tokens_floor: u32,

    /// TTFT P95 objective.
    #[arg(long, env = "SLUICE_SIM_TTFT_P95", default_value = "1s", value_parser = parse_positive_duration)]
    pub ttft_p95: Duration,

    /// Mean time per output token objective.
    #[arg(long, env = "SLUICE_SIM_TPOT", default_value = "50ms", value_parser = parse_positive_duration)]
    pub tpot: Duration,

    /// Error ratio objective (429s and failures over requests).
    #[arg(long, env = "SLUICE_SIM_ERROR_RATIO", default_value_t = 0.01, value_parser = positive)]
    pub error_ratio: f64,

    /// SLI window the loop reads (`spec.slo.window`; default: the CRD's).
    #[arg(long, env = "SLUICE_SIM_WINDOW", value_parser = parse_positive_duration)]
    pub window: Option<Duration>,

    /// Seconds between two policy ticks (the operator's `--slo-interval`).
    #[arg(long, env = "SLUICE_SIM_INTERVAL", default_value = "15s", value_parser = parse_positive_duration)]
    pub interval: Duration,

    /// Write every run (windows, actions, timeline) as JSON here.
    #[arg(long, env = "SLUICE_SIM_JSON")]
    pub json: Option<PathBuf>,

    /// Write the comparison table (markdown) here as well as to stdout.
    #[arg(long, env = "SLUICE_SIM_REPORT")]
    pub report: Option<PathBuf>,

    /// Write replicas and TTFT P95 over time per policy as one SVG here.
    #[arg(long, env = "SLUICE_SIM_PLOT")]
    pub plot: Option<PathBuf>,
}

fn positive(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid number {s:?}"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("invalid value {s:?}: must be a finite number > 0"));
    }
    Ok(v)
}

/// Parses `--pattern`.
pub fn parse_pattern(s: &str) -> Result<Pattern, String> {
    let mut parts = s.trim().split(':');
    let kind = parts.next().unwrap_or_default();
    let nums: Vec<f64> = parts
        .map(|p| {
            p.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("invalid pattern {s:?}: {p:?} is not a number >= 0"))
        })
        .collect::<Result<_, _>>()?;
    let want = |n: usize, shape: &str| {
        if nums.len() == n {
            Ok(())
        } else {
            Err(format!("invalid pattern {s:?}: expected {shape}"))
        }
    };
    let p = match kind {
        "step" => {
            want(3, "step:FROM:TO:AT_S")?;
            Pattern::Step {
                from: nums[0],
                to: nums[1],
                at: nums[2],
            }
        }
        "ramp" => {
            want(2, "ramp:FROM:TO")?;
            Pattern::Ramp {
                from: nums[0],
                to: nums[1],
            }
        }
        "diurnal" => {
            want(3, "diurnal:LOW:HIGH:PERIOD_S")?;
            Pattern::Diurnal {
                low: nums[0],
                high: nums[1],
                period: nums[2],
            }
        }
        "burst" => {
            want(4, "burst:BASE:PEAK:EVERY_S:LENGTH_S")?;
            Pattern::Burst {
                base: nums[0],
                peak: nums[1],
                every: nums[2],
                length: nums[3],
            }
        }
        _ => {
            return Err(format!(
                "invalid pattern {s:?}: expected step:, ramp:, diurnal: or burst:"
            ));
        }
    };
    if p.peak() <= 0.0 {
        return Err(format!("invalid pattern {s:?}: its rate is never above 0"));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_parse_or_say_why_not() {
        assert_eq!(
            parse_pattern("step:2:10:300").unwrap(),
            Pattern::Step {
                from: 2.0,
                to: 10.0,
                at: 300.0
            }
        );
        assert!(matches!(
            parse_pattern("burst:1:9:60:10"),
            Ok(Pattern::Burst { .. })
        ));
        for bad in [
            "step:2:10",
            "wave:1:2",
            "ramp:a:2",
            "ramp:0:0",
            "diurnal:1:-2:60",
            "",
        ] {
            assert!(parse_pattern(bad).is_err(), "{bad}");
        }
    }
}

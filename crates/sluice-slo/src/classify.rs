//! BottleneckClass classifier: from one SLI snapshot (plus recent ones for trends) to a class, the
//! rule that decided it and the evidence values that fired the rule.
//!
//! Rules are checked in a fixed priority order and the first that fires names the class; every
//! other rule that fired is kept as secondary so nothing observed is hidden. The order puts the
//! causes that scaling cannot fix (memory, software) before the ones it can, so a service that
//! is out of memory is never "fixed" with replicas. The rule table is documented in `docs/slo.md`;
//! rule ids there and in [`Classification::rule`] match.

use serde::{Deserialize, Serialize};
use sluice_contract::{BottleneckClass, Evidence};

use crate::sli::{Sli, SliValue};
use crate::spec::SloTargets;

/// One rule that fired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleHit {
    /// Rule id from the table in `docs/slo.md` (e.g. `Q1`).
    pub rule: String,
    /// Class the rule names.
    #[serde(with = "sluice_contract::slo::class_by_name")]
    pub class: BottleneckClass,
    /// One sentence saying what was seen.
    pub summary: String,
    /// The values that fired it.
    pub evidence: Vec<Evidence>,
}

/// Classifier output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Classification {
    /// Winning class.
    #[serde(with = "sluice_contract::slo::class_by_name")]
    pub class: BottleneckClass,
    /// Winning rule id.
    pub rule: String,
    /// Winning rule's sentence.
    pub summary: String,
    /// Winning rule's evidence.
    pub evidence: Vec<Evidence>,
    /// Other rules that also fired, in priority order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secondary: Vec<RuleHit>,
}

impl Classification {
    fn from_hits(mut hits: Vec<RuleHit>) -> Self {
        let first = hits.remove(0);
        Self {
            class: first.class,
            rule: first.rule,
            summary: first.summary,
            evidence: first.evidence,
            secondary: hits,
        }
    }
}

/// Classifier thresholds (defaults documented in `docs/slo.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Thresholds {
    /// GPU utilisation at or above this is saturated (compute band).
    pub gpu_high_ratio: f64,
    /// GPU utilisation at or below this is idle (I/O band).
    pub gpu_low_ratio: f64,
    /// Internal-error share (`status="error"`) at or above this is a software fault.
    pub internal_error_ratio: f64,
    /// Rejection share (HTTP 429) at or above this means admission is full.
    pub rejection_ratio: f64,
    /// Queued requests per reporting pod at or above this is a backlog.
    pub queue_per_pod: f64,
    /// Queue wait as a share of queue wait + service time at or above this is a backlog.
    pub queue_wait_share: f64,
    /// Snapshots back to compare for the load trend rule (Q3).
    pub trend_snapshots: usize,
    /// Trend rule: request rate grew at least this factor...
    pub trend_load_factor: f64,
    /// ...and TTFT grew at least this factor...
    pub trend_latency_factor: f64,
    /// ...while service time grew less than this factor.
    pub trend_service_flat_factor: f64,
    /// Request rate at or below this (req/s) with an empty queue is idle.
    pub idle_request_rate: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            gpu_high_ratio: 0.90,
            gpu_low_ratio: 0.40,
            internal_error_ratio: 0.02,
            rejection_ratio: 0.02,
            queue_per_pod: 2.0,
            queue_wait_share: 0.3,
            trend_snapshots: 4,
            trend_load_factor: 1.2,
            trend_latency_factor: 1.2,
            trend_service_flat_factor: 1.1,
            idle_request_rate: 0.0,
        }
    }
}

/// Signals every non-idle classification needs; missing any of them yields `Unknown`.
fn required(sli: &Sli, targets: &SloTargets, idle: bool) -> Vec<(&'static str, String)> {
    let mut missing = Vec::new();
    let mut need = |name: &'static str, v: &SliValue| {
        if let Some(r) = v.unknown_reason() {
            missing.push((name, r.to_owned()));
        }
    };
    need("requestRatePerSecond", &sli.request_rate_per_second);
    need("queueDepth", &sli.queue_depth);
    if !idle {
        if targets.ttft_p95_seconds.is_some() {
            need("ttftP95Seconds", &sli.ttft_p95_seconds);
        }
        if targets.tpot_seconds.is_some() {
            need("tpotSeconds", &sli.tpot_seconds);
        }
        need("errorRatio", &sli.error_ratio);
    }
    if sli.memory_pressure().is_none() {
        missing.push(("memoryRatio", "no vram or kv_cache usage ratio".to_owned()));
    }
    missing
}

/// Classifies `current`; `history` holds earlier snapshots, oldest first (used by trend rules).
pub fn classify(
    current: &Sli,
    history: &[Sli],
    targets: &SloTargets,
    th: &Thresholds,
) -> Classification {
    let rate = current.request_rate_per_second.value();
    let queue = current.queue_depth.value();
    let idle = matches!((rate, queue), (Some(r), Some(q)) if r <= th.idle_request_rate && q <= 0.0);

    let missing = required(current, targets, idle);
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|(n, r)| format!("{n} ({r})")).collect();
        return Classification {
            class: BottleneckClass::Unknown,
            rule: "U1".into(),
            summary: format!("required SLIs unknown: {}", names.join("; ")),
            evidence: Vec::new(),
            secondary: Vec::new(),
        };
    }

    let mut hits = Vec::new();
    let (mem_type, mem_ratio) = current
        .memory_pressure()
        .unwrap_or((sluice_contract::metrics::MemoryType::Vram.as_str(), 0.0));
    let mem_signal = format!("memoryRatio.{mem_type}");

    // M1: memory near capacity. First because replicas cannot shrink a pod's footprint.
    if mem_ratio > targets.memory_ratio {
        hits.push(RuleHit {
            rule: "M1".into(),
            class: BottleneckClass::MemoryBound,
            summary: format!(
                "{mem_type} use is {:.0}% of capacity on the fullest pod",
                mem_ratio * 100.0
            ),
            evidence: vec![Evidence::cmp(
                &mem_signal,
                mem_ratio,
                ">",
                targets.memory_ratio,
            )],
        });
    }

    if idle {
        hits.push(RuleHit {
            rule: "H0".into(),
            class: BottleneckClass::Healthy,
            summary: "idle: no requests and an empty queue".into(),
            evidence: vec![
                Evidence::value("requestRatePerSecond", rate.unwrap_or(0.0)),
                Evidence::value("queueDepth", queue.unwrap_or(0.0)),
            ],
        });
        return Classification::from_hits(hits);
    }

    let s = Signals::new(current, targets, th);

    // S1: the server itself fails requests; more replicas would fail more requests.
    if let Some(ier) = current.internal_error_ratio.value()
        && ier >= th.internal_error_ratio
    {
        hits.push(RuleHit {
            rule: "S1".into(),
            class: BottleneckClass::SoftwareBound,
            summary: format!("{:.1}% of requests fail with internal errors", ier * 100.0),
            evidence: vec![Evidence::cmp(
                "internalErrorRatio",
                ier,
                ">=",
                th.internal_error_ratio,
            )],
        });
    }

    queue_rules(current, history, &s, th, &mut hits);
    latency_rules(current, &s, th, &mut hits);

    // S2: the error objective is violated and nothing above explains it (no backlog, no memory
    // pressure): timeouts or failures that are not overload.
    if let Some(e) = s.error_violation
        && hits.is_empty()
    {
        hits.push(RuleHit {
            rule: "S2".into(),
            class: BottleneckClass::SoftwareBound,
            summary: "error objective violated without a queue or memory pressure".into(),
            evidence: vec![e],
        });
    }

    if hits.is_empty() {
        let mut evidence = Vec::new();
        for (name, v, t) in [
            (
                "ttftP95Seconds",
                current.ttft_p95_seconds.value(),
                targets.ttft_p95_seconds,
            ),
            (
                "tpotSeconds",
                current.tpot_seconds.value(),
                targets.tpot_seconds,
            ),
            (
                "errorRatio",
                current.error_ratio.value(),
                targets.error_ratio,
            ),
        ] {
            if let (Some(v), Some(t)) = (v, t) {
                evidence.push(Evidence::cmp(name, v, "<=", t));
            }
        }
        evidence.push(Evidence::cmp(
            &mem_signal,
            mem_ratio,
            "<=",
            targets.memory_ratio,
        ));
        hits.push(RuleHit {
            rule: "H1".into(),
            class: BottleneckClass::Healthy,
            summary: "all objectives met".into(),
            evidence,
        });
    }
    Classification::from_hits(hits)
}

/// Derived values shared by the rules.
struct Signals {
    ttft_violation: Option<Evidence>,
    tpot_violation: Option<Evidence>,
    error_violation: Option<Evidence>,
    backlog: Vec<Evidence>,
}

impl Signals {
    fn new(sli: &Sli, targets: &SloTargets, th: &Thresholds) -> Self {
        let over = |name: &str, v: Option<f64>, t: Option<f64>| match (v, t) {
            (Some(v), Some(t)) if v > t => Some(Evidence::cmp(name, v, ">", t)),
            _ => None,
        };
        let pods = sli.reporting_pods.value().unwrap_or(1.0).max(1.0);
        let mut backlog = Vec::new();
        if let Some(q) = sli.queue_depth.value()
            && q / pods >= th.queue_per_pod
        {
            backlog.push(Evidence::cmp(
                "queueDepthPerPod",
                q / pods,
                ">=",
                th.queue_per_pod,
            ));
        }
        if let (Some(w), Some(st)) = (
            sli.queue_wait_seconds.value(),
            sli.service_time_seconds.value(),
        ) && w + st > 0.0
            && w / (w + st) >= th.queue_wait_share
        {
            backlog.push(Evidence::cmp(
                "queueWaitShare",
                w / (w + st),
                ">=",
                th.queue_wait_share,
            ));
        }
        Self {
            ttft_violation: over(
                "ttftP95Seconds",
                sli.ttft_p95_seconds.value(),
                targets.ttft_p95_seconds,
            ),
            tpot_violation: over(
                "tpotSeconds",
                sli.tpot_seconds.value(),
                targets.tpot_seconds,
            ),
            error_violation: over("errorRatio", sli.error_ratio.value(), targets.error_ratio),
            backlog,
        }
    }

    fn latency_violations(&self) -> Vec<Evidence> {
        self.ttft_violation
            .iter()
            .chain(self.tpot_violation.iter())
            .cloned()
            .collect()
    }
}

fn queue_rules(
    current: &Sli,
    history: &[Sli],
    s: &Signals,
    th: &Thresholds,
    hits: &mut Vec<RuleHit>,
) {
    // Q1: latency objective violated while requests pile up in front of the engine.
    let latency = s.latency_violations();
    if !latency.is_empty() && !s.backlog.is_empty() {
        hits.push(RuleHit {
            rule: "Q1".into(),
            class: BottleneckClass::QueueBound,
            summary: "latency objective violated while requests wait for admission".into(),
            evidence: latency.iter().chain(s.backlog.iter()).cloned().collect(),
        });
    }
    // Q2: admission is full and requests are turned away with 429.
    if let Some(r) = current.rejection_ratio.value()
        && r >= th.rejection_ratio
    {
        hits.push(RuleHit {
            rule: "Q2".into(),
            class: BottleneckClass::QueueBound,
            summary: format!(
                "{:.1}% of requests rejected because admission is full",
                r * 100.0
            ),
            evidence: vec![Evidence::cmp("rejectionRatio", r, ">=", th.rejection_ratio)],
        });
    }
    // Q3: TTFT rises with load while service time stays flat: the added latency is waiting.
    if let Some(ttft_ev) = &s.ttft_violation
        // The oldest usable snapshot among the last `trend_snapshots`.
        && let Some(base) = history[history.len().saturating_sub(th.trend_snapshots)..]
            .iter()
            .find(|h| {
                h.request_rate_per_second.is_known()
                    && h.ttft_p95_seconds.is_known()
                    && h.service_time_seconds.is_known()
            })
        && let (Some(r0), Some(t0), Some(st0)) = (
            base.request_rate_per_second.value(),
            base.ttft_p95_seconds.value(),
            base.service_time_seconds.value(),
        )
        && let (Some(r1), Some(t1), Some(st1)) = (
            current.request_rate_per_second.value(),
            current.ttft_p95_seconds.value(),
            current.service_time_seconds.value(),
        )
        && r0 > 0.0
        && t0 > 0.0
        && st0 > 0.0
        && r1 / r0 >= th.trend_load_factor
        && t1 / t0 >= th.trend_latency_factor
        && st1 / st0 < th.trend_service_flat_factor
    {
        hits.push(RuleHit {
            rule: "Q3".into(),
            class: BottleneckClass::QueueBound,
            summary: "TTFT rises with load while service time stays flat".into(),
            evidence: vec![
                ttft_ev.clone(),
                Evidence::cmp("requestRateGrowth", r1 / r0, ">=", th.trend_load_factor),
                Evidence::cmp("ttftGrowth", t1 / t0, ">=", th.trend_latency_factor),
                Evidence::cmp(
                    "serviceTimeGrowth",
                    st1 / st0,
                    "<",
                    th.trend_service_flat_factor,
                ),
            ],
        });
    }
}

fn latency_rules(current: &Sli, s: &Signals, th: &Thresholds, hits: &mut Vec<RuleHit>) {
    let latency = s.latency_violations();
    if latency.is_empty() || !s.backlog.is_empty() {
        return;
    }
    match current.gpu_utilization_ratio.value() {
        // C1: accelerator saturated and latency violated.
        Some(u) if u >= th.gpu_high_ratio => hits.push(RuleHit {
            rule: "C1".into(),
            class: BottleneckClass::ComputeBound,
            summary: format!("GPU {:.0}% busy with latency over target", u * 100.0),
            evidence: [Evidence::cmp(
                "gpuUtilizationRatio",
                u,
                ">=",
                th.gpu_high_ratio,
            )]
            .into_iter()
            .chain(latency)
            .collect(),
        }),
        // I1: accelerator mostly idle, no queue, yet latency violated: waiting on something else.
        Some(u) if u <= th.gpu_low_ratio => hits.push(RuleHit {
            rule: "I1".into(),
            class: BottleneckClass::IoBound,
            summary: format!(
                "GPU only {:.0}% busy with no queue while latency is over target",
                u * 100.0
            ),
            evidence: [Evidence::cmp(
                "gpuUtilizationRatio",
                u,
                "<=",
                th.gpu_low_ratio,
            )]
            .into_iter()
            .chain(latency)
            .collect(),
        }),
        // C2: no GPU signal (CPU server) or mid band: latency high with no queue means the
        // engine is slow at the work itself.
        gpu => {
            let mut evidence = latency;
            if let Some(u) = gpu {
                evidence.push(Evidence::value("gpuUtilizationRatio", u));
            }
            if let Some(q) = current.queue_depth.value() {
                evidence.push(Evidence::value("queueDepth", q));
            }
            let what = if s.tpot_violation.is_some() {
                "decoding is slow (TPOT over target) with no queue"
            } else {
                "prefill is slow (TTFT over target) with no queue"
            };
            hits.push(RuleHit {
                rule: "C2".into(),
                class: BottleneckClass::ComputeBound,
                summary: what.into(),
                evidence,
            });
        }
    }
}

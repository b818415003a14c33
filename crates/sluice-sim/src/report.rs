//! What a run yields: per report window (5 minutes) TTFT P95, TPOT and error ratio from the
//! ground truth (every request, exact quantiles) and whether the SLO held; replica-hours;
//! direction reversals; actions by class; tokens the `max_tokens` clamp cut; and a markdown
//! table comparing runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use sluice_contract::{Action, Quantization};

use crate::fleet::SimFleet;
use crate::policy::Taken;
use crate::record::End;
use crate::run::RunConfig;

/// The SLO a window is judged against (an objective left out is not judged).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Objectives {
    /// TTFT P95 at most (seconds).
    pub ttft_p95_seconds: Option<f64>,
    /// Mean time per output token at most (seconds).
    pub tpot_seconds: Option<f64>,
    /// Share of requests rejected or failed at most.
    pub error_ratio: Option<f64>,
}

/// One report window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// Start (seconds from the start of the run).
    pub start: f64,
    /// Requests that ended in it.
    pub requests: usize,
    /// Exact TTFT P95.
    pub ttft_p95_seconds: Option<f64>,
    /// Mean time per output token.
    pub tpot_seconds: Option<f64>,
    /// Rejected or failed share.
    pub error_ratio: Option<f64>,
    /// Every judged objective met (a window without requests holds).
    pub held: bool,
}

/// One tick of the timeline (for plots).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// Seconds from the start.
    pub at: f64,
    /// Replicas asked for.
    pub replicas: u32,
    /// Replicas Ready.
    pub ready: u32,
    /// Pods that exist (draining included).
    pub pods: u32,
    /// TTFT P95 as the loop read it.
    pub ttft_p95_seconds: Option<f64>,
    /// Quantization in force.
    pub quantization: Quantization,
    /// `max_tokens` in force.
    pub max_tokens: u32,
}

/// Everything one policy's run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunResult {
    /// Policy name.
    pub policy: String,
    /// Report windows.
    pub windows: Vec<Window>,
    /// Share of windows in which the SLO held.
    pub attainment: f64,
    /// Pod-hours, draining and starting pods included.
    pub replica_hours: f64,
    /// Times the replica count changed direction (up then down, or down then up).
    pub reversals: u32,
    /// Changes made, by bottleneck class (`Unknown` for class-blind policies).
    pub actions_by_class: BTreeMap<String, u32>,
    /// Changes made, by knob.
    pub actions_by_knob: BTreeMap<String, u32>,
    /// Requests sent.
    pub requests: usize,
    /// Requests answered.
    pub answered: usize,
    /// Requests rejected with 429.
    pub rejected: usize,
    /// Requests failed.
    pub errors: usize,
    /// Tokens the `max_tokens` clamp cut from answered requests.
    pub truncated_tokens: u64,
    /// Exact TTFT P95 over the whole run.
    pub ttft_p95_seconds: Option<f64>,
    /// Mean time per output token over the whole run.
    pub tpot_seconds: Option<f64>,
    /// Most replicas asked for at once.
    pub peak_replicas: u32,
    /// Every change, in order.
    pub actions: Vec<Taken>,
    /// One sample per tick.
    pub timeline: Vec<Sample>,
}

fn judge(o: &Objectives, w: &Window) -> bool {
    if w.requests == 0 {
        return true;
    }
    let ok = |v: Option<f64>, t: Option<f64>| match (v, t) {
        (Some(v), Some(t)) => v <= t,
        _ => true,
    };
    ok(w.ttft_p95_seconds, o.ttft_p95_seconds)
        && ok(w.tpot_seconds, o.tpot_seconds)
        && ok(w.error_ratio, o.error_ratio)
}

/// Direction changes of a sequence of replica counts.
pub fn reversals(counts: impl IntoIterator<Item = u32>) -> u32 {
    let mut last: Option<u32> = None;
    let mut dir = 0i8;
    let mut n = 0;
    for c in counts {
        if let Some(l) = last
            && c != l
        {
            let d = if c > l { 1 } else { -1 };
            if dir != 0 && d != dir {
                n += 1;
            }
            dir = d;
        }
        last = Some(c);
    }
    n
}

impl RunResult {
    pub(crate) fn new(
        policy: String,
        fleet: &SimFleet,
        cfg: &RunConfig,
        timeline: Vec<Sample>,
        actions: Vec<Taken>,
    ) -> Self {
        let r = &fleet.records;
        let mut windows = Vec::new();
        let mut start = 0.0;
        while start < cfg.duration {
            let end = (start + cfg.report_window).min(cfg.duration);
            let read = r.read(start, end);
            let mut w = Window {
                start,
                requests: read.finished,
                ttft_p95_seconds: read.ttft_p95_exact,
                tpot_seconds: read.tpot,
                error_ratio: (read.finished > 0)
                    .then(|| (read.rejected + read.errors) as f64 / read.finished as f64),
                held: true,
            };
            w.held = judge(&cfg.objectives, &w);
            windows.push(w);
            start = end;
        }
        let all = r.read(f64::NEG_INFINITY, f64::INFINITY);
        let mut by_class = BTreeMap::new();
        let mut by_knob = BTreeMap::new();
        for t in &actions {
            *by_class.entry(t.class.as_str().to_string()).or_insert(0) += 1;
            if let Some(k) = t.action.knob() {
                *by_knob.entry(<&str>::from(k).to_string()).or_insert(0) += 1;
            }
        }
        let held = windows.iter().filter(|w| w.held).count();
        Self {
            policy,
            attainment: held as f64 / windows.len().max(1) as f64,
            windows,
            replica_hours: fleet.pod_seconds(cfg.duration) / 3600.0,
            reversals: reversals(std::iter::once(cfg.initial.replicas).chain(
                actions.iter().filter_map(|t| match t.action {
                    Action::ScaleReplicas { to, .. } => Some(to),
                    _ => None,
                }),
            )),
            actions_by_class: by_class,
            actions_by_knob: by_knob,
            requests: all.finished + fleet.invalid_requests as usize,
            answered: r.done.iter().filter(|d| d.end == End::Ok).count(),
            rejected: all.rejected,
            errors: all.errors,
            truncated_tokens: fleet.truncated_tokens,
            ttft_p95_seconds: all.ttft_p95_exact,
            tpot_seconds: all.tpot,
            peak_replicas: timeline
                .iter()
                .map(|s| s.replicas)
                .max()
                .unwrap_or(cfg.initial.replicas),
            actions,
            timeline,
        }
    }
}

fn secs(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.3}"))
}

/// A markdown table comparing runs (one row per policy).
pub fn markdown(results: &[RunResult], objectives: &Objectives) -> String {
    let mut s = String::new();
    let target = |v: Option<f64>| v.map_or("none".into(), |v| format!("{v} s"));
    let _ = writeln!(
        s,
        "SLO per 5-minute window: TTFT P95 ≤ {}, TPOT ≤ {}, errors ≤ {}\n",
        target(objectives.ttft_p95_seconds),
        target(objectives.tpot_seconds),
        objectives
            .error_ratio
            .map_or("none".into(), |v| format!("{:.1} %", v * 100.0)),
    );
    s.push_str(
        "| policy | SLO windows met | replica-hours | peak replicas | reversals | actions (by class) | TTFT P95 (s) | TPOT (s) | 429s | errors | truncated tokens |\n",
    );
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in results {
        let held = r.windows.iter().filter(|w| w.held).count();
        let actions = if r.actions_by_class.is_empty() {
            "0".to_string()
        } else {
            r.actions_by_class
                .iter()
                .map(|(c, n)| format!("{c} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "| {} | {held}/{} ({:.1} %) | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.policy,
            r.windows.len(),
            r.attainment * 100.0,
            r.replica_hours,
            r.peak_replicas,
            r.reversals,
            actions,
            secs(r.ttft_p95_seconds),
            secs(r.tpot_seconds),
            r.rejected,
            r.errors,
            r.truncated_tokens,
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reversals_count_direction_changes_only() {
        assert_eq!(reversals([1, 2, 3, 3, 4]), 0);
        assert_eq!(reversals([1, 3, 2, 4, 1]), 3);
        assert_eq!(reversals([2]), 0);
        assert_eq!(reversals([4, 2, 2, 1, 5]), 1);
    }

    #[test]
    fn empty_windows_hold_and_each_objective_is_judged() {
        let o = Objectives {
            ttft_p95_seconds: Some(1.0),
            tpot_seconds: Some(0.1),
            error_ratio: Some(0.01),
        };
        let w = |ttft, tpot, err, requests| Window {
            start: 0.0,
            requests,
            ttft_p95_seconds: Some(ttft),
            tpot_seconds: Some(tpot),
            error_ratio: Some(err),
            held: false,
        };
        assert!(judge(&o, &w(9.0, 9.0, 1.0, 0)));
        assert!(judge(&o, &w(1.0, 0.1, 0.01, 10)));
        assert!(!judge(&o, &w(1.01, 0.1, 0.0, 10)));
        assert!(!judge(&o, &w(0.5, 0.2, 0.0, 10)));
        assert!(!judge(&o, &w(0.5, 0.05, 0.02, 10)));
    }
}

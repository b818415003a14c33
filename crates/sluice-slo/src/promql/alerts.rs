//! Alerting rules for a service's objectives: multi-window, multi-burn-rate alerts (the Google
//! SRE workbook's, as pyrra and sloth generate them) for the event objectives, threshold alerts
//! over two windows for the others, and the operator's own alerts. Pure: the operator ships them
//! as a `PrometheusRule` per service, `sluice rules` prints them, and promtool tests them.
//!
//! - **Error ratio ≤ e**: the budget is `e`; each burn rate `b` fires when the error ratio is
//!   above `b·e` over both its long and its short window (the short one makes it reset soon
//!   after the burn stops).
//! - **TTFT P95 ≤ X**: an event objective too: at most 5 % of requests may take longer than
//!   `X`, so the bad ratio is the share of requests above the largest TTFT bucket bound ≤ `X`
//!   (never a bound above it, which would count slow requests as good; a target between bounds
//!   therefore alerts a little early, never late).
//! - **Mean TPOT ≤ Y** and **memory ratio ≤ m** are not ratios of events, so they get threshold
//!   alerts that must hold over a long and a short window (TPOT) or for 15 minutes (memory).

use std::collections::BTreeMap;

use serde::Serialize;
use sluice_contract::metrics::{self as names, MemoryType, RequestStatus};

use super::{Selector, Window, escape_string, regex_escape, status_ratio, sum_rate, tpot_mean};
use crate::spec::SloTargets;

/// A Prometheus rule group (the shape of a rules file's `groups[]` and of a PrometheusRule's
/// `spec.groups[]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleGroup {
    pub name: String,
    pub rules: Vec<AlertRule>,
}

/// One alerting rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRule {
    pub alert: String,
    pub expr: String,
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// Who is woken: `critical` pages, `warning` opens a ticket (kube-prometheus's convention, which
/// Alertmanager configurations already route on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Critical,
    Warning,
}

impl Severity {
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
        }
    }
}

/// One burn-rate alert: fires when the budget burns `factor` times too fast over both windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnRate {
    pub long_seconds: u64,
    pub short_seconds: u64,
    pub factor: f64,
    pub severity: Severity,
}

const HOUR: u64 = 3600;
const MINUTE: u64 = 60;

/// The SRE workbook's four: 2 % of a 30-day budget in 1 h, 5 % in 6 h (pages), 10 % in a day
/// and 10 % in three days (tickets).
pub const BURN_RATES: [BurnRate; 4] = [
    BurnRate {
        long_seconds: HOUR,
        short_seconds: 5 * MINUTE,
        factor: 14.4,
        severity: Severity::Critical,
    },
    BurnRate {
        long_seconds: 6 * HOUR,
        short_seconds: 30 * MINUTE,
        factor: 6.0,
        severity: Severity::Critical,
    },
    BurnRate {
        long_seconds: 24 * HOUR,
        short_seconds: 2 * HOUR,
        factor: 3.0,
        severity: Severity::Warning,
    },
    BurnRate {
        long_seconds: 72 * HOUR,
        short_seconds: 6 * HOUR,
        factor: 1.0,
        severity: Severity::Warning,
    },
];

/// The TTFT objective is a P95: 5 % of requests may be slower.
const TTFT_BUDGET: f64 = 0.05;

/// Which service the rules are for, and how its series are selected.
#[derive(Debug, Clone)]
pub struct RuleTarget<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    /// Selects the service's pods (not aggregated per service).
    pub selector: &'a Selector,
}

impl RuleTarget<'_> {
    fn labels(&self, objective: &str, severity: Severity) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("namespace".into(), self.namespace.into()),
            ("inferenceservice".into(), self.name.into()),
            ("objective".into(), objective.into()),
            ("severity".into(), severity.as_str().into()),
        ])
    }
}

/// Compact duration as Prometheus writes it: 300 → `5m`, 3600 → `1h`, 86400 → `1d`.
pub fn duration(seconds: u64) -> String {
    match seconds {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % HOUR == 0 => format!("{}h", s / HOUR),
        s if s % MINUTE == 0 => format!("{}m", s / MINUTE),
        s => format!("{s}s"),
    }
}

/// A number as PromQL and humans read it (`0.01`, `14.4`, `1`).
fn num(v: f64) -> String {
    format!("{v}")
}

/// The `le` matcher for bucket bound `bound`: Prometheus 3 stores classic-histogram bounds as
/// floats (`1.0`) where earlier versions keep the exporter's text (`1`), so integral bounds
/// match both spellings.
fn le_matcher(bound: f64) -> String {
    let text = num(bound);
    if bound.fract() == 0.0 {
        format!(
            "le=~\"{}|{}\"",
            escape_string(&regex_escape(&text)),
            escape_string(&regex_escape(&format!("{text}.0")))
        )
    } else {
        format!("le=\"{text}\"")
    }
}

/// The largest TTFT bucket bound at or below `target`, else the smallest bound.
pub fn ttft_bound(target: f64) -> f64 {
    names::TTFT_BUCKETS_SECONDS
        .iter()
        .copied()
        .rfind(|b| *b <= target)
        .unwrap_or(names::TTFT_BUCKETS_SECONDS[0])
}

/// Share of requests slower than `bound` seconds to the first token.
pub fn ttft_slow_ratio(bound: f64, sel: &Selector, w: Window) -> String {
    format!(
        "1 - ({} / {})",
        sum_rate(
            sel,
            &format!("{}_bucket", names::TTFT_SECONDS),
            &le_matcher(bound),
            w
        ),
        sum_rate(sel, &format!("{}_count", names::TTFT_SECONDS), "", w)
    )
}

fn burn_alerts(
    t: &RuleTarget<'_>,
    alert: &str,
    objective: &str,
    budget: f64,
    ratio: impl Fn(Window) -> String,
    what: &str,
) -> Vec<AlertRule> {
    BURN_RATES
        .iter()
        .map(|b| {
            let (long, short) = (duration(b.long_seconds), duration(b.short_seconds));
            let threshold = format!("{} * {}", num(b.factor), num(budget));
            let mut labels = t.labels(objective, b.severity);
            labels.insert("long_window".into(), long.clone());
            labels.insert("short_window".into(), short.clone());
            AlertRule {
                alert: alert.into(),
                expr: format!(
                    "({}) > {threshold} and ({}) > {threshold}",
                    ratio(Window::seconds(b.long_seconds)),
                    ratio(Window::seconds(b.short_seconds)),
                ),
                for_: None,
                labels,
                annotations: BTreeMap::from([
                    (
                        "summary".into(),
                        format!(
                            "{}/{} is burning its {objective} budget {}x too fast",
                            t.namespace,
                            t.name,
                            num(b.factor)
                        ),
                    ),
                    (
                        "description".into(),
                        format!(
                            "{what} has been above {}x the budget of {} over the last {long} and {short}; \
                             see `kubectl describe inferenceservice -n {} {}` for the bottleneck and what the operator did.",
                            num(b.factor),
                            num(budget),
                            t.namespace,
                            t.name
                        ),
                    ),
                ]),
            }
        })
        .collect()
}

/// Every alert for one service's objectives, in one group named after it.
pub fn service_rules(t: &RuleTarget<'_>, targets: &SloTargets) -> RuleGroup {
    let sel = t.selector;
    let mut rules = Vec::new();
    if let Some(e) = targets.error_ratio {
        rules.extend(burn_alerts(
            t,
            "SluiceErrorBudgetBurn",
            "error_ratio",
            e,
            |w| status_ratio(&RequestStatus::ERRORS, sel, w),
            "The share of requests ending in error, timeout or rejection",
        ));
    }
    if let Some(x) = targets.ttft_p95_seconds {
        let bound = ttft_bound(x);
        rules.extend(burn_alerts(
            t,
            "SluiceTtftBudgetBurn",
            "ttft_p95",
            TTFT_BUDGET,
            |w| ttft_slow_ratio(bound, sel, w),
            &format!(
                "The share of requests slower than {}s to the first token",
                num(bound)
            ),
        ));
    }
    if let Some(y) = targets.tpot_seconds {
        let (long, short) = (Window::seconds(HOUR), Window::seconds(5 * MINUTE));
        rules.push(AlertRule {
            alert: "SluiceTpotAboveObjective".into(),
            expr: format!(
                "({}) > {y} and ({}) > {y}",
                tpot_mean(sel, long),
                tpot_mean(sel, short),
                y = num(y)
            ),
            for_: None,
            labels: t.labels("tpot", Severity::Warning),
            annotations: BTreeMap::from([
                (
                    "summary".into(),
                    format!(
                        "{}/{} mean time per output token is above {}s",
                        t.namespace,
                        t.name,
                        num(y)
                    ),
                ),
                (
                    "description".into(),
                    "Mean TPOT has been above the objective over the last 1h and 5m.".into(),
                ),
            ]),
        });
    }
    let pressure: Vec<String> = MemoryType::PRESSURE
        .iter()
        .map(|m| m.as_str().to_string())
        .collect();
    let per_pod = format!(
        "max_over_time({}[5m]) / {}",
        sel.series(names::MEMORY_USAGE_MEGABYTES, &memory_types(&pressure)),
        sel.series(names::MEMORY_CAPACITY_MEGABYTES, &memory_types(&pressure))
    );
    rules.push(AlertRule {
        alert: "SluiceMemoryAboveObjective".into(),
        expr: format!(
            "max by ({label}) ({per_pod}) > {m}",
            label = names::MEMORY_TYPE_LABEL,
            m = num(targets.memory_ratio)
        ),
        for_: Some("15m".into()),
        labels: t.labels("memory_ratio", Severity::Warning),
        annotations: BTreeMap::from([
            (
                "summary".into(),
                format!(
                    "{}/{} {{{{ $labels.{} }}}} use is above {} of capacity",
                    t.namespace,
                    t.name,
                    names::MEMORY_TYPE_LABEL,
                    num(targets.memory_ratio)
                ),
            ),
            (
                "description".into(),
                "A pod's memory has stayed above the objective for 15 minutes although the operator \
                 lowers max_tokens and quantization first when memory is the bottleneck."
                    .into(),
            ),
        ]),
    });
    RuleGroup {
        name: format!("sluice-{}-{}", t.namespace, t.name),
        rules,
    }
}

fn memory_types(types: &[String]) -> String {
    let alternatives: Vec<String> = types.iter().map(|t| regex_escape(t)).collect();
    format!(
        "{}=~\"{}\"",
        names::MEMORY_TYPE_LABEL,
        escape_string(&alternatives.join("|"))
    )
}

/// The operator's gauge of each service's SLO state.
pub const SLO_STATE_METRIC: &str = "sluice_operator_slo_state";
/// The operator's gauge: 1 while knobs cannot fix a service's breach.
pub const SLO_DEGRADED_METRIC: &str = "sluice_operator_slo_degraded";

/// The operator's own alerts, for every service at once: SLIs unreadable, and remediation
/// exhausted.
pub fn operator_rules() -> RuleGroup {
    let by = "namespace, name";
    RuleGroup {
        name: "sluice-operator".into(),
        rules: vec![
            AlertRule {
                alert: "SluiceSlisUnavailable".into(),
                expr: format!("max by ({by}) ({SLO_STATE_METRIC}{{state=\"Unknown\"}}) == 1"),
                for_: Some("10m".into()),
                labels: BTreeMap::from([("severity".into(), "warning".into())]),
                annotations: BTreeMap::from([
                    (
                        "summary".into(),
                        "Sluice cannot read the SLIs of {{ $labels.namespace }}/{{ $labels.name }}".into(),
                    ),
                    (
                        "description".into(),
                        "The operator has had no usable metrics for this service for 10 minutes, so it \
                         is not remediating; check its Prometheus URL and the pods' /metrics \
                         (kubectl describe inferenceservice shows the reason)."
                            .into(),
                    ),
                ]),
            },
            AlertRule {
                alert: "SluiceRemediationExhausted".into(),
                expr: format!("max by ({by}) ({SLO_DEGRADED_METRIC}) == 1"),
                for_: Some("15m".into()),
                labels: BTreeMap::from([("severity".into(), "critical".into())]),
                annotations: BTreeMap::from([
                    (
                        "summary".into(),
                        "Sluice cannot fix the SLO breach of {{ $labels.namespace }}/{{ $labels.name }}".into(),
                    ),
                    (
                        "description".into(),
                        "The bottleneck is one no knob can relieve, or every knob is at its limit; the \
                         operator's recommendation is in the InferenceService's status (degraded)."
                            .into(),
                    ),
                ]),
            },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel() -> Selector {
        Selector::deployment_pods(Some("prod"), "chat").unwrap()
    }

    fn target(sel: &Selector) -> RuleTarget<'_> {
        RuleTarget {
            namespace: "prod",
            name: "chat",
            selector: sel,
        }
    }

    #[test]
    fn durations_and_bounds() {
        assert_eq!(duration(300), "5m");
        assert_eq!(duration(3600), "1h");
        assert_eq!(duration(6 * 3600), "6h");
        assert_eq!(duration(72 * 3600), "3d");
        assert_eq!(duration(90), "90s");
        assert_eq!(ttft_bound(0.5), 0.5);
        assert_eq!(ttft_bound(0.6), 0.5, "between bounds: the lower one");
        assert_eq!(ttft_bound(0.001), 0.005, "below every bound: the smallest");
        assert_eq!(le_matcher(0.5), "le=\"0.5\"");
        assert_eq!(le_matcher(1.0), "le=~\"1|1\\\\.0\"");
    }

    #[test]
    fn error_budget_burn_is_the_workbook_multiwindow_expression() {
        let sel = sel();
        let targets = SloTargets {
            error_ratio: Some(0.01),
            ..SloTargets::default()
        };
        let g = service_rules(&target(&sel), &targets);
        assert_eq!(g.name, "sluice-prod-chat");
        let burns: Vec<&AlertRule> = g
            .rules
            .iter()
            .filter(|r| r.alert == "SluiceErrorBudgetBurn")
            .collect();
        assert_eq!(burns.len(), 4);
        let pods = r#"namespace="prod",pod=~"chat-[a-z0-9]+-[a-z0-9]+""#;
        assert_eq!(
            burns[0].expr,
            format!(
                r#"(sum(rate(llm_requests_total{{{pods},status=~"error|timeout|rejected"}}[3600s])) / sum(rate(llm_requests_total{{{pods}}}[3600s]))) > 14.4 * 0.01 and (sum(rate(llm_requests_total{{{pods},status=~"error|timeout|rejected"}}[300s])) / sum(rate(llm_requests_total{{{pods}}}[300s]))) > 14.4 * 0.01"#
            )
        );
        assert_eq!(burns[0].labels["severity"], "critical");
        assert_eq!(burns[0].labels["long_window"], "1h");
        assert_eq!(burns[0].labels["short_window"], "5m");
        assert_eq!(burns[3].labels["severity"], "warning");
        assert!(burns[3].expr.contains("[259200s]") && burns[3].expr.contains("> 1 * 0.01"));
    }

    #[test]
    fn ttft_budget_counts_requests_above_the_bound() {
        let sel = sel();
        let targets = SloTargets {
            ttft_p95_seconds: Some(0.6),
            ..SloTargets::default()
        };
        let g = service_rules(&target(&sel), &targets);
        let ttft = g
            .rules
            .iter()
            .find(|r| r.alert == "SluiceTtftBudgetBurn")
            .unwrap();
        let pods = r#"namespace="prod",pod=~"chat-[a-z0-9]+-[a-z0-9]+""#;
        assert!(ttft.expr.starts_with(&format!(
            r#"(1 - (sum(rate(llm_ttft_seconds_bucket{{{pods},le="0.5"}}[3600s])) / sum(rate(llm_ttft_seconds_count{{{pods}}}[3600s])))) > 14.4 * 0.05 and "#
        )), "{}", ttft.expr);
    }

    #[test]
    fn only_declared_objectives_get_alerts_and_memory_always_does() {
        let sel = sel();
        let g = service_rules(&target(&sel), &SloTargets::default());
        let names: Vec<&str> = g.rules.iter().map(|r| r.alert.as_str()).collect();
        assert_eq!(names, ["SluiceMemoryAboveObjective"]);
        assert_eq!(
            g.rules[0].expr,
            r#"max by (memory_type) (max_over_time(llm_memory_usage_megabytes{namespace="prod",pod=~"chat-[a-z0-9]+-[a-z0-9]+",memory_type=~"vram|kv_cache"}[5m]) / llm_memory_capacity_megabytes{namespace="prod",pod=~"chat-[a-z0-9]+-[a-z0-9]+",memory_type=~"vram|kv_cache"}) > 0.85"#
        );
        let all = SloTargets {
            ttft_p95_seconds: Some(1.0),
            tpot_seconds: Some(0.05),
            error_ratio: Some(0.001),
            ..SloTargets::default()
        };
        assert_eq!(
            service_rules(&target(&sel), &all).rules.len(),
            4 + 4 + 1 + 1
        );
    }

    #[test]
    fn operator_alerts_read_the_operator_gauges() {
        let g = operator_rules();
        assert_eq!(
            g.rules[0].expr,
            r#"max by (namespace, name) (sluice_operator_slo_state{state="Unknown"}) == 1"#
        );
        assert_eq!(
            g.rules[1].expr,
            "max by (namespace, name) (sluice_operator_slo_degraded) == 1"
        );
    }
}

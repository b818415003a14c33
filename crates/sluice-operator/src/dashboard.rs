//! The Grafana dashboard Sluice ships: one InferenceService per view, its SLIs against its
//! objectives, what the operator concluded (SLO state, bottleneck class) and what it did (knob
//! moves as annotations). The chart carries it as a ConfigMap for kube-prometheus-stack's
//! Grafana sidecar (`charts/sluice/files/grafana-dashboard.json`), `docs/grafana-dashboard.json`
//! is the copy to import by hand, and `sluice-operator dashboard` prints it; a drift test keeps
//! both files equal to [`json`].
//!
//! Every server query comes from the SLO engine's PromQL builders with the pod selector the
//! operator uses (`pod=~"<name>-<hash>-<suffix>"`) over the operator's default SLI window, so
//! a panel shows the number the loop decided on, not a look-alike.

use serde_json::{Value, json};
use sluice_contract::metrics as names;
use sluice_slo::promql::alerts::SLO_STATE_METRIC;
use sluice_slo::promql::{self, MatchOp, Matcher, Selector, Window};

use crate::metrics::{Objective, SLO_ACTIONS_METRIC, SLO_BOTTLENECK_METRIC};

/// The dashboard's uid: stable, so a re-import replaces the old copy and links keep working.
pub const UID: &str = "sluice-inferenceservice";

/// The dashboard's template variables, as its queries use them.
pub const VARIABLES: [&str; 3] = ["datasource", "namespace", "service"];

/// The operator's default `spec.slo.window`: rates over it are what the loop reads.
const WINDOW_SECONDS: u64 = 300;

/// Grid width of a Grafana dashboard.
const GRID_WIDTH: u32 = 24;

fn window() -> Window {
    Window::seconds(WINDOW_SECONDS)
}

fn datasource() -> Value {
    json!({"type": "prometheus", "uid": "${datasource}"})
}

/// The selected service's pods, as the operator selects them.
fn pods() -> Selector {
    Selector {
        matchers: vec![
            Matcher {
                label: "namespace".into(),
                op: MatchOp::Eq,
                value: "$namespace".into(),
            },
            Matcher {
                label: "pod".into(),
                op: MatchOp::Re,
                value: "${service}-[a-z0-9]+-[a-z0-9]+".into(),
            },
        ],
        by_service: false,
    }
}

/// `metric{namespace="$namespace",name="$service"}`: the operator's series about the service.
fn operator_series(metric: &str) -> String {
    format!("{metric}{{namespace=\"$namespace\",name=\"$service\"}}")
}

fn objective(o: Objective) -> Target {
    Target::new(format!("max({})", operator_series(o.metric())), "objective")
}

/// One query of a panel.
struct Target {
    expr: String,
    legend: &'static str,
}

impl Target {
    fn new(expr: impl Into<String>, legend: &'static str) -> Self {
        Self {
            expr: expr.into(),
            legend,
        }
    }
}

/// How a panel draws its series.
#[derive(Clone, Copy)]
enum Kind {
    TimeSeries,
    /// One lane per series; a series exists only while its one-hot gauge is 1.
    StateTimeline,
}

/// One panel before layout.
struct Panel {
    title: &'static str,
    description: &'static str,
    kind: Kind,
    unit: &'static str,
    width: u32,
    targets: Vec<Target>,
}

impl Panel {
    fn new(title: &'static str, description: &'static str, unit: &'static str) -> Self {
        Self {
            title,
            description,
            kind: Kind::TimeSeries,
            unit,
            width: 12,
            targets: Vec::new(),
        }
    }

    fn timeline(mut self) -> Self {
        self.kind = Kind::StateTimeline;
        self
    }

    fn width(mut self, w: u32) -> Self {
        self.width = w;
        self
    }

    fn target(mut self, t: Target) -> Self {
        self.targets.push(t);
        self
    }

    fn to_json(&self, id: u32, x: u32, y: u32, height: u32) -> Value {
        let targets: Vec<Value> = self
            .targets
            .iter()
            .zip('A'..)
            .map(|(t, ref_id)| {
                json!({
                    "datasource": datasource(),
                    "expr": t.expr,
                    "legendFormat": t.legend,
                    "range": true,
                    "refId": ref_id.to_string(),
                })
            })
            .collect();
        let (kind, custom, overrides) = match self.kind {
            Kind::TimeSeries => (
                "timeseries",
                json!({"lineWidth": 1, "fillOpacity": 10, "showPoints": "never"}),
                // The objective is the line the SLI must stay under: red and dashed.
                json!([{
                    "matcher": {"id": "byName", "options": "objective"},
                    "properties": [
                        {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}},
                        {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                        {"id": "custom.fillOpacity", "value": 0},
                    ],
                }]),
            ),
            Kind::StateTimeline => (
                "state-timeline",
                json!({"fillOpacity": 80, "lineWidth": 0}),
                json!(
                    [("Met", "green"), ("Violated", "red"), ("NoTraffic", "blue"), ("Unknown", "gray")]
                        .iter()
                        .map(|(state, color)| json!({
                            "matcher": {"id": "byName", "options": state},
                            "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}],
                        }))
                        .collect::<Vec<_>>()
                ),
            ),
        };
        json!({
            "id": id,
            "type": kind,
            "title": self.title,
            "description": self.description,
            "datasource": datasource(),
            "gridPos": {"x": x, "y": y, "w": self.width, "h": height},
            "fieldConfig": {
                "defaults": {
                    "unit": self.unit,
                    "color": {"mode": "palette-classic"},
                    "custom": custom,
                    "mappings": [],
                },
                "overrides": overrides,
            },
            "options": {
                "legend": {"displayMode": "list", "placement": "bottom", "showLegend": true},
                "tooltip": {"mode": "multi", "sort": "none"},
            },
            "targets": targets,
        })
    }
}

fn panels() -> Vec<Panel> {
    let s = pods();
    let w = window();
    let operator = |metric: &str| Target::new(format!("{} == 1", operator_series(metric)), "");
    vec![
        Panel::new(
            "SLO state",
            "The operator's verdict on the objectives: Met, Violated, NoTraffic, or Unknown when it cannot read the SLIs.",
            "none",
        )
        .timeline()
        .width(8)
        .target(Target {
            legend: "{{state}}",
            ..operator(SLO_STATE_METRIC)
        }),
        Panel::new(
            "Bottleneck",
            "The class the operator names: compute-, memory-, I/O-, queue- or software-bound, or none.",
            "none",
        )
        .timeline()
        .width(8)
        .target(Target {
            legend: "{{class}}",
            ..operator(SLO_BOTTLENECK_METRIC)
        }),
        Panel::new(
            "Replicas reporting",
            "Pods exporting metrics.",
            "none",
        )
        .width(8)
        .target(Target::new(promql::reporting_pods(&s), "pods")),
        Panel::new(
            "TTFT",
            "Time to first token from request arrival (tokenization included), against the P95 objective.",
            "s",
        )
        .target(Target::new(promql::ttft_quantile(0.5, &s, w), "P50"))
        .target(Target::new(promql::ttft_quantile(0.95, &s, w), "P95"))
        .target(Target::new(promql::ttft_quantile(0.99, &s, w), "P99"))
        .target(objective(Objective::TtftP95)),
        Panel::new(
            "TPOT",
            "Mean time per output token, against its objective.",
            "s",
        )
        .target(Target::new(promql::tpot_mean(&s, w), "mean"))
        .target(objective(Objective::Tpot)),
        Panel::new("Requests", "Finished requests per second by status.", "reqps")
            .width(8)
            .target(Target::new(promql::requests_by_status(&s, w), "{{status}}")),
        Panel::new(
            "Errors by reason",
            "Failed requests per second by reason (429s are overloaded).",
            "reqps",
        )
        .width(8)
        .target(Target::new(promql::errors_by_reason(&s, w), "{{reason}}")),
        Panel::new(
            "Error ratio",
            "Share of requests ending error, timeout or rejected, against its objective.",
            "percentunit",
        )
        .width(8)
        .target(Target::new(promql::error_ratio(&s, w), "errors"))
        .target(objective(Objective::ErrorRatio)),
        Panel::new(
            "Queue and batch",
            "Admitted requests waiting for the batch, sequences in it, and requests not yet answered.",
            "none",
        )
        .target(Target::new(promql::queue_depth(&s), "queued"))
        .target(Target::new(promql::running_sequences(&s), "running"))
        .target(Target::new(promql::in_flight(&s), "in flight")),
        Panel::new(
            "Where time goes",
            "Mean queue wait, prefill and decode phase per request: which one grows names the bottleneck.",
            "s",
        )
        .target(Target::new(promql::queue_wait_mean(&s, w), "queue wait"))
        .target(Target::new(
            promql::histogram_mean(names::PREFILL_SECONDS, &s, w),
            "prefill",
        ))
        .target(Target::new(
            promql::histogram_mean(names::DECODE_SECONDS, &s, w),
            "decode",
        )),
        Panel::new(
            "Memory by type",
            "Memory in use and capacity per type (vram, ram, kv_cache), summed over pods.",
            "decmbytes",
        )
        .target(Target::new(promql::memory_usage(&s), "{{memory_type}} used"))
        .target(Target::new(
            promql::memory_capacity(&s),
            "{{memory_type}} capacity",
        )),
        Panel::new(
            "Memory pressure",
            "Worst pod's peak use over capacity per type, against the memory objective.",
            "percentunit",
        )
        .target(Target::new(promql::memory_ratio(&s, w), "{{memory_type}}"))
        .target(objective(Objective::MemoryRatio)),
        Panel::new(
            "Throughput",
            "Generated tokens per second, summed over pods.",
            "short",
        )
        .target(Target::new(promql::tokens_per_second(&s, w), "tokens/s")),
        Panel::new(
            "Limits in force",
            "The max_tokens cap, admission limit and batch limit the pods run with (the operator moves max_tokens).",
            "none",
        )
        .target(Target::new(
            format!("max({})", series(names::MAX_TOKENS_CAP)),
            "max_tokens",
        ))
        .target(Target::new(
            format!("max({})", series(names::MAX_CONCURRENT_REQUESTS)),
            "max concurrent requests",
        ))
        .target(Target::new(
            format!("max({})", series(names::MAX_BATCH_SIZE)),
            "max batch size",
        )),
    ]
}

/// `metric{<the pods>}`.
fn series(metric: &str) -> String {
    format!("{metric}{{{}}}", pods().render())
}

/// Lays panels out left to right, wrapping at the grid width.
fn layout(panels: &[Panel]) -> Vec<Value> {
    const HEIGHT: u32 = 8;
    let (mut x, mut y) = (0, 0);
    panels
        .iter()
        .zip(1..)
        .map(|(p, id)| {
            if x + p.width > GRID_WIDTH {
                x = 0;
                y += HEIGHT;
            }
            let v = p.to_json(id, x, y, HEIGHT);
            x += p.width;
            v
        })
        .collect()
}

fn templating() -> Value {
    let namespaces = format!("label_values({}, namespace)", names::MODEL_INFO);
    // The service is the Deployment behind the pods, cut from the pod name the way the operator
    // selects pods; it needs no label the scrape may lack.
    let services = format!(
        "query_result(count by ({label}) (label_replace({}{{namespace=\"$namespace\"}}, \"{label}\", \"$1\", \"pod\", \"{}\")))",
        names::MODEL_INFO,
        promql::DEPLOYMENT_OF_POD,
        label = promql::SERVICE_LABEL,
    );
    let query_var = |name: &str, label: &str, query: String, regex: String| {
        json!({
            "name": name,
            "label": label,
            "type": "query",
            "datasource": datasource(),
            "definition": query,
            "query": {"query": query, "refId": format!("{name}-variable")},
            "regex": regex,
            "refresh": 2,
            "sort": 1,
            "includeAll": false,
            "multi": false,
            "current": {},
            "hide": 0,
        })
    };
    json!({"list": [
        {
            "name": VARIABLES[0],
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
        },
        query_var(VARIABLES[1], "Namespace", namespaces, String::new()),
        query_var(
            VARIABLES[2],
            "InferenceService",
            services,
            format!("/{}=\"([^\"]+)\"/", promql::SERVICE_LABEL),
        ),
    ]})
}

fn annotations() -> Value {
    json!({"list": [
        {
            "builtIn": 1,
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": true,
            "hide": true,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard",
        },
        {
            "name": "Sluice decisions",
            "datasource": datasource(),
            "enable": true,
            "iconColor": "orange",
            "expr": decisions_expr(),
            "step": "1m",
            "titleFormat": "{{action}}",
            "textFormat": "The SLO loop moved a knob: {{action}} (see kubectl describe or kubectl sluice explain)",
            "tagKeys": "action",
            "useValueForTime": false,
        },
    ]})
}

/// Knob moves in the last minute, one series per action: each step with one is an annotation.
fn decisions_expr() -> String {
    format!(
        "sum by (action) (increase({}[1m])) > 0",
        operator_series(SLO_ACTIONS_METRIC)
    )
}

/// The dashboard as Grafana's JSON model.
pub fn dashboard() -> Value {
    json!({
        "uid": UID,
        "title": "Sluice / InferenceService",
        "description": "One InferenceService's SLIs against its objectives, the bottleneck the Sluice operator names and the knobs it moves.",
        "tags": ["sluice", "llm", "slo"],
        "editable": true,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-3h", "to": "now"},
        "timezone": "browser",
        "templating": templating(),
        "annotations": annotations(),
        "panels": layout(&panels()),
    })
}

/// The dashboard as the files carry it: pretty JSON, one trailing newline.
pub fn json() -> String {
    let mut s = serde_json::to_string_pretty(&dashboard()).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exprs(d: &Value) -> Vec<String> {
        d["panels"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["targets"].as_array().unwrap().clone())
            .map(|t| t["expr"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn panels_are_laid_out_without_overlap_and_have_unique_ids() {
        let d = dashboard();
        let panels = d["panels"].as_array().unwrap();
        let mut cells = std::collections::HashSet::new();
        let mut ids = std::collections::HashSet::new();
        for p in panels {
            assert!(ids.insert(p["id"].as_u64().unwrap()));
            let g = &p["gridPos"];
            let (x, y, w, h) = (
                g["x"].as_u64().unwrap(),
                g["y"].as_u64().unwrap(),
                g["w"].as_u64().unwrap(),
                g["h"].as_u64().unwrap(),
            );
            assert!(x + w <= u64::from(GRID_WIDTH), "{}", p["title"]);
            for cx in x..x + w {
                for cy in y..y + h {
                    assert!(cells.insert((cx, cy)), "{} overlaps", p["title"]);
                }
            }
        }
    }

    #[test]
    fn queries_use_the_operators_pod_selector_and_only_known_variables() {
        let d = dashboard();
        let all = exprs(&d);
        assert!(all.iter().any(|e| e.contains(
            r#"llm_ttft_seconds_bucket{namespace="$namespace",pod=~"${service}-[a-z0-9]+-[a-z0-9]+"}[300s]"#
        )));
        for e in all.iter().chain([&decisions_expr()]) {
            for var in e.split('$').skip(1) {
                let name: String = var
                    .trim_start_matches('{')
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                // `$1` is label_replace's capture group, not a variable.
                assert!(
                    VARIABLES.contains(&name.as_str()) || name == "1",
                    "{e}: unknown variable {name}"
                );
            }
        }
    }

    #[test]
    fn every_objective_is_drawn() {
        let all = exprs(&dashboard()).join("\n");
        for o in Objective::ALL {
            assert!(all.contains(o.metric()), "{}", o.metric());
        }
    }
}

//! PromQL builders: pure functions from a label selector and a window to query text.
//!
//! Every query the engine sends is built here so it can be tested as an exact string and read
//! in one place. The metric names are the ones `sluice-server` exports (see its contract); the
//! GPU utilisation query reads the DCGM exporter's `DCGM_FI_DEV_GPU_UTIL`, which lives on other
//! scrape targets and therefore takes its own selector.

use sluice_contract::metrics::{self as names, RequestStatus};
use std::fmt;

pub mod alerts;

use serde::{Deserialize, Serialize};

/// A selector could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// Prometheus label names match `[a-zA-Z_][a-zA-Z0-9_]*`; anything else would change the
    /// meaning of the query (or break it), so it is refused rather than escaped.
    #[error("failed to build selector: invalid label name {0:?}")]
    InvalidLabelName(String),
    /// `one_of` with no values would select everything or nothing depending on the operator.
    #[error("failed to build selector: empty value list for label {0:?}")]
    EmptyValues(String),
}

/// How a matcher compares the label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `=~` (RE2, fully anchored by Prometheus)
    Re,
    /// `!~`
    Nre,
}

impl MatchOp {
    fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::Nre => "!~",
        }
    }
}

/// One label matcher, e.g. `namespace="prod"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Matcher {
    /// Label name (validated).
    pub label: String,
    /// Comparison.
    pub op: MatchOp,
    /// Raw (unescaped) value; escaping happens when rendering.
    pub value: String,
}

/// A label selector that scopes every query to one service's pods.
///
/// Rendered without braces (`namespace="a",service="b"`) so builders can append their own
/// matchers. An empty selector selects every series of the metric.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    /// Matchers in the order given (order is kept so rendered queries are stable).
    pub matchers: Vec<Matcher>,
    /// Aggregate per service instead of over everything selected: every aggregation keeps
    /// `namespace` and [`SERVICE_LABEL`] (the Deployment name, cut from the `pod` label), so one
    /// query answers for every service at once (see [`Selector::per_service`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub by_service: bool,
}

/// The label fleet queries carry each service's name in, derived from its pods' names.
pub const SERVICE_LABEL: &str = "sluice_service";

/// RE2 capturing a Deployment's name from one of its pods' names (`<name>-<hash>-<suffix>`).
pub const DEPLOYMENT_OF_POD: &str = "(.+)-[a-z0-9]+-[a-z0-9]+";

impl Selector {
    /// An empty selector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a matcher after validating the label name.
    pub fn with(
        mut self,
        label: &str,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Self, SelectorError> {
        validate_label_name(label)?;
        self.matchers.push(Matcher {
            label: label.to_owned(),
            op,
            value: value.into(),
        });
        Ok(self)
    }

    /// The pods of one Deployment as Prometheus sees them: `pod=~"<name>-<hash>-<suffix>"`,
    /// after `namespace="<ns>"` when a namespace is given.
    ///
    /// Both usual discovery modes (a ServiceMonitor, and the `kubernetes-pods` job for scrape
    /// annotations) attach `namespace` and `pod` labels, while a `service` label exists only
    /// with the first. The anchored regex matches a Deployment's pod names exactly, so a
    /// service named `tiny` never picks up the pods of `tiny-big`.
    pub fn deployment_pods(namespace: Option<&str>, name: &str) -> Result<Self, SelectorError> {
        let sel = match namespace {
            Some(ns) => Self::new().eq("namespace", ns)?,
            None => Self::new(),
        };
        sel.with(
            "pod",
            MatchOp::Re,
            format!("{}-[a-z0-9]+-[a-z0-9]+", regex_escape(name)),
        )
    }

    /// The same selector, aggregating per service: each query then returns one series per
    /// (`namespace`, [`SERVICE_LABEL`]) instead of one in all, so the SLO loop reads every
    /// service with the same handful of queries however many services there are.
    pub fn per_service(mut self) -> Self {
        self.by_service = true;
        self
    }

    /// `op(inner)`, `op by (by) (inner)`, or per service `op by (namespace, sluice_service, by)
    /// (label_replace(inner, ...))`.
    fn agg(&self, op: &str, by: &[&str], inner: &str) -> String {
        if self.by_service {
            let mut labels = vec!["namespace", SERVICE_LABEL];
            labels.extend_from_slice(by);
            format!(
                "{op} by ({}) (label_replace({inner}, \"{SERVICE_LABEL}\", \"$1\", \"pod\", \"{DEPLOYMENT_OF_POD}\"))",
                labels.join(", ")
            )
        } else if by.is_empty() {
            format!("{op}({inner})")
        } else {
            format!("{op} by ({}) ({inner})", by.join(", "))
        }
    }

    /// `label="value"`.
    pub fn eq(self, label: &str, value: impl Into<String>) -> Result<Self, SelectorError> {
        self.with(label, MatchOp::Eq, value)
    }

    /// `label=~"v1|v2"` where each value is matched literally (regex metacharacters escaped).
    pub fn one_of<I, S>(self, label: &str, values: I) -> Result<Self, SelectorError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let alternatives: Vec<String> = values
            .into_iter()
            .map(|v| regex_escape(v.as_ref()))
            .collect();
        if alternatives.is_empty() {
            return Err(SelectorError::EmptyValues(label.to_owned()));
        }
        self.with(label, MatchOp::Re, alternatives.join("|"))
    }

    /// Renders the matchers separated by commas, without braces.
    pub fn render(&self) -> String {
        self.matchers
            .iter()
            .map(|m| {
                format!(
                    "{}{}\"{}\"",
                    m.label,
                    m.op.as_str(),
                    escape_string(&m.value)
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The same matchers on the `exported_` names of the labels in [`EXPORTED_LABELS`]: how the
    /// selector reads an exporter's series scraped without `honor_labels`.
    fn exported(&self) -> Self {
        Self {
            matchers: self
                .matchers
                .iter()
                .map(|m| Matcher {
                    label: if EXPORTED_LABELS.contains(&m.label.as_str()) {
                        format!("exported_{}", m.label)
                    } else {
                        m.label.clone()
                    },
                    ..m.clone()
                })
                .collect(),
            by_service: self.by_service,
        }
    }

    /// `metric{matchers,extra}` with `extra` already rendered (may be empty).
    fn series(&self, metric: &str, extra: &str) -> String {
        let base = self.render();
        let inner = match (base.is_empty(), extra.is_empty()) {
            (true, true) => return metric.to_owned(),
            (false, true) => base,
            (true, false) => extra.to_owned(),
            (false, false) => format!("{base},{extra}"),
        };
        format!("{metric}{{{inner}}}")
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{}}}", self.render())
    }
}

fn validate_label_name(label: &str) -> Result<(), SelectorError> {
    let mut chars = label.chars();
    let ok = match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {
            chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(SelectorError::InvalidLabelName(label.to_owned()))
    }
}

/// Escapes a value for a double-quoted PromQL string literal.
pub fn escape_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Escapes RE2 metacharacters so a value matches itself literally inside `=~`.
pub fn regex_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A range-vector window, rendered in whole seconds (`90s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Window(u64);

impl Window {
    /// A window of `seconds` (at least one second).
    pub fn seconds(seconds: u64) -> Self {
        Self(seconds.max(1))
    }

    /// Length in seconds.
    pub fn as_secs(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}

fn rate(sel: &Selector, metric: &str, extra: &str, w: Window) -> String {
    format!("rate({}[{w}])", sel.series(metric, extra))
}

fn sum_rate(sel: &Selector, metric: &str, extra: &str, w: Window) -> String {
    sel.agg("sum", &[], &rate(sel, metric, extra, w))
}

/// Mean of a histogram over the window: `sum(rate(x_sum)) / sum(rate(x_count))`.
pub fn histogram_mean(histogram: &str, sel: &Selector, w: Window) -> String {
    format!(
        "{} / {}",
        sum_rate(sel, &format!("{histogram}_sum"), "", w),
        sum_rate(sel, &format!("{histogram}_count"), "", w)
    )
}

/// `q`-quantile of a histogram aggregated over all selected pods.
pub fn histogram_quantile(q: f64, histogram: &str, sel: &Selector, w: Window) -> String {
    format!(
        "histogram_quantile({q}, {})",
        sel.agg(
            "sum",
            &["le"],
            &rate(sel, &format!("{histogram}_bucket"), "", w)
        )
    )
}

/// TTFT quantile in seconds (the seed's P95 with `q = 0.95`).
pub fn ttft_quantile(q: f64, sel: &Selector, w: Window) -> String {
    histogram_quantile(q, names::TTFT_SECONDS, sel, w)
}

/// Average time per output token in seconds.
pub fn tpot_mean(sel: &Selector, w: Window) -> String {
    histogram_mean(names::TPOT_SECONDS, sel, w)
}

/// Memory in use per `memory_type`, summed over pods (MB).
pub fn memory_usage(sel: &Selector) -> String {
    sel.agg(
        "sum",
        &[names::MEMORY_TYPE_LABEL],
        &sel.series(names::MEMORY_USAGE_MEGABYTES, ""),
    )
}

/// Memory capacity per `memory_type`, summed over pods (MB).
pub fn memory_capacity(sel: &Selector) -> String {
    sel.agg(
        "sum",
        &[names::MEMORY_TYPE_LABEL],
        &sel.series(names::MEMORY_CAPACITY_MEGABYTES, ""),
    )
}

/// Highest per-pod use/capacity ratio per `memory_type`, at each pod's peak use within the
/// window: one full pod is a memory problem even when the fleet average looks fine, and the KV
/// cache fills and drains with every request, so an instant sample would flip between "full"
/// and "fine" from one evaluation to the next.
pub fn memory_ratio(sel: &Selector, w: Window) -> String {
    let per_pod = format!(
        "max_over_time({}[{w}]) / {}",
        sel.series(names::MEMORY_USAGE_MEGABYTES, ""),
        sel.series(names::MEMORY_CAPACITY_MEGABYTES, "")
    );
    sel.agg("max", &[names::MEMORY_TYPE_LABEL], &per_pod)
}

/// Requests finished per second, any status.
pub fn request_rate(sel: &Selector, w: Window) -> String {
    sum_rate(sel, names::REQUESTS_TOTAL, "", w)
}

/// Requests finished per second by `status`.
pub fn requests_by_status(sel: &Selector, w: Window) -> String {
    sel.agg(
        "sum",
        &[names::STATUS_LABEL],
        &rate(sel, names::REQUESTS_TOTAL, "", w),
    )
}

/// Failed requests per second by `reason`.
pub fn errors_by_reason(sel: &Selector, w: Window) -> String {
    sel.agg(
        "sum",
        &[names::REASON_LABEL],
        &rate(sel, names::ERRORS_TOTAL, "", w),
    )
}

/// Fraction of finished requests whose `status` is one of `statuses`.
pub fn status_ratio(statuses: &[RequestStatus], sel: &Selector, w: Window) -> String {
    let alternatives: Vec<String> = statuses.iter().map(|s| regex_escape(s.as_str())).collect();
    let extra = format!(
        "{}=~\"{}\"",
        names::STATUS_LABEL,
        escape_string(&alternatives.join("|"))
    );
    format!(
        "{} / {}",
        sum_rate(sel, names::REQUESTS_TOTAL, &extra, w),
        sum_rate(sel, names::REQUESTS_TOTAL, "", w)
    )
}

/// Error ratio: `error|timeout|rejected` over all finished requests.
pub fn error_ratio(sel: &Selector, w: Window) -> String {
    status_ratio(&RequestStatus::ERRORS, sel, w)
}

/// Requests waiting for admission to a batch, summed over pods.
pub fn queue_depth(sel: &Selector) -> String {
    sel.agg("sum", &[], &sel.series(names::QUEUE_DEPTH, ""))
}

/// Sequences being decoded, summed over pods.
pub fn running_sequences(sel: &Selector) -> String {
    sel.agg("sum", &[], &sel.series(names::RUNNING_SEQUENCES, ""))
}

/// Requests admitted and not yet answered, summed over pods.
pub fn in_flight(sel: &Selector) -> String {
    sel.agg("sum", &[], &sel.series(names::IN_FLIGHT_REQUESTS, ""))
}

/// Generated tokens per second, summed over pods.
pub fn tokens_per_second(sel: &Selector, w: Window) -> String {
    sum_rate(sel, names::GENERATED_TOKENS_TOTAL, "", w)
}

/// Average time a request waited before admission (seconds).
pub fn queue_wait_mean(sel: &Selector, w: Window) -> String {
    histogram_mean(names::QUEUE_WAIT_SECONDS, sel, w)
}

/// Average service time: request duration minus queue wait (seconds, never negative).
pub fn service_time_mean(sel: &Selector, w: Window) -> String {
    format!(
        "clamp_min({} - {}, 0)",
        histogram_mean(names::REQUEST_DURATION_SECONDS, sel, w),
        histogram_mean(names::QUEUE_WAIT_SECONDS, sel, w)
    )
}

/// Number of pods currently exporting metrics (each exports `llm_model_info = 1`).
pub fn reporting_pods(sel: &Selector) -> String {
    sel.agg("count", &[], &sel.series(names::MODEL_INFO, ""))
}

/// Age in seconds of the stalest pod's last scrape; large values mean the data is stale.
pub fn scrape_age(sel: &Selector) -> String {
    format!(
        "time() - {}",
        sel.agg(
            "min",
            &[],
            &format!("timestamp({})", sel.series(names::MODEL_INFO, ""))
        )
    )
}

/// The DCGM exporter's GPU utilisation series, in percent.
pub const DCGM_GPU_UTIL: &str = "DCGM_FI_DEV_GPU_UTIL";

/// Mean GPU utilisation as a ratio 0..1 from the DCGM exporter. Empty when no DCGM exporter
/// covers the pods, e.g. on CPU-only servers.
///
/// The exporter labels each GPU's series with the `namespace` and `pod` using it. Scraped with
/// `honorLabels` those labels stay; scraped without (the dcgm-exporter chart's default), they
/// clash with the exporter pod's own target labels and Prometheus keeps them as
/// `exported_namespace`/`exported_pod`. Both are read, the second with its labels put back, so
/// the selector (and the per-service grouping on `pod`) works either way.
pub fn gpu_utilization(gpu_sel: &Selector) -> String {
    let exported = gpu_sel.exported();
    // Per-service grouping reads `pod` even when the selector does not name it.
    let inner = if !gpu_sel.by_service && exported == *gpu_sel {
        gpu_sel.series(DCGM_GPU_UTIL, "")
    } else {
        // Series with the labels kept, and (disjoint from them) series with them renamed,
        // put back under their own names.
        let direct = gpu_sel.series(DCGM_GPU_UTIL, r#"exported_pod="""#);
        let mut renamed = exported.series(DCGM_GPU_UTIL, r#"exported_pod!="""#);
        for label in EXPORTED_LABELS {
            renamed = format!(
                "label_replace({renamed}, \"{label}\", \"$1\", \"exported_{label}\", \"(.+)\")"
            );
        }
        format!("{direct} or {renamed}")
    };
    format!("{} / 100", gpu_sel.agg("avg", &[], &inner))
}

/// Labels an exporter sets that Prometheus renames `exported_<label>` when they clash with the
/// target's own and the job does not honour the exporter's.
const EXPORTED_LABELS: [&str; 3] = ["namespace", "pod", "container"];

/// The full set of queries for one service, built once per selector and window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuerySet {
    /// TTFT quantile (P95 by default).
    pub ttft: String,
    /// Mean TPOT.
    pub tpot: String,
    /// Memory use by type.
    pub memory_usage: String,
    /// Memory capacity by type.
    pub memory_capacity: String,
    /// Worst per-pod use/capacity ratio by type.
    pub memory_ratio: String,
    /// Request rate.
    pub request_rate: String,
    /// Error ratio (`error|timeout|rejected`).
    pub error_ratio: String,
    /// Internal-error ratio (`status="error"` only), a software symptom.
    pub internal_error_ratio: String,
    /// Rejection ratio (`status="rejected"`, HTTP 429), an overload symptom.
    pub rejection_ratio: String,
    /// Queue depth.
    pub queue_depth: String,
    /// Running sequences.
    pub running_sequences: String,
    /// Generated tokens per second.
    pub tokens_per_second: String,
    /// Mean queue wait.
    pub queue_wait: String,
    /// Mean service time.
    pub service_time: String,
    /// Pods reporting.
    pub reporting_pods: String,
    /// Scrape age of the stalest pod.
    pub scrape_age: String,
    /// GPU utilisation, when a DCGM selector was given.
    pub gpu_utilization: Option<String>,
}

impl QuerySet {
    /// Builds every query for `sel` over window `w`; `gpu_sel` scopes the DCGM exporter's series.
    pub fn new(sel: &Selector, gpu_sel: Option<&Selector>, w: Window, ttft_q: f64) -> Self {
        Self {
            ttft: ttft_quantile(ttft_q, sel, w),
            tpot: tpot_mean(sel, w),
            memory_usage: memory_usage(sel),
            memory_capacity: memory_capacity(sel),
            memory_ratio: memory_ratio(sel, w),
            request_rate: request_rate(sel, w),
            error_ratio: error_ratio(sel, w),
            internal_error_ratio: status_ratio(&[RequestStatus::Error], sel, w),
            rejection_ratio: status_ratio(&[RequestStatus::Rejected], sel, w),
            queue_depth: queue_depth(sel),
            running_sequences: running_sequences(sel),
            tokens_per_second: tokens_per_second(sel, w),
            queue_wait: queue_wait_mean(sel, w),
            service_time: service_time_mean(sel, w),
            reporting_pods: reporting_pods(sel),
            scrape_age: scrape_age(sel),
            gpu_utilization: gpu_sel.map(gpu_utilization),
        }
    }
}

#[cfg(test)]
mod tests;

//! Span breakdown from Jaeger's query HTTP API (`GET /api/traces`): for each operation, how much
//! of the traced wall time it accounts for by itself (its duration minus its direct children's),
//! so nested spans are not counted twice and the shares add up to 100%.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum JaegerError {
    #[error("failed to query jaeger at {url}: {message}")]
    Request { url: String, message: String },
    #[error("failed to read jaeger's answer from {url}: {message}")]
    Decode { url: String, message: String },
}

#[derive(Debug, Deserialize)]
pub struct TracesResponse {
    #[serde(default)]
    pub data: Vec<Trace>,
}

#[derive(Debug, Deserialize)]
pub struct Trace {
    #[serde(default)]
    pub spans: Vec<Span>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    #[serde(rename = "spanID")]
    pub span_id: String,
    pub operation_name: String,
    #[serde(default)]
    pub references: Vec<Reference>,
    /// Microseconds.
    pub duration: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reference {
    pub ref_type: String,
    #[serde(rename = "spanID")]
    pub span_id: String,
}

/// Time attributed to one operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperationShare {
    pub operation: String,
    pub spans: u64,
    /// Exclusive time (own duration minus direct children), milliseconds, summed.
    pub self_ms: f64,
    /// Mean span duration (inclusive), milliseconds.
    pub mean_ms: f64,
    /// Share of all traced root time.
    pub share: f64,
}

/// The breakdown over all fetched traces.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breakdown {
    pub traces: usize,
    /// Sum of root span durations, milliseconds.
    pub total_ms: f64,
    /// Operations by exclusive time, largest first.
    pub operations: Vec<OperationShare>,
}

/// Computes exclusive time per operation. Pure.
pub fn breakdown(traces: &[Trace]) -> Breakdown {
    #[derive(Default)]
    struct Acc {
        spans: u64,
        self_us: u64,
        total_us: u64,
    }
    let mut by_op: BTreeMap<&str, Acc> = BTreeMap::new();
    let mut root_us = 0u64;
    for trace in traces {
        let ids: HashMap<&str, &Span> = trace
            .spans
            .iter()
            .map(|s| (s.span_id.as_str(), s))
            .collect();
        let mut children_us: HashMap<&str, u64> = HashMap::new();
        for span in &trace.spans {
            let parent = span
                .references
                .iter()
                .find(|r| r.ref_type == "CHILD_OF" && ids.contains_key(r.span_id.as_str()));
            match parent {
                Some(p) => *children_us.entry(p.span_id.as_str()).or_default() += span.duration,
                None => root_us += span.duration,
            }
        }
        for span in &trace.spans {
            let acc = by_op.entry(span.operation_name.as_str()).or_default();
            acc.spans += 1;
            acc.total_us += span.duration;
            // Concurrent children can exceed their parent; exclusive time never goes negative.
            let children = children_us.get(span.span_id.as_str()).copied().unwrap_or(0);
            acc.self_us += span.duration.saturating_sub(children);
        }
    }
    let total_self: u64 = by_op.values().map(|a| a.self_us).sum();
    let denom = total_self.max(1) as f64;
    let mut operations: Vec<OperationShare> = by_op
        .into_iter()
        .map(|(op, a)| OperationShare {
            operation: op.to_string(),
            spans: a.spans,
            self_ms: a.self_us as f64 / 1000.0,
            mean_ms: a.total_us as f64 / a.spans.max(1) as f64 / 1000.0,
            share: a.self_us as f64 / denom,
        })
        .collect();
    operations.sort_by(|a, b| {
        b.self_ms
            .total_cmp(&a.self_ms)
            .then(a.operation.cmp(&b.operation))
    });
    Breakdown {
        traces: traces.len(),
        total_ms: root_us as f64 / 1000.0,
        operations,
    }
}

/// Fetches up to `limit` traces of `service` that ended within `window` before now.
pub async fn fetch(
    client: &reqwest::Client,
    base: &reqwest::Url,
    service: &str,
    window: Duration,
    limit: u32,
) -> Result<Vec<Trace>, JaegerError> {
    let url = crate::bench::client::join(base, "/api/traces");
    let end = chrono::Utc::now().timestamp_micros();
    let start = end - i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
    let err = |message: String| JaegerError::Request {
        url: url.to_string(),
        message,
    };
    let resp = client
        .get(url.clone())
        .query(&[
            ("service", service.to_string()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("limit", limit.to_string()),
        ])
        .send()
        .await
        .map_err(|e| err(sluice_slo::error_chain(&e)))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        return Err(err(format!(
            "HTTP {status}: {}",
            body.chars().take(200).collect::<String>()
        )));
    }
    let body: TracesResponse = resp.json().await.map_err(|e| JaegerError::Decode {
        url: url.to_string(),
        message: e.to_string(),
    })?;
    Ok(body.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traces(json: &str) -> Vec<Trace> {
        serde_json::from_str::<TracesResponse>(json).unwrap().data
    }

    #[test]
    fn exclusive_time_shares_add_up() {
        // request 1000 µs = queue 150 + inference 800 (of which tokenize 100) + 50 own.
        let t = traces(
            r#"{"data":[{"traceID":"t","spans":[
              {"traceID":"t","spanID":"a","operationName":"POST /generate","references":[],"startTime":0,"duration":1000},
              {"traceID":"t","spanID":"b","operationName":"queue_wait","references":[{"refType":"CHILD_OF","traceID":"t","spanID":"a"}],"startTime":0,"duration":150},
              {"traceID":"t","spanID":"c","operationName":"model_inference","references":[{"refType":"CHILD_OF","traceID":"t","spanID":"a"}],"startTime":150,"duration":800},
              {"traceID":"t","spanID":"d","operationName":"tokenize","references":[{"refType":"CHILD_OF","traceID":"t","spanID":"c"}],"startTime":150,"duration":100}
            ]}]}"#,
        );
        let b = breakdown(&t);
        assert_eq!(b.traces, 1);
        assert_eq!(b.total_ms, 1.0);
        let got: Vec<(&str, f64)> = b
            .operations
            .iter()
            .map(|o| (o.operation.as_str(), (o.share * 1000.0).round() / 1000.0))
            .collect();
        assert_eq!(
            got,
            [
                ("model_inference", 0.7),
                ("queue_wait", 0.15),
                ("tokenize", 0.1),
                ("POST /generate", 0.05)
            ]
        );
        assert_eq!(b.operations[0].mean_ms, 0.8);
    }

    #[test]
    fn orphans_count_as_roots_and_empty_is_fine() {
        let t = traces(
            r#"{"data":[{"spans":[
              {"spanID":"x","operationName":"op","references":[{"refType":"CHILD_OF","spanID":"missing"}],"duration":500}
            ]}]}"#,
        );
        let b = breakdown(&t);
        assert_eq!((b.total_ms, b.operations[0].share), (0.5, 1.0));
        let empty = breakdown(&[]);
        assert!(empty.operations.is_empty() && empty.total_ms == 0.0);
    }
}

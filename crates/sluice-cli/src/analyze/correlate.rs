//! The seed's correlations over the analysis window — TTFT vs load, TPOT vs memory, throughput
//! vs GPU utilisation — as Pearson coefficients of Prometheus range queries built by
//! `sluice_slo::promql`, aligned on their common timestamps.

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_http_query::Client;
use serde::Serialize;
use sluice_slo::promql::{self, Selector, Window};

/// One correlation, or why it could not be computed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Correlation {
    pub name: String,
    pub x: String,
    pub y: String,
    /// Pearson r, when at least three aligned points with non-zero variance exist.
    pub r: Option<f64>,
    pub points: usize,
    /// What r means here, or why it is missing.
    pub reading: String,
}

/// Pearson's r of paired samples; None with fewer than 3 points or a constant series.
pub fn pearson(pairs: &[(f64, f64)]) -> Option<f64> {
    let n = pairs.len();
    if n < 3 {
        return None;
    }
    let nf = n as f64;
    let (mx, my) = pairs
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / nf, b + y / nf));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in pairs {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx).powi(2);
        syy += (y - my).powi(2);
    }
    if sxx <= f64::EPSILON || syy <= f64::EPSILON {
        return None;
    }
    Some(sxy / (sxx.sqrt() * syy.sqrt()))
}

/// Pairs two series on equal timestamps (Prometheus range queries share the step grid).
pub fn align(x: &[(f64, f64)], y: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let ys: BTreeMap<i64, f64> = y.iter().map(|(t, v)| ((t * 1000.0) as i64, *v)).collect();
    x.iter()
        .filter_map(|(t, xv)| ys.get(&((t * 1000.0) as i64)).map(|yv| (*xv, *yv)))
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .collect()
}

/// Words for r: strength and direction, in the terms of the pair.
pub fn reading(r: f64, rises: &str) -> String {
    let strength = match r.abs() {
        a if a >= 0.7 => "strong",
        a if a >= 0.4 => "moderate",
        a if a >= 0.2 => "weak",
        _ => return "no clear relation".to_string(),
    };
    if r > 0.0 {
        format!("{strength}: {rises}")
    } else {
        format!("{strength} inverse relation")
    }
}

/// One pair of series to correlate.
struct Pair {
    name: &'static str,
    x_label: &'static str,
    /// Why the pair cannot be queried, when it cannot.
    x_query: Result<String, &'static str>,
    y_label: &'static str,
    y_query: String,
    /// What a positive r means.
    rises: &'static str,
}

/// The seed's three pairs; the GPU pair has no query without a GPU selector.
fn pairs(sel: &Selector, gpu: Option<&Selector>, w: Window) -> [Pair; 3] {
    [
        Pair {
            name: "TTFT vs load",
            x_label: "request rate (req/s)",
            x_query: Ok(promql::request_rate(sel, w)),
            y_label: "TTFT P95 (s)",
            y_query: promql::ttft_quantile(0.95, sel, w),
            rises: "TTFT rises with load (queueing or saturation)",
        },
        Pair {
            name: "TPOT vs memory",
            x_label: "memory use ratio",
            x_query: Ok(format!("max({})", promql::memory_ratio(sel, w))),
            y_label: "TPOT (s)",
            y_query: promql::tpot_mean(sel, w),
            rises: "decoding slows as memory fills (KV cache / batch pressure)",
        },
        Pair {
            name: "throughput vs GPU utilisation",
            x_label: "GPU utilisation",
            x_query: gpu
                .map(promql::gpu_utilization)
                .ok_or("no GPU series selected (pass --gpu-selector)"),
            y_label: "tokens/s",
            y_query: promql::tokens_per_second(sel, w),
            rises: "throughput follows GPU use (compute is the lever)",
        },
    ]
}

/// Runs the range queries over `window` ending now and computes each correlation.
pub async fn correlations(
    client: &Client,
    sel: &Selector,
    gpu: Option<&Selector>,
    rate_window: Window,
    window: Duration,
) -> Vec<Correlation> {
    let end = chrono::Utc::now().timestamp();
    let start = end - i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
    // About 60 points, never finer than 15 s (a typical scrape interval).
    let step = (window.as_secs_f64() / 60.0).max(15.0);
    let mut out = Vec::new();
    for pair in pairs(sel, gpu, rate_window) {
        let (r, points, reading_text) = match &pair.x_query {
            Err(why) => (None, 0, (*why).to_string()),
            Ok(xq) => {
                let (xs, ys) = futures::join!(
                    range(client, xq, start, end, step),
                    range(client, &pair.y_query, start, end, step)
                );
                match (xs, ys) {
                    (Ok(xs), Ok(ys)) => {
                        let aligned = align(&xs, &ys);
                        let r = pearson(&aligned);
                        let text = match r {
                            Some(r) => reading(r, pair.rises),
                            None => "not enough varying data in the window".into(),
                        };
                        (r, aligned.len(), text)
                    }
                    (Err(e), _) | (_, Err(e)) => (None, 0, e),
                }
            }
        };
        out.push(Correlation {
            name: pair.name.into(),
            x: pair.x_label.into(),
            y: pair.y_label.into(),
            r,
            points,
            reading: reading_text,
        });
    }
    out
}

async fn range(
    client: &Client,
    query: &str,
    start: i64,
    end: i64,
    step: f64,
) -> Result<Vec<(f64, f64)>, String> {
    let res = client
        .query_range(query, start, end, step)
        .get()
        .await
        .map_err(|e| format!("range query failed: {e}"))?;
    let matrix = res
        .data()
        .as_matrix()
        .ok_or_else(|| "range query did not return a matrix".to_string())?;
    let series = matrix
        .first()
        .ok_or_else(|| "no data in the window".to_string())?;
    Ok(series
        .samples()
        .iter()
        .map(|s| (s.timestamp(), s.value()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_on_hand_computed_data() {
        let perfect: Vec<(f64, f64)> = (0..5).map(|i| (i as f64, 2.0 * i as f64 + 1.0)).collect();
        assert!((pearson(&perfect).unwrap() - 1.0).abs() < 1e-12);
        let inverse: Vec<(f64, f64)> = (0..5).map(|i| (i as f64, -(i as f64))).collect();
        assert!((pearson(&inverse).unwrap() + 1.0).abs() < 1e-12);
        // x = 1,2,3,4; y = 2,1,4,3: r = 0.6 exactly.
        let r = pearson(&[(1.0, 2.0), (2.0, 1.0), (3.0, 4.0), (4.0, 3.0)]).unwrap();
        assert!((r - 0.6).abs() < 1e-12, "{r}");
        assert_eq!(pearson(&[(1.0, 1.0), (2.0, 1.0), (3.0, 1.0)]), None);
        assert_eq!(pearson(&[(1.0, 1.0), (2.0, 2.0)]), None);
    }

    #[test]
    fn align_pairs_equal_timestamps_only() {
        let x = [(10.0, 1.0), (25.0, 2.0), (40.0, 3.0)];
        let y = [(25.0, 20.0), (40.0, f64::NAN), (55.0, 1.0), (10.0, 10.0)];
        assert_eq!(align(&x, &y), vec![(1.0, 10.0), (2.0, 20.0)]);
    }

    #[test]
    fn readings() {
        assert_eq!(
            reading(0.93, "TTFT rises with load"),
            "strong: TTFT rises with load"
        );
        assert_eq!(reading(-0.5, "x"), "moderate inverse relation");
        assert_eq!(reading(0.1, "x"), "no clear relation");
    }

    #[test]
    fn queries_come_from_the_slo_builders() {
        let sel = Selector::new().eq("service", "llm").unwrap();
        let p = pairs(&sel, None, Window::seconds(60));
        assert_eq!(
            p[0].x_query,
            Ok(promql::request_rate(&sel, Window::seconds(60)))
        );
        assert_eq!(
            p[0].y_query,
            promql::ttft_quantile(0.95, &sel, Window::seconds(60))
        );
        // Without a GPU selector the GPU pair is listed but not queried.
        assert_eq!(
            p[2].x_query,
            Err("no GPU series selected (pass --gpu-selector)")
        );
        let gpu = Selector::new().eq("gpu", "0").unwrap();
        let with_gpu = pairs(&sel, Some(&gpu), Window::seconds(60));
        assert_eq!(with_gpu[2].x_query, Ok(promql::gpu_utilization(&gpu)));
    }
}

//! The SLO loop's read-and-decide path against real parts: two `sluice-server` processes on
//! loopback, a real Prometheus scraping them every second, a small streaming load client, and
//! the engine reading through `PrometheusSource` with the operator's own selector and spec
//! mapping. Asserts that
//! 1. the TTFT P95 read from Prometheus agrees with the client-measured P95 (tolerance below);
//! 2. an overloaded server (`--max-batch-size 1`, many concurrent clients) is classified
//!    `QueueBound` with a scale-out plan;
//! 3. a server under memory pressure (16 MB budget, 10 MB of f32 weights, long generations) is
//!    classified `MemoryBound` with a quantization or `max_tokens` plan, and that a clamp pushed
//!    through the operator's limits client (`PUT /admin/limits`) brings the memory SLI back
//!    under its objective while the same load continues.
//!
//! Needs `prometheus` on PATH (Debian package; `scripts/install-deps.sh`) or in
//! `SLUICE_PROMETHEUS_BIN`, and the `sluice-server` binary (built here if missing). All traffic
//! stays on 127.0.0.1; every process is killed when the test ends, pass or fail.

mod live;

use std::time::Duration;

use live::{Load, LoadSpec, Prometheus, Server, percentile, unix_now};
use sluice_api::{AppliedSettings, Quantization};
use sluice_contract::admin::RuntimeSettings;
use sluice_contract::{Action, BottleneckClass};
use sluice_operator::slo::{HttpSettingsClient, PodTarget, SettingsClient, mapping};
use sluice_slo::{
    MetricsSource, PrometheusFleet, PrometheusSource, Selector, Settings, Sli, SloSpec, Window,
    plan,
};

const NS: &str = "e2e";
/// Pod names shaped like a Deployment's, so the operator's `pod=~"<name>-…-…"` selector is
/// exercised exactly as in a cluster.
const QUEUE_POD: &str = "queue-5f7d8b9c4-x2x7q";
const MEMORY_POD: &str = "memory-6c9f4d7b8-k8j2m";

/// TTFT histogram bucket bounds of `sluice-server` (`llm_ttft_seconds`), read back from the
/// server's own `/metrics` page in the test rather than trusted from here.
fn ttft_bounds(metrics_page: &str) -> Vec<f64> {
    let mut b: Vec<f64> = metrics_page
        .lines()
        .filter(|l| l.starts_with("llm_ttft_seconds_bucket{"))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            le.parse::<f64>().ok().filter(|v| v.is_finite())
        })
        .collect();
    b.sort_by(f64::total_cmp);
    b.dedup();
    b
}

/// `(lower, upper]` of the histogram bucket that holds `v`.
fn bucket_of(bounds: &[f64], v: f64) -> (f64, f64) {
    let mut lower = 0.0;
    for &upper in bounds {
        if v <= upper {
            return (lower, upper);
        }
        lower = upper;
    }
    (lower, f64::INFINITY)
}

/// Width of the histogram bucket that holds `v`.
fn bucket_width(bounds: &[f64], v: f64) -> f64 {
    let (lower, upper) = bucket_of(bounds, v);
    upper - lower
}

/// The operator's mapping of a CR with these objectives, as the SLO loop would plan with it.
fn spec_for(name: &str) -> (mapping_types::Validated, SloSpec, AppliedSettings) {
    let obj: sluice_api::InferenceService = serde_json::from_value(serde_json::json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "InferenceService",
        "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}")},
        "spec": {
            "model": {"builtin": "tiny"},
            "replicas": {"min": 1, "max": 4},
            "serving": {"quantization": "f32", "quantizationLadder": ["f32", "q8_0", "q4_0"],
                        "maxTokens": {"default": 256, "floor": 16}},
            "slo": {"ttftP95": "250ms", "tpotAvg": "1s", "vramMaxPercent": 85,
                    "errorRateMax": 0.05, "window": "30s"},
            "remediation": {"mode": "Auto"},
        },
    }))
    .unwrap();
    let v = sluice_operator::validate::validate(&obj).unwrap();
    let eff = AppliedSettings {
        replicas: 1,
        quantization: Quantization::F32,
        max_tokens: 256,
    };
    let spec = mapping::slo_spec(&v, &eff);
    (v, spec, eff)
}

mod mapping_types {
    pub use sluice_operator::validate::Validated;
}

fn settled(eff: &AppliedSettings) -> Settings {
    Settings {
        applied: AppliedSettings {
            replicas: 1,
            ..*eff
        },
        ready_replicas: 1,
        rollout_complete: true,
    }
}

fn source(prom: &Prometheus, v: &mapping_types::Validated, window_s: u64) -> PrometheusSource {
    let sel = mapping::selector(v).unwrap();
    PrometheusSource::new(&prom.url(), &sel, None, Window::seconds(window_s), 0.95).unwrap()
}

fn show(sli: &Sli) -> String {
    let mut parts: Vec<String> = sli
        .named()
        .into_iter()
        .map(|(n, v)| match v.value() {
            Some(x) => format!("{n}={x:.4}"),
            None => format!("{n}=?"),
        })
        .collect();
    for m in &sli.memory {
        parts.push(format!(
            "memoryRatio.{}={:?}",
            m.memory_type,
            m.usage_ratio.value()
        ));
    }
    parts.join(" ")
}

#[ignore = "live tier: needs the prometheus binary; scripts/test.sh runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn engine_reads_real_prometheus_and_plans_the_right_remedy() {
    let started = std::time::Instant::now();
    let bin = live::server_binary();
    // Queue scenario: one sequence per batch, so concurrent requests wait in the queue.
    let mut queue = Server::start(
        &bin,
        &[
            "--quantization",
            "f32",
            "--max-batch-size",
            "1",
            "--max-concurrent-requests",
            "64",
        ],
    )
    .await;
    // Memory scenario: 16 MB for 10 MB of f32 weights leaves 6 MB of KV cache (4 KB/token at
    // f32).
    let mut memory = Server::start(
        &bin,
        &[
            "--quantization",
            "f32",
            "--kv-cache-dtype",
            "f32",
            "--memory-budget-mb",
            "16",
            "--max-batch-size",
            "16",
        ],
    )
    .await;
    let prom = Prometheus::start(&[(&queue, QUEUE_POD), (&memory, MEMORY_POD)], NS).await;
    prom.wait_targets_up(2, Duration::from_secs(30)).await;
    // Two scrapes of idle counters, so rate() over the load phase starts from a sample at 0.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // --- 1 and 2: overload, classification, TTFT agreement -----------------------------------
    let (qv, qspec, qeff) = spec_for("queue");
    let load_start = unix_now();
    let load = Load::start(
        queue.url(),
        LoadSpec {
            clients: 12,
            max_tokens: 48,
            prompt: "the queue is long and the batch is small",
        },
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut history: Vec<Sli> = Vec::new();
    let mut queue_plan = None;
    for _ in 0..10 {
        let now = unix_now();
        let window = (now - load_start).ceil() as u64 + 2;
        let sli = source(&prom, &qv, window).read(now).await;
        eprintln!("queue SLIs: {}", show(&sli));
        history.push(sli);
        let p = plan(&qspec, &history, &settled(&qeff), &[], now);
        eprintln!("queue plan: {} -> {:?}", p.classification.class, p.action);
        if p.classification.class == BottleneckClass::QueueBound && p.action.is_change() {
            queue_plan = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let stats = load.stop().await;
    // The fleet reader (one set of queries for every service, as the operator's SLO loop uses)
    // answers for this service what the per-service source answers, read back to back (after
    // the load, so the client's TTFT samples below cover the same period as before).
    let now = unix_now();
    let window = Window::seconds((now - load_start).ceil() as u64 + 2);
    let fleet = PrometheusFleet::new(&prom.url(), &Selector::new(), window, 0.95).unwrap();
    let single = source(&prom, &qv, window.as_secs());
    let (one, all) = tokio::join!(single.read(now), fleet.read(now));
    let mine = all.sli(NS, "queue");
    for ((name, a), (_, b)) in one.named().into_iter().zip(mine.named()) {
        // Instant gauges drain as the load stops; a scrape between the two reads would move
        // them. The window-long rates and histograms cannot jump that way.
        if matches!(name, "queueDepth" | "runningSequences") {
            continue;
        }
        match (a.value(), b.value()) {
            (Some(x), Some(y)) => assert!(
                (x - y).abs() <= 0.05 * x.abs().max(y.abs()).max(1e-9),
                "{name}: per-service {x} vs fleet {y}"
            ),
            (x, y) => assert_eq!(x.is_some(), y.is_some(), "{name}: {a:?} vs {b:?}"),
        }
    }
    assert_eq!(all.services(), 2, "the queue and memory services");
    let p = queue_plan.expect("overload was classified QueueBound with a change within 15 s");
    match p.action {
        Action::ScaleReplicas { from, to } => {
            assert_eq!(from, 1);
            assert!(to > 1 && to <= 4, "scale-out within maxReplicas: {to}");
        }
        other => panic!("queue-bound plan should scale out, got {other:?}"),
    }
    assert!(p.act, "Auto mode acts on the plan");
    assert!(
        p.classification
            .evidence
            .iter()
            .any(|e| e.signal == "queueDepthPerPod"
                || e.signal == "queueWaitShare"
                || e.signal == "rejectionRatio"),
        "evidence names the backlog: {:?}",
        p.classification.evidence
    );

    // TTFT agreement over exactly the load phase (the server was idle before it).
    assert_eq!(
        stats.errors, 0,
        "no request failed: {:?}",
        stats.error_samples
    );
    assert!(
        stats.ttft.len() >= 50,
        "enough samples: {}",
        stats.ttft.len()
    );
    tokio::time::sleep(Duration::from_millis(2500)).await; // the final counters are scraped
    let now = unix_now();
    let window = (now - load_start).ceil() as u64 + 2;
    let sli = source(&prom, &qv, window).read(now).await;
    let engine_p95 = sli
        .ttft_p95_seconds
        .value()
        .unwrap_or_else(|| panic!("TTFT P95 known after load: {}", show(&sli)));
    let client_p95 = percentile(&stats.ttft, 0.95);
    let bounds = ttft_bounds(&queue.metrics().await);
    assert!(
        !bounds.is_empty(),
        "server exports llm_ttft_seconds buckets"
    );
    // histogram_quantile can only place the P95 inside its bucket (linear interpolation assumes
    // a uniform spread there), so the bucket's width bounds its error; the client's clock also
    // includes the loopback round trip and SSE framing that the server's does not (< 50 ms).
    let tolerance = bucket_width(&bounds, client_p95).max(bucket_width(&bounds, engine_p95)) + 0.05;
    eprintln!(
        "TTFT P95: engine {engine_p95:.4} s, client {client_p95:.4} s over {} requests, tolerance {tolerance:.3} s",
        stats.ttft.len()
    );
    assert!(
        (engine_p95 - client_p95).abs() <= tolerance,
        "engine P95 {engine_p95} vs client P95 {client_p95} exceeds {tolerance}"
    );
    // Tighter: the client's own samples, bucketed like the server's histogram and interpolated
    // like histogram_quantile, must give the engine's value. What remains is samples that land
    // in a neighbouring bucket because the two clocks start a few ms apart: allow three of them
    // (each moves the estimate by width / samples-in-bucket) plus 20 ms.
    let mut cumulative: Vec<(f64, f64)> = bounds
        .iter()
        .map(|&b| (b, stats.ttft.iter().filter(|&&t| t <= b).count() as f64))
        .collect();
    cumulative.push((f64::INFINITY, stats.ttft.len() as f64));
    let client_hist_p95 = sluice_slo::source::bucket_quantile(0.95, &cumulative).unwrap();
    let (lower, upper) = bucket_of(&bounds, engine_p95);
    let width = upper - lower;
    let in_bucket = stats
        .ttft
        .iter()
        .filter(|&&t| t > lower && t <= upper)
        .count()
        .max(1);
    let tight = 3.0 * width / in_bucket as f64 + 0.02;
    eprintln!(
        "TTFT P95 from the client's samples bucketed like the server: {client_hist_p95:.4} s (tolerance {tight:.3} s)"
    );
    assert!(
        (engine_p95 - client_hist_p95).abs() <= tight,
        "engine P95 {engine_p95} vs client histogram P95 {client_hist_p95} exceeds {tight}"
    );

    // --- 3: memory pressure, then a max_tokens clamp through the runtime endpoint ----------
    let (mv, mspec, meff) = spec_for("memory");
    let load = Load::start(
        memory.url(),
        LoadSpec {
            clients: 6,
            max_tokens: 256,
            prompt: "tell a very long story",
        },
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut history: Vec<Sli> = Vec::new();
    let mut memory_plan = None;
    for _ in 0..20 {
        let now = unix_now();
        let sli = source(&prom, &mv, 10).read(now).await;
        eprintln!("memory SLIs: {}", show(&sli));
        history.push(sli);
        let p = plan(&mspec, &history, &settled(&meff), &[], now);
        eprintln!("memory plan: {} -> {:?}", p.classification.class, p.action);
        if p.classification.class == BottleneckClass::MemoryBound && p.action.is_change() {
            memory_plan = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let p = memory_plan.expect("memory pressure was classified MemoryBound with a change");
    assert!(
        matches!(
            &p.action,
            Action::SetQuantization { from, to } if *from == Quantization::F32 && *to == Quantization::Q8_0
        ) || matches!(p.action, Action::SetMaxTokens { from: 256, to } if to < 256),
        "memory-bound plan quantizes or clamps max_tokens, got {:?}",
        p.action
    );
    assert!(
        p.classification
            .evidence
            .iter()
            .any(|e| e.signal.starts_with("memoryRatio.") && e.value > 0.85),
        "evidence carries the memory ratio: {:?}",
        p.classification.evidence
    );

    // The clamp, through the operator's own limits client, while the load keeps going.
    let target = PodTarget {
        name: MEMORY_POD.into(),
        base_url: memory.url().to_owned(),
    };
    HttpSettingsClient::default()
        .set_settings(
            &target,
            RuntimeSettings {
                max_tokens: 16,
                quantization: Quantization::F32,
            },
            None,
        )
        .await
        .expect("PUT /admin/settings accepted");
    let clamped_at = unix_now();
    let mut below = 0;
    let mut last = None;
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = unix_now();
        let sli = source(&prom, &mv, 5).read(now).await;
        eprintln!("after clamp: {}", show(&sli));
        let ratio = sli.memory_pressure().map(|(_, r)| r);
        // Only samples scraped after the clamp count.
        let fresh = sli
            .memory
            .iter()
            .filter_map(|m| match m.usage_ratio {
                sluice_slo::SliValue::Known { at, .. } => Some(at),
                _ => None,
            })
            .all(|at| at > clamped_at + 1.0);
        if fresh && ratio.is_some_and(|r| r <= mspec.targets.memory_ratio) {
            below += 1;
            last = Some(sli);
            if below >= 3 {
                break;
            }
        } else {
            below = 0;
        }
    }
    let stats = load.stop().await;
    assert!(
        below >= 3,
        "memory SLI stayed under {} for three reads after the clamp",
        mspec.targets.memory_ratio
    );
    let last = last.unwrap();
    assert!(
        last.request_rate_per_second.value().unwrap_or(0.0) > 0.0,
        "the load was still running when memory recovered: {}",
        show(&last)
    );
    assert!(stats.ok > 0, "memory load completed requests");
    let after = plan(&mspec, &[last], &settled(&meff), &[], unix_now());
    assert_ne!(
        after.classification.class,
        BottleneckClass::MemoryBound,
        "no longer memory-bound after the clamp: {}",
        after.classification.summary
    );
    assert!(
        queue.alive() && memory.alive(),
        "both servers survived the load"
    );
    eprintln!("whole test took {:?}", started.elapsed());
}

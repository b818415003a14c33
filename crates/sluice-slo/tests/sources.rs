//! The two metrics sources against canned data: the Prometheus source against a tiny local
//! HTTP server that answers `/api/v1/query` with canned JSON per query, and the scrape source
//! against canned exposition text (pure, and served over loopback HTTP).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use sluice_slo::source::{Scrape, TargetPage, compute_sli, parse_exposition, peak_memory_ratio};
use sluice_slo::{MetricsSource, PrometheusSource, ScrapeSource, Selector, Window};

const NOW: f64 = 1_700_000_000.0;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// Canned answers keyed by exact query text; anything not listed is a single sample of 1.
type Canned = Arc<HashMap<String, Response2>>;

/// One canned series: labels, sample timestamp, value as Prometheus writes it.
type Series = (Vec<(&'static str, &'static str)>, f64, &'static str);

#[derive(Clone)]
enum Response2 {
    Vector(Vec<Series>),
    BadRequest,
}

async fn query_api(
    State(canned): State<Canned>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let query = q.get("query").cloned().unwrap_or_default();
    let vector = |items: &[Series]| {
        let result: Vec<Value> = items
            .iter()
            .map(|(labels, ts, v)| {
                let metric: serde_json::Map<String, Value> = labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), json!(v)))
                    .collect();
                json!({"metric": metric, "value": [ts, v]})
            })
            .collect();
        axum::Json(json!({"status": "success", "data": {"resultType": "vector", "result": result}}))
            .into_response()
    };
    match canned.get(&query) {
        Some(Response2::Vector(items)) => vector(items),
        Some(Response2::BadRequest) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"status": "error", "errorType": "bad_data", "error": "parse error"})),
        )
            .into_response(),
        None => vector(&[(vec![], NOW, "1")]),
    }
}

fn selector() -> Selector {
    Selector::new()
        .eq("namespace", "prod")
        .unwrap()
        .eq("service", "chat")
        .unwrap()
}

fn source(url: &str, gpu: bool) -> PrometheusSource {
    let gpu_sel = selector();
    PrometheusSource::new(
        url,
        &selector(),
        gpu.then_some(&gpu_sel),
        Window::seconds(60),
        0.95,
    )
    .unwrap()
    .with_max_sample_age(60.0)
}

#[tokio::test]
async fn prometheus_values_and_every_way_to_be_unknown() {
    // Build the canned table from the source's own queries so the test follows the builders.
    let probe = source("http://127.0.0.1:9", true);
    let q = probe.queries().clone();
    let one = |v: &'static str| Response2::Vector(vec![(vec![], NOW, v)]);
    let mut canned = HashMap::new();
    canned.insert(q.scrape_age.clone(), one("12"));
    canned.insert(q.ttft.clone(), one("0.84"));
    canned.insert(q.tpot.clone(), Response2::Vector(vec![])); // empty
    canned.insert(q.error_ratio.clone(), one("NaN")); // 0/0
    canned.insert(
        q.request_rate.clone(),
        Response2::Vector(vec![(vec![], NOW - 300.0, "5")]),
    ); // stale
    canned.insert(q.queue_depth.clone(), Response2::BadRequest); // query error
    canned.insert(q.running_sequences.clone(), one("+Inf"));
    canned.insert(q.tokens_per_second.clone(), one("0"));
    canned.insert(q.gpu_utilization.clone().unwrap(), one("0.93"));
    canned.insert(
        q.memory_ratio.clone(),
        Response2::Vector(vec![
            (vec![("memory_type", "vram")], NOW, "0.91"),
            (vec![("memory_type", "kv_cache")], NOW, "0.5"),
        ]),
    );
    canned.insert(
        q.memory_usage.clone(),
        Response2::Vector(vec![(vec![("memory_type", "vram")], NOW, "1820")]),
    );
    canned.insert(
        q.memory_capacity.clone(),
        Response2::Vector(vec![(vec![("memory_type", "vram")], NOW, "2000")]),
    );
    let app = Router::new()
        .route("/api/v1/query", get(query_api))
        .with_state(Arc::new(canned));
    let url = serve(app).await;

    let sli = source(&url, true).read(NOW).await;
    assert_eq!(sli.ttft_p95_seconds.value(), Some(0.84));
    assert_eq!(sli.gpu_utilization_ratio.value(), Some(0.93));
    // A real zero stays zero: only missing data is unknown.
    assert_eq!(sli.tokens_per_second.value(), Some(0.0));
    let reason = |v: &sluice_slo::SliValue| v.unknown_reason().unwrap_or("KNOWN").to_owned();
    assert!(reason(&sli.tpot_seconds).contains("empty"), "{sli:?}");
    assert!(reason(&sli.error_ratio).contains("NaN"), "{sli:?}");
    assert!(
        reason(&sli.request_rate_per_second).contains("stale"),
        "{sli:?}"
    );
    assert!(reason(&sli.queue_depth).contains("failed"), "{sli:?}");
    assert!(!sli.running_sequences.is_known(), "Inf must be unknown");
    assert_eq!(sli.memory_pressure(), Some(("vram", 0.91)));
    let vram = sli.memory.iter().find(|m| m.memory_type == "vram").unwrap();
    assert_eq!(vram.usage_megabytes.value(), Some(1820.0));
    assert_eq!(vram.capacity_megabytes.value(), Some(2000.0));
    let kv = sli
        .memory
        .iter()
        .find(|m| m.memory_type == "kv_cache")
        .unwrap();
    assert!(
        !kv.usage_megabytes.is_known(),
        "kv_cache usage absent from the usage result"
    );

    // Without a DCGM selector GPU utilisation is unknown, not 0.
    let cpu = source(&url, false).read(NOW).await;
    assert!(reason(&cpu.gpu_utilization_ratio).contains("not configured"));
}

#[tokio::test]
async fn prometheus_stale_scrapes_or_no_server_make_everything_unknown() {
    let probe = source("http://127.0.0.1:9", false);
    let mut canned = HashMap::new();
    canned.insert(
        probe.queries().scrape_age.clone(),
        Response2::Vector(vec![(vec![], NOW, "300")]),
    );
    let app = Router::new()
        .route("/api/v1/query", get(query_api))
        .with_state(Arc::new(canned));
    let url = serve(app).await;
    let sli = source(&url, false).read(NOW).await;
    for (name, v) in sli.named() {
        let r = v.unknown_reason().unwrap_or_else(|| panic!("{name} known"));
        assert!(r.contains("stale"), "{name}: {r}");
    }
    assert!(sli.memory.is_empty());

    // Nothing listening: every SLI unknown with the client error, no panic.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let sli = source(&format!("http://{closed}"), false).read(NOW).await;
    assert!(sli.named().iter().all(|(_, v)| !v.is_known()));
    assert!(
        sli.ttft_p95_seconds
            .unknown_reason()
            .unwrap()
            .contains("freshness unknown")
    );
}

const T1_A: &str = r#"# TYPE llm_requests_total counter
llm_requests_total{status="success"} 100
llm_ttft_seconds_bucket{le="0.1"} 50
llm_ttft_seconds_bucket{le="0.5"} 90
llm_ttft_seconds_bucket{le="1"} 100
llm_ttft_seconds_bucket{le="+Inf"} 100
llm_tpot_seconds_sum 10
llm_tpot_seconds_count 1000
llm_queue_wait_seconds_sum 1
llm_queue_wait_seconds_count 100
llm_request_duration_seconds_sum 200
llm_request_duration_seconds_count 100
llm_generated_tokens_total 5000
llm_queue_depth 3
llm_running_sequences 4
llm_memory_usage_megabytes{memory_type="vram"} 800
llm_memory_capacity_megabytes{memory_type="vram"} 1000
llm_model_info{model="builtin:tiny",quantization="q8_0",device="cpu"} 1
"#;

// +60 s: 60 successes, 6 errors (a new series) and 4 rejections; TTFT bucket deltas 10/50/68/70.
const T1_B: &str = r#"llm_requests_total{status="success"} 160
llm_requests_total{status="error"} 6
llm_requests_total{status="rejected"} 4
llm_ttft_seconds_bucket{le="0.1"} 60
llm_ttft_seconds_bucket{le="0.5"} 140
llm_ttft_seconds_bucket{le="1"} 168
llm_ttft_seconds_bucket{le="+Inf"} 170
llm_tpot_seconds_sum 13
llm_tpot_seconds_count 1300
llm_queue_wait_seconds_sum 8
llm_queue_wait_seconds_count 170
llm_request_duration_seconds_sum 270
llm_request_duration_seconds_count 170
llm_generated_tokens_total 5600
llm_queue_depth 3
llm_running_sequences 4
llm_memory_usage_megabytes{memory_type="vram"} 800
llm_memory_capacity_megabytes{memory_type="vram"} 1000
llm_model_info{model="builtin:tiny",quantization="q8_0",device="cpu"} 1
"#;

// A second pod that restarted between the scrapes: every counter went down (a reset).
const T2_A: &str = r#"llm_requests_total{status="success"} 500
llm_ttft_seconds_bucket{le="0.1"} 500
llm_ttft_seconds_bucket{le="0.5"} 500
llm_ttft_seconds_bucket{le="1"} 500
llm_ttft_seconds_bucket{le="+Inf"} 500
llm_tpot_seconds_sum 5
llm_tpot_seconds_count 500
llm_queue_wait_seconds_sum 5
llm_queue_wait_seconds_count 500
llm_request_duration_seconds_sum 1000
llm_request_duration_seconds_count 500
llm_generated_tokens_total 50000
llm_queue_depth 0
llm_running_sequences 0
llm_memory_usage_megabytes{memory_type="vram"} 950
llm_memory_capacity_megabytes{memory_type="vram"} 1000
llm_model_info{model="builtin:tiny",quantization="q8_0",device="cpu"} 1
"#;

const T2_B: &str = r#"llm_requests_total{status="success"} 10
llm_ttft_seconds_bucket{le="0.1"} 10
llm_ttft_seconds_bucket{le="0.5"} 10
llm_ttft_seconds_bucket{le="1"} 10
llm_ttft_seconds_bucket{le="+Inf"} 10
llm_tpot_seconds_sum 0.2
llm_tpot_seconds_count 20
llm_queue_wait_seconds_sum 0
llm_queue_wait_seconds_count 10
llm_request_duration_seconds_sum 10
llm_request_duration_seconds_count 10
llm_generated_tokens_total 400
llm_queue_depth 1
llm_running_sequences 2
llm_memory_usage_megabytes{memory_type="vram"} 950
llm_memory_capacity_megabytes{memory_type="vram"} 1000
DCGM_FI_DEV_GPU_UTIL{gpu="0"} 40
"#;

fn scrape(at: f64, pages: &[(&str, &str)]) -> Scrape {
    Scrape {
        at,
        pages: pages
            .iter()
            .map(|(t, text)| {
                (
                    (*t).to_owned(),
                    TargetPage::new(parse_exposition(text).unwrap()),
                )
            })
            .collect::<BTreeMap<_, _>>(),
    }
}

fn close(v: Option<f64>, want: f64) -> bool {
    v.is_some_and(|v| (v - want).abs() < 1e-9)
}

#[test]
fn scrape_deltas_sum_across_targets_with_resets_like_prometheus() {
    let a = scrape(1000.0, &[("pod-1", T1_A), ("pod-2", T2_A)]);
    let b = scrape(1060.0, &[("pod-1", T1_B), ("pod-2", T2_B)]);
    let s = compute_sli(Some(&a), &b, 60, 0.95);
    // Requests: pod-1 +70, pod-2 reset -> +10.
    assert!(
        close(s.request_rate_per_second.value(), 80.0 / 60.0),
        "{s:?}"
    );
    assert!(close(s.error_ratio.value(), 10.0 / 80.0));
    assert!(close(s.internal_error_ratio.value(), 6.0 / 80.0));
    assert!(close(s.rejection_ratio.value(), 4.0 / 80.0));
    // Summed bucket deltas 20/60/78/80: rank 76 in (0.5, 1] -> 0.5 + 0.5 * 16/18.
    assert!(
        close(s.ttft_p95_seconds.value(), 0.5 + 0.5 * 16.0 / 18.0),
        "{s:?}"
    );
    assert!(close(s.tpot_seconds.value(), 3.2 / 320.0));
    assert!(close(s.queue_wait_seconds.value(), 7.0 / 80.0));
    assert!(close(
        s.service_time_seconds.value(),
        80.0 / 80.0 - 7.0 / 80.0
    ));
    assert!(close(s.tokens_per_second.value(), 1000.0 / 60.0));
    assert_eq!(s.queue_depth.value(), Some(4.0));
    assert_eq!(s.running_sequences.value(), Some(6.0));
    // pod-2 dropped llm_model_info in the canned page: one reporting pod.
    assert_eq!(s.reporting_pods.value(), Some(1.0));
    assert_eq!(s.gpu_utilization_ratio.value(), Some(0.4));
    assert_eq!(s.memory_pressure(), Some(("vram", 0.95)));
    let vram = &s.memory[0];
    assert_eq!(vram.usage_megabytes.value(), Some(1750.0));
    assert_eq!(vram.capacity_megabytes.value(), Some(2000.0));

    // One scrape: gauges known, rates unknown (never 0).
    let first = compute_sli(None, &a, 60, 0.95);
    assert_eq!(first.queue_depth.value(), Some(3.0));
    assert!(!first.request_rate_per_second.is_known());
    assert!(!first.ttft_p95_seconds.is_known());

    // No traffic between scrapes: ratios and quantiles unknown, the rate a real 0.
    let idle = compute_sli(
        Some(&a),
        &scrape(1060.0, &[("pod-1", T1_A), ("pod-2", T2_A)]),
        60,
        0.95,
    );
    assert_eq!(idle.request_rate_per_second.value(), Some(0.0));
    assert!(!idle.error_ratio.is_known());
    assert!(!idle.ttft_p95_seconds.is_known());
}

#[tokio::test]
async fn scrape_source_reads_live_pages_over_loopback() {
    let page = Arc::new(Mutex::new(T1_A.to_owned()));
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(p): State<Arc<Mutex<String>>>| async move { p.lock().unwrap().clone() }),
        )
        .route("/broken", get(|| async { "llm_queue_depth{oops 1\n" }))
        .with_state(page.clone());
    let url = serve(app).await;

    let src = ScrapeSource::new(vec![format!("{url}/metrics")], Window::seconds(60), 0.95);
    let first = src.read(1000.0).await;
    assert_eq!(first.queue_depth.value(), Some(3.0));
    assert!(!first.request_rate_per_second.is_known());
    *page.lock().unwrap() = T1_B.to_owned();
    let second = src.read(1060.0).await;
    assert!(close(second.request_rate_per_second.value(), 70.0 / 60.0));
    assert!(
        close(second.ttft_p95_seconds.value(), 0.5 + 0.5 * 16.5 / 18.0),
        "{second:?}"
    );
    assert_eq!(second.memory_pressure(), Some(("vram", 0.8)));

    // A target that fails to parse or answer makes the snapshot unknown and names the target.
    src.set_targets(vec![format!("{url}/metrics"), format!("{url}/broken")]);
    let bad = src.read(1075.0).await;
    assert!(bad.named().iter().all(|(_, v)| !v.is_known()));
    assert!(
        bad.queue_depth
            .unknown_reason()
            .unwrap()
            .contains("/broken")
    );
    src.set_targets(vec![format!("{url}/missing")]);
    let missing = src.read(1090.0).await;
    assert!(
        missing
            .queue_depth
            .unknown_reason()
            .unwrap()
            .contains("404")
    );
}

#[test]
fn scrape_memory_ratio_is_the_peak_within_the_window() {
    let page = |used: u32| {
        format!(
            "llm_memory_usage_megabytes{{memory_type=\"kv_cache\"}} {used}\nllm_memory_capacity_megabytes{{memory_type=\"kv_cache\"}} 100\n"
        )
    };
    let (full, half, low) = (page(90), page(50), page(20));
    let earlier = [
        scrape(1000.0, &[("pod-1", &full)]),
        scrape(1005.0, &[("pod-1", &half)]),
    ];
    let mut s = compute_sli(None, &scrape(1010.0, &[("pod-1", &low)]), 60, 0.95);
    assert_eq!(s.memory_pressure(), Some(("kv_cache", 0.2)));
    peak_memory_ratio(&mut s.memory, earlier.iter());
    // The KV cache was 90 % full five seconds ago: that is the pressure, stamped now.
    assert_eq!(s.memory_pressure(), Some(("kv_cache", 0.9)));
    assert!(matches!(
        s.memory[0].usage_ratio,
        sluice_slo::SliValue::Known { at, .. } if at == 1010.0
    ));
    // Usage itself stays the current reading.
    assert_eq!(s.memory[0].usage_megabytes.value(), Some(20.0));
}

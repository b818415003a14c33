//! Every query as an exact string (pyrra-style), so a change to a builder shows in review.

use super::*;

fn sel() -> Selector {
    Selector::new()
        .eq("namespace", "prod")
        .unwrap()
        .eq("service", "chat")
        .unwrap()
}

const W: Window = Window(60);

#[test]
fn deployment_pods_anchor_the_pod_name() {
    assert_eq!(
        Selector::deployment_pods(Some("demo"), "tiny.v2")
            .unwrap()
            .render(),
        r#"namespace="demo",pod=~"tiny\\.v2-[a-z0-9]+-[a-z0-9]+""#
    );
    assert_eq!(
        Selector::deployment_pods(None, "chat").unwrap().render(),
        r#"pod=~"chat-[a-z0-9]+-[a-z0-9]+""#
    );
}

#[test]
fn ttft_p95_matches_the_seed_query() {
    assert_eq!(
        ttft_quantile(0.95, &sel(), W),
        r#"histogram_quantile(0.95, sum by (le) (rate(llm_ttft_seconds_bucket{namespace="prod",service="chat"}[60s])))"#
    );
}

#[test]
fn tpot_is_rate_of_sum_over_rate_of_count() {
    assert_eq!(
        tpot_mean(&sel(), W),
        r#"sum(rate(llm_tpot_seconds_sum{namespace="prod",service="chat"}[60s])) / sum(rate(llm_tpot_seconds_count{namespace="prod",service="chat"}[60s]))"#
    );
}

#[test]
fn memory_queries() {
    assert_eq!(
        memory_usage(&sel()),
        r#"sum by (memory_type) (llm_memory_usage_megabytes{namespace="prod",service="chat"})"#
    );
    assert_eq!(
        memory_capacity(&sel()),
        r#"sum by (memory_type) (llm_memory_capacity_megabytes{namespace="prod",service="chat"})"#
    );
    assert_eq!(
        memory_ratio(&sel(), W),
        r#"max by (memory_type) (max_over_time(llm_memory_usage_megabytes{namespace="prod",service="chat"}[60s]) / llm_memory_capacity_megabytes{namespace="prod",service="chat"})"#
    );
}

#[test]
fn rates_and_ratios() {
    assert_eq!(
        request_rate(&sel(), W),
        r#"sum(rate(llm_requests_total{namespace="prod",service="chat"}[60s]))"#
    );
    assert_eq!(
        error_ratio(&sel(), W),
        r#"sum(rate(llm_requests_total{namespace="prod",service="chat",status=~"error|timeout|rejected"}[60s])) / sum(rate(llm_requests_total{namespace="prod",service="chat"}[60s]))"#
    );
    assert_eq!(
        requests_by_status(&sel(), W),
        r#"sum by (status) (rate(llm_requests_total{namespace="prod",service="chat"}[60s]))"#
    );
    assert_eq!(
        errors_by_reason(&sel(), W),
        r#"sum by (reason) (rate(llm_errors_total{namespace="prod",service="chat"}[60s]))"#
    );
    assert_eq!(
        tokens_per_second(&sel(), W),
        r#"sum(rate(llm_generated_tokens_total{namespace="prod",service="chat"}[60s]))"#
    );
}

#[test]
fn gauges() {
    assert_eq!(
        queue_depth(&sel()),
        r#"sum(llm_queue_depth{namespace="prod",service="chat"})"#
    );
    assert_eq!(
        in_flight(&sel()),
        r#"sum(llm_in_flight_requests{namespace="prod",service="chat"})"#
    );
    assert_eq!(
        running_sequences(&sel()),
        r#"sum(llm_running_sequences{namespace="prod",service="chat"})"#
    );
    assert_eq!(
        reporting_pods(&sel()),
        r#"count(llm_model_info{namespace="prod",service="chat"})"#
    );
    assert_eq!(
        scrape_age(&sel()),
        r#"time() - min(timestamp(llm_model_info{namespace="prod",service="chat"}))"#
    );
}

#[test]
fn queue_wait_and_service_time() {
    assert_eq!(
        queue_wait_mean(&sel(), W),
        r#"sum(rate(llm_queue_wait_seconds_sum{namespace="prod",service="chat"}[60s])) / sum(rate(llm_queue_wait_seconds_count{namespace="prod",service="chat"}[60s]))"#
    );
    assert_eq!(
        service_time_mean(&Selector::new(), W),
        "clamp_min(sum(rate(llm_request_duration_seconds_sum[60s])) / sum(rate(llm_request_duration_seconds_count[60s])) - sum(rate(llm_queue_wait_seconds_sum[60s])) / sum(rate(llm_queue_wait_seconds_count[60s])), 0)"
    );
}

#[test]
fn gpu_utilisation_uses_its_own_selector() {
    let gpu = Selector::new()
        .eq("namespace", "prod")
        .unwrap()
        .one_of("pod", ["chat-0", "chat-1"])
        .unwrap();
    assert_eq!(
        gpu_utilization(&gpu),
        concat!(
            r#"avg(DCGM_FI_DEV_GPU_UTIL{namespace="prod",pod=~"chat-0|chat-1",exported_pod=""} or "#,
            r#"label_replace(label_replace(label_replace("#,
            r#"DCGM_FI_DEV_GPU_UTIL{exported_namespace="prod",exported_pod=~"chat-0|chat-1",exported_pod!=""}, "#,
            r#""namespace", "$1", "exported_namespace", "(.+)"), "pod", "$1", "exported_pod", "(.+)"), "#,
            r#""container", "$1", "exported_container", "(.+)")) / 100"#
        )
    );
    // A selector on other labels only has nothing to rename.
    let node = Selector::new().eq("Hostname", "gpu-node-1").unwrap();
    assert_eq!(
        gpu_utilization(&node),
        r#"avg(DCGM_FI_DEV_GPU_UTIL{Hostname="gpu-node-1"}) / 100"#
    );
}

#[test]
fn empty_selector_with_extra_matcher() {
    assert_eq!(
        status_ratio(
            &[RequestStatus::Rejected],
            &Selector::new(),
            Window::seconds(30)
        ),
        r#"sum(rate(llm_requests_total{status=~"rejected"}[30s])) / sum(rate(llm_requests_total[30s]))"#
    );
}

#[test]
fn values_are_escaped() {
    let s = Selector::new()
        .eq("job", "a\"b\\c\nd")
        .unwrap()
        .one_of("instance", ["10.0.0.1:8000", "x|y"])
        .unwrap();
    assert_eq!(
        s.render(),
        r#"job="a\"b\\c\nd",instance=~"10\\.0\\.0\\.1:8000|x\\|y""#
    );
    assert_eq!(
        s.to_string(),
        r#"{job="a\"b\\c\nd",instance=~"10\\.0\\.0\\.1:8000|x\\|y"}"#
    );
}

#[test]
fn bad_label_names_and_empty_lists_are_refused() {
    assert_eq!(
        Selector::new().eq("app.kubernetes.io/name", "x"),
        Err(SelectorError::InvalidLabelName(
            "app.kubernetes.io/name".into()
        ))
    );
    assert!(Selector::new().eq("1abc", "x").is_err());
    assert!(Selector::new().eq("", "x").is_err());
    assert_eq!(
        Selector::new().one_of::<_, &str>("pod", []),
        Err(SelectorError::EmptyValues("pod".into()))
    );
}

#[test]
fn window_renders_seconds_and_is_never_zero() {
    assert_eq!(Window::seconds(0).to_string(), "1s");
    assert_eq!(Window::seconds(300).to_string(), "300s");
}

/// Fleet queries: the same formulas, every aggregation kept per namespace and service (the
/// Deployment name cut from the pod name), so one query answers for all services.
#[test]
fn per_service_queries_keep_namespace_and_service() {
    let fleet = Selector::new().per_service();
    let relabel = r#""sluice_service", "$1", "pod", "(.+)-[a-z0-9]+-[a-z0-9]+""#;
    assert_eq!(
        ttft_quantile(0.95, &fleet, W),
        format!(
            r#"histogram_quantile(0.95, sum by (namespace, sluice_service, le) (label_replace(rate(llm_ttft_seconds_bucket[60s]), {relabel})))"#
        )
    );
    assert_eq!(
        scrape_age(&fleet),
        format!(
            r#"time() - min by (namespace, sluice_service) (label_replace(timestamp(llm_model_info), {relabel}))"#
        )
    );
    assert_eq!(
        memory_ratio(&fleet, W),
        format!(
            r#"max by (namespace, sluice_service, memory_type) (label_replace(max_over_time(llm_memory_usage_megabytes[60s]) / llm_memory_capacity_megabytes, {relabel}))"#
        )
    );
    assert_eq!(
        tpot_mean(&fleet, W),
        format!(
            r#"sum by (namespace, sluice_service) (label_replace(rate(llm_tpot_seconds_sum[60s]), {relabel})) / sum by (namespace, sluice_service) (label_replace(rate(llm_tpot_seconds_count[60s]), {relabel}))"#
        )
    );
    // A scope still applies inside.
    let scoped = Selector::new()
        .eq("namespace", "prod")
        .unwrap()
        .per_service();
    assert_eq!(
        queue_depth(&scoped),
        format!(
            r#"sum by (namespace, sluice_service) (label_replace(llm_queue_depth{{namespace="prod"}}, {relabel}))"#
        )
    );
}

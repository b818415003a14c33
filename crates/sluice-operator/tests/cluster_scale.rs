//! Cluster tier, scale: many InferenceServices (1,000 by default, `SLUICE_SCALE_SERVICES`) in
//! 10 namespaces against one operator with the chart's settings and its SLO loop on (a real
//! Prometheus, which has no samples for kwok's pods). A benchmark, not a timed assertion: it
//! asserts that everything converges and prints what it measured (time to converge, the
//! operator's peak RSS, its API requests, its Prometheus query rate); `docs/benchmarks.md`
//! records a run. Its own control plane.
//!
//! ```sh
//! cargo test -p sluice-operator --test cluster_scale -- --ignored --nocapture
//! ```

mod cluster_support;
use cluster_support as cluster;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cluster_support::{AuditCursor, Chart, Operator, admin_client, eventually, kubectl_apply};
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};
use sluice_api::InferenceService;
use sluice_testkit::{Cluster, Prometheus};

const NAMESPACES: usize = 10;

fn services() -> usize {
    std::env::var("SLUICE_SCALE_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// The operator's peak resident set (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Counts InferenceServices whose status has caught up with their generation, and those of
/// them that are Ready.
async fn converged(api: &Api<InferenceService>) -> (usize, usize) {
    let list = match api.list(&ListParams::default()).await {
        Ok(l) => l,
        Err(_) => return (0, 0),
    };
    let mut observed = 0;
    let mut ready = 0;
    for isvc in &list.items {
        let Some(st) = isvc.status.as_ref() else {
            continue;
        };
        if st.observed_generation != isvc.metadata.generation {
            continue;
        }
        observed += 1;
        if st
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
        {
            ready += 1;
        }
    }
    (observed, ready)
}

#[tokio::test]
#[ignore = "cluster tier: needs the control plane from scripts/build-control-plane.sh"]
async fn cluster_a_thousand_services_converge() {
    let n = services();
    let c = Cluster::start();
    let prometheus = Prometheus::start(&[]);
    let interval = Duration::from_secs(15);
    let chart = Chart::install(
        &c,
        "sluice",
        "sluice-system",
        &[
            &format!("slo.prometheusUrl={}", prometheus.url()),
            "slo.interval=15s",
        ],
    );
    let pod = chart.operator_pods(&c, 1).remove(0);
    let mut operator = Operator::start(&c, &chart, &pod, &[]);
    let client = admin_client(&c).await;
    let all: Api<InferenceService> = Api::all(client.clone());

    let base: Value = serde_yaml::from_str(
        &std::fs::read_to_string(cluster::repo().join("examples/tiny-cpu.yaml")).unwrap(),
    )
    .unwrap();
    let audit = AuditCursor::now(&c);
    let queries_before = cluster::prometheus_queries(&prometheus);
    let started = Instant::now();
    for ns in 0..NAMESPACES {
        let ns_name = format!("scale-{ns}");
        cluster::namespace(&c, &ns_name);
        let items: Vec<Value> = (0..n)
            .filter(|i| i % NAMESPACES == ns)
            .map(|i| {
                let mut v = base.clone();
                v["metadata"]["name"] = json!(format!("svc-{i}"));
                v
            })
            .collect();
        let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
        let (ok, out) = kubectl_apply(&c, &ns_name, &list.to_string());
        assert!(ok, "{out}");
    }
    let applied = started.elapsed();

    let observed_at = std::cell::Cell::new(None);
    let ready_at = eventually(
        &format!("{n} services Ready at their generation"),
        Duration::from_secs(1200),
        || {
            let all = all.clone();
            let observed_at = &observed_at;
            async move {
                let (observed, ready) = converged(&all).await;
                if observed == n && observed_at.get().is_none() {
                    observed_at.set(Some(started.elapsed()));
                }
                (ready == n).then(|| started.elapsed())
            }
        },
    )
    .await;
    let reconciled_at = observed_at.get().unwrap_or(ready_at);

    // A few SLO intervals at rest, with every service evaluated each interval.
    let rest_start = Instant::now();
    let queries_at_rest = cluster::prometheus_queries(&prometheus);
    tokio::time::sleep(interval * 3).await;
    let query_rate = (cluster::prometheus_queries(&prometheus) - queries_at_rest)
        / rest_start.elapsed().as_secs_f64();
    let rss = peak_rss_mib(operator.pid());
    assert!(operator.running(), "{}", operator.log_tail());
    // Prometheus load does not grow with the number of services: one set of queries per
    // interval serves them all (a count, not a timing). Three intervals at rest allow at most
    // four reads of 17 queries (one more as margin); one set per service would be 17 x n per
    // interval.
    let at_rest = cluster::prometheus_queries(&prometheus) - queries_at_rest;
    assert!(
        at_rest <= 5.0 * 17.0,
        "{at_rest} Prometheus queries in 3 SLO intervals for {n} services: they grow with the services"
    );

    let events = audit.by(&chart.user());
    let mut by_verb: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        let key = format!(
            "{} {}{}",
            e.verb,
            e.resource,
            e.subresource
                .as_deref()
                .map(|s| format!("/{s}"))
                .unwrap_or_default()
        );
        *by_verb.entry(key).or_default() += 1;
    }
    let report = format!(
        "services: {n} in {NAMESPACES} namespaces\n\
         kubectl apply of all: {:.1} s\n\
         all reconciled (status at generation): {:.1} s after the first apply\n\
         all Ready (kwok pods Ready, status written): {:.1} s\n\
         operator peak RSS (VmHWM): {rss:.1} MiB\n\
         operator API requests until the end: {} ({by_verb:?})\n\
         Prometheus queries: {:.0} until convergence, {query_rate:.1}/s at rest (SLO interval {interval:?})\n",
        applied.as_secs_f64(),
        reconciled_at.as_secs_f64(),
        ready_at.as_secs_f64(),
        events.len(),
        queries_at_rest - queries_before,
    );
    eprintln!("--- scale report ---\n{report}");
    if let Ok(path) = std::env::var("SLUICE_SCALE_REPORT") {
        std::fs::write(path, &report).unwrap();
    }
}

//! Cluster tier: what the operator writes when nothing happens (nothing, but its lease), and
//! which replica writes at all (only the leader), against a real control plane with an audit
//! log, started once for this test binary. The tests take turns.
//!
//! ```sh
//! cargo test -p sluice-operator --test cluster_quiet -- --ignored
//! ```

mod cluster_support;
use cluster_support as cluster;

use std::time::{Duration, Instant};

use cluster_support::{
    AuditCursor, Chart, Operator, admin_client, eventually, kubectl_apply, ready, tiny,
};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use sluice_testkit::Cluster;

/// Tests that run an operator hold this, one at a time.
static OPERATORS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn cluster() -> &'static Cluster {
    cluster::shared_with_crd()
}

/// Writes by `user` since `cursor`, except renewals of the leader Lease: a leader must renew
/// its lease (every lease duration minus the renew grace, 10 s with the chart's 15 s), or
/// another replica takes over; that is the one write a settled operator makes on purpose.
fn writes(cursor: &AuditCursor, user: &str) -> (Vec<String>, usize) {
    let all: Vec<_> = cursor
        .by(user)
        .into_iter()
        .filter(|e| e.is_write())
        .collect();
    let renewals = all.iter().filter(|e| e.resource == "leases").count();
    let others = all
        .iter()
        .filter(|e| e.resource != "leases")
        .map(ToString::to_string)
        .collect();
    (others, renewals)
}

/// Waits until `user` has made no write (lease renewals aside) for `quiet`, up to `limit`;
/// panics listing the writes of the last attempt if it never goes quiet.
async fn settle(c: &Cluster, user: &str, quiet: Duration, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let cursor = AuditCursor::now(c);
        tokio::time::sleep(quiet).await;
        let (writes, _) = writes(&cursor, user);
        if writes.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{user} never went {quiet:?} without writing; last writes:\n{}",
            writes.join("\n")
        );
    }
}

#[tokio::test]
#[ignore = "cluster tier: needs the control plane from scripts/build-control-plane.sh"]
async fn cluster_settled_services_cost_zero_writes() {
    let _turn = OPERATORS.lock().await;
    let c = cluster();
    let client = admin_client(c).await;
    // The SLO loop runs against a real Prometheus (which has no samples for these kwok pods).
    let prometheus = sluice_testkit::Prometheus::start(&[]);
    let apps = "apps-rest";
    cluster::namespace(c, apps);
    let interval = Duration::from_secs(2);
    let chart = Chart::install(
        c,
        "rest",
        "rest-system",
        &[
            &format!("watchNamespace={apps}"),
            &format!("slo.prometheusUrl={}", prometheus.url()),
            "slo.interval=2s",
        ],
    );
    let pod = chart.operator_pods(c, 1).remove(0);
    let _operator = Operator::start(c, &chart, &pod, &[]);
    let names: Vec<String> = (0..5).map(|i| format!("svc-{i}")).collect();
    for n in &names {
        let (ok, out) = kubectl_apply(c, apps, &tiny(n).to_string());
        assert!(ok, "{out}");
    }
    for n in &names {
        let isvc = ready(&client, apps, n).await;
        // The SLO loop has evaluated it (and found no samples).
        assert!(
            isvc.status.as_ref().unwrap().slo.is_some(),
            "{n} has no SLO status"
        );
    }

    settle(c, &chart.user(), interval * 2, Duration::from_secs(90)).await;
    let window = interval * 10;
    let cursor = AuditCursor::now(c);
    let queries_before = cluster::prometheus_queries(&prometheus);
    tokio::time::sleep(window).await;
    let all = cursor.by(&chart.user());
    let requests = all.len();
    // Nor reads: the children come from the controller's watch caches.
    let child_reads: Vec<String> = all
        .iter()
        .filter(|e| {
            e.verb == "get"
                && matches!(
                    e.resource.as_str(),
                    "deployments" | "services" | "poddisruptionbudgets" | "networkpolicies"
                )
        })
        .map(ToString::to_string)
        .collect();
    assert!(
        child_reads.is_empty(),
        "{} GETs of children at rest:\n{}",
        child_reads.len(),
        child_reads[..child_reads.len().min(10)].join("\n")
    );
    let (writes, renewals) = writes(&cursor, &chart.user());
    assert!(
        writes.is_empty(),
        "{} writes at rest in {window:?} ({} services, SLO interval {interval:?}):\n{}",
        writes.len(),
        names.len(),
        writes.join("\n")
    );
    // The loop kept evaluating all along: it read Prometheus every interval.
    let queries = cluster::prometheus_queries(&prometheus) - queries_before;
    assert!(
        queries >= names.len() as f64 * 5.0,
        "only {queries} Prometheus queries in {window:?}"
    );
    eprintln!(
        "at rest for {window:?}: {} services, {requests} requests by the operator, 0 writes \
         besides {renewals} lease renewals, {queries} Prometheus queries",
        names.len()
    );
}

/// Waits until `who` holds the lease.
async fn leads(leases: &Api<Lease>, lease_name: &str, who: &str, timeout: Duration) {
    eventually(&format!("{who} to lead"), timeout, || async move {
        (holder(leases, lease_name).await? == who).then_some(())
    })
    .await;
}

/// The Lease's holder, if any.
async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    leases
        .get(name)
        .await
        .ok()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

#[tokio::test]
#[ignore = "cluster tier: needs the control plane from scripts/build-control-plane.sh"]
async fn cluster_only_the_leader_writes_and_a_standby_takes_over() {
    let _turn = OPERATORS.lock().await;
    let c = cluster();
    let client = admin_client(c).await;
    let apps = "apps-leader";
    cluster::namespace(c, apps);
    // Two replicas with the chart's lease settings (15 s).
    let chart = Chart::install(
        c,
        "le",
        "le-system",
        &["replicaCount=2", &format!("watchNamespace={apps}")],
    );
    let lease_name = chart
        .args
        .iter()
        .find_map(|a| a.strip_prefix("--lease-name="))
        .expect("the chart names the lease")
        .to_owned();
    let lease_duration: u64 = chart
        .args
        .iter()
        .find_map(|a| a.strip_prefix("--lease-duration-seconds="))
        .expect("the chart sets the lease duration")
        .parse()
        .unwrap();
    let leases: Api<Lease> = Api::namespaced(client.clone(), &chart.namespace);
    let pods = chart.operator_pods(c, 2);
    let (a, b) = (pods[0].clone(), pods[1].clone());

    let audit = AuditCursor::now(c);
    let mut first = Operator::start(c, &chart, &a, &[]);
    leads(&leases, &lease_name, &a, Duration::from_secs(60)).await;
    let mut second = Operator::start(c, &chart, &b, &[]);
    let (ok, out) = kubectl_apply(c, apps, &tiny("one").to_string());
    assert!(ok, "{out}");
    ready(&client, apps, "one").await;
    // Give the standby a full lease period to misbehave.
    tokio::time::sleep(Duration::from_secs(lease_duration)).await;
    let writes: Vec<_> = audit
        .by(&chart.user())
        .into_iter()
        .filter(|e| e.is_write())
        .collect();
    assert!(
        writes.iter().any(|e| e.resource == "deployments"),
        "the leader applied nothing"
    );
    let by_standby: Vec<String> = writes
        .iter()
        .filter(|e| e.pod.as_deref() != Some(a.as_str()))
        .map(ToString::to_string)
        .collect();
    assert!(
        by_standby.is_empty(),
        "the standby wrote:\n{}",
        by_standby.join("\n")
    );

    // kill -9 the leader: the standby takes over once the lease expires, and converges.
    first.signal("KILL");
    let killed = Instant::now();
    leads(
        &leases,
        &lease_name,
        &b,
        Duration::from_secs(lease_duration * 3),
    )
    .await;
    let takeover = killed.elapsed();
    let (ok, out) = kubectl_apply(c, apps, &tiny("two").to_string());
    assert!(ok, "{out}");
    ready(&client, apps, "two").await;
    eprintln!(
        "after kill -9 of the leader, the standby led within {takeover:?} (lease {lease_duration} s)"
    );

    // SIGTERM the new leader: it releases the lease on its way out (no holder, at once), and
    // exits 0; the restarted first replica then leads.
    first = Operator::start(c, &chart, &a, &[]);
    second.signal("TERM");
    let status = second.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}:\n{}", second.log_tail());
    let lease = leases.get(&lease_name).await.unwrap();
    let h = lease
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    assert!(
        h.is_empty() || h == a,
        "the lease still names {h:?} after a clean shutdown"
    );
    leads(
        &leases,
        &lease_name,
        &a,
        Duration::from_secs(lease_duration * 3),
    )
    .await;
    let (ok, out) = kubectl_apply(c, apps, &tiny("three").to_string());
    assert!(ok, "{out}");
    ready(&client, apps, "three").await;
    assert!(first.running(), "{}", first.log_tail());
}

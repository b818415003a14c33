//! Wiring of `sluice-operator run`: client, metrics/health server, discovery of the Prometheus
//! Operator, leader election, and the controller with its owned-object watches.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::ListParams;
use kube::core::{DeserializeGuard, DynamicObject};
use kube::discovery::Discovery;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use kube::runtime::utils::{Backoff, ResetTimerBackoff};
use kube::runtime::watcher::{self, watcher};
use kube::{Api, Client};
use sluice_api::InferenceService;
use tracing::{error, info, warn};

use crate::admin_key::AdminKeys;
use crate::build::{BuildOptions, Monitoring, prometheus_rule_resource, service_monitor_resource};
use crate::cli::RunArgs;
use crate::http::{self, Health};
use crate::leader::{self, LeaseConfig};
use crate::metrics::Metrics;
use crate::reconcile::{self, ChildCache, Context};
use crate::slo::{HttpSettingsClient, PrometheusFactory, SloLoop};

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn monitoring(client: &Client, args: &RunArgs) -> anyhow::Result<Monitoring> {
    let labels: BTreeMap<String, String> = args.service_monitor_labels.iter().cloned().collect();
    // (ServiceMonitor, PrometheusRule): both come with the Prometheus Operator's CRDs; `auto`
    // checks each, since some installs (and other operators) serve only the first.
    let (found, alert_rules) = match args.monitoring.as_str() {
        "annotations" => (false, false),
        "service-monitor" => (true, true),
        _ => {
            let discovery = Discovery::new(client.clone())
                .filter(&["monitoring.coreos.com"])
                .run()
                .await
                .context("failed to discover API groups")?;
            let group = discovery.get("monitoring.coreos.com");
            let has = |kind: &str| group.and_then(|g| g.recommended_kind(kind)).is_some();
            (has("ServiceMonitor"), has("PrometheusRule"))
        }
    };
    let alert_rules = found && alert_rules && args.alert_rules;
    info!(
        service_monitor = found,
        alert_rules, "monitoring mode resolved"
    );
    Ok(if found {
        Monitoring::ServiceMonitor {
            labels,
            alert_rules,
        }
    } else {
        Monitoring::Annotations
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            error!(error = %e, "failed to listen for ctrl-c");
            futures::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                error!(error = %e, "failed to listen for SIGTERM");
                futures::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = futures::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Backoff between watch restarts: 0.5 s doubling to at most 5 s. One backoff is shared by every
/// watch of the controller, and kube's default (up to 30 s, reset after 2 min without errors)
/// meant that after an apiserver restart — when every watch gets `410 Expired` once and must
/// relist — the operator sat idle for a minute or more. A relist of a few watches every 5 s at
/// worst is no load an apiserver notices.
#[derive(Debug, Default)]
struct WatchBackoff {
    next: Option<Duration>,
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next.unwrap_or(Duration::from_millis(500));
        self.next = Some((delay * 2).min(Duration::from_secs(5)));
        Some(delay)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = None;
    }
}

/// Drops `metadata.managedFields` from a cached child: the reconcile never reads them, and they
/// are a large part of a small object (1,000 services: 146 MiB peak RSS with them, 104 without;
/// docs/benchmarks.md).
fn forget_managed_fields<K: kube::Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// Runs the operator until SIGTERM (exit 0) or until it loses the lease (error, so the process
/// exits non-zero and is restarted as a follower).
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("failed to create a Kubernetes client (in-cluster config or KUBECONFIG)")?;
    let metrics = Metrics::new().context("failed to register metrics")?;
    let health = Arc::new(Health::default());
    let server = tokio::spawn(http::serve(
        args.metrics_addr,
        metrics.clone(),
        health.clone(),
    ));

    let ns = args.namespace.as_deref();
    let isvcs: Api<InferenceService> = api(&client, ns);
    isvcs
        .list(&ListParams::default().limit(1))
        .await
        .context("failed to list InferenceServices; is the CRD installed (kubectl apply -f crds/) and RBAC granted?")?;
    let monitoring = monitoring(&client, &args).await?;
    let admin_keys = args
        .admin_key_seed_file
        .as_deref()
        .map(AdminKeys::from_file)
        .transpose()?
        .map(Arc::new);
    if admin_keys.is_none() {
        warn!("no --admin-key-seed-file: servers' admin APIs take their inference API key");
    }
    let build = BuildOptions {
        server_image: args.server_image.clone(),
        server_cuda_image: args.server_cuda_image.clone(),
        monitoring: monitoring.clone(),
        network_policy_for: args.network_policy.then(|| args.lease_namespace.clone()),
        inference_namespaces: args.network_policy_inference_namespaces.clone(),
        admin_key_id: admin_keys.as_ref().map(|k| k.id()),
        pod_otlp_endpoint: args.pod_otlp_endpoint.clone(),
    };
    health.set_ready(true);

    let leadership = if args.leader_election {
        let cfg = LeaseConfig {
            name: args.lease_name.clone(),
            namespace: args.lease_namespace.clone(),
            identity: args.identity.clone(),
            duration_secs: args.lease_duration_seconds,
        };
        tokio::select! {
            l = leader::acquire(client.clone(), &cfg) => Some(l?),
            () = shutdown_signal() => return Ok(()),
        }
    } else {
        None
    };
    metrics.leader.set(1);

    let reporter = Reporter {
        controller: "sluice-operator".into(),
        instance: Some(args.identity.clone()),
    };
    let connection = args.prometheus_connection.connection();
    // Fail at start, not at the first tick, on a CA bundle or password file that cannot be used.
    connection
        .client(Duration::from_secs(10))
        .context("failed to configure the Prometheus connection")?;
    if let Some(path) = &connection.bearer_token_file {
        connection
            .authorization()
            .with_context(|| format!("failed to read {}", path.display()))?;
    }
    let slo = SloLoop::new(
        args.slo_interval,
        args.prometheus_url.clone(),
        Arc::new(PrometheusFactory { connection }),
        Arc::new(HttpSettingsClient::default()),
    )
    .with_allowed_prometheus_urls(args.allowed_prometheus_urls.clone());
    info!(interval = ?args.slo_interval, prometheus = args.prometheus_url.as_deref().unwrap_or("<per InferenceService>"), "SLO loop configured");
    // The owned-children watches also fill caches the observe stage reads instead of GETs.
    let (deployment_cache, deployments) = reflector::store::<Deployment>();
    let (service_cache, services) = reflector::store::<Service>();
    let (pdb_cache, pdbs) = reflector::store::<PodDisruptionBudget>();
    let (settings_cache, settings) = reflector::store::<ConfigMap>();
    let (policy_cache, policies) = reflector::store::<NetworkPolicy>();
    let policy_cache = build.network_policy_for.is_some().then_some(policy_cache);
    let mut ctx = Context::new(
        client.clone(),
        build,
        Recorder::new(client.clone(), reporter),
        metrics.clone(),
    );
    if let Some(keys) = admin_keys {
        ctx = ctx.with_admin_keys(keys);
    }
    let ctx = Arc::new(
        ctx.with_slo(slo)
            .with_child_cache(ChildCache {
                deployments: deployment_cache,
                services: service_cache,
                pdbs: pdb_cache,
                settings: settings_cache,
                network_policies: policy_cache.clone(),
            })
            .with_allowed_server_images(args.allowed_server_images.clone()),
    );

    let lost = Arc::new(AtomicBool::new(false));
    let lost_flag = lost.clone();
    let lease_lost = leadership.as_ref().map(|l| l.lost());
    let stop = async move {
        match lease_lost {
            Some(lease_lost) => tokio::select! {
                () = shutdown_signal() => {},
                () = lease_lost => { lost_flag.store(true, Ordering::SeqCst); },
            },
            None => shutdown_signal().await,
        }
    };

    let guarded: Api<DeserializeGuard<InferenceService>> = api(&client, ns);
    let wc = watcher::Config::default().any_semantic();
    // Only cache the objects this operator made, not every Deployment in the cluster.
    let owned = watcher::Config::default()
        .any_semantic()
        .labels("app.kubernetes.io/managed-by=sluice-operator");
    let mut controller = Controller::new(guarded, wc)
        .owns_stream(
            watcher(api::<Deployment>(&client, ns), owned.clone())
                .modify(forget_managed_fields)
                .reflect(deployments)
                .touched_objects(),
        )
        .owns_stream(
            watcher(api::<Service>(&client, ns), owned.clone())
                .modify(forget_managed_fields)
                .reflect(services)
                .touched_objects(),
        )
        .owns_stream(
            watcher(api::<PodDisruptionBudget>(&client, ns), owned.clone())
                .modify(forget_managed_fields)
                .reflect(pdbs)
                .touched_objects(),
        )
        .owns_stream(
            watcher(api::<ConfigMap>(&client, ns), owned.clone())
                .modify(forget_managed_fields)
                .reflect(settings)
                .touched_objects(),
        )
        .with_config(controller::Config::default().concurrency(args.concurrency))
        .trigger_backoff(ResetTimerBackoff::new(
            WatchBackoff::default(),
            Duration::from_secs(30),
        ));
    if policy_cache.is_some() {
        controller = controller.owns_stream(
            watcher(api::<NetworkPolicy>(&client, ns), owned.clone())
                .modify(forget_managed_fields)
                .reflect(policies)
                .touched_objects(),
        );
    }
    if matches!(monitoring, Monitoring::ServiceMonitor { .. }) {
        let ar = service_monitor_resource();
        let sm: Api<DynamicObject> = match ns {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        controller = controller.owns_with(sm, ar, owned.clone());
    }
    if matches!(
        monitoring,
        Monitoring::ServiceMonitor {
            alert_rules: true,
            ..
        }
    ) {
        let ar = prometheus_rule_resource();
        let rules: Api<DynamicObject> = match ns {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        controller = controller.owns_with(rules, ar, owned);
    }
    info!(namespace = ns.unwrap_or("<all>"), "starting controller");
    controller
        .graceful_shutdown_on(stop)
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                // Reconcile errors are logged by the error policy; these are watch/queue errors.
                if !matches!(e, controller::Error::ReconcilerFailed(..)) {
                    warn!(error = %e, "controller error");
                }
            }
        })
        .await;
    metrics.leader.set(0);
    // Only after the controller has drained, so two leaders never reconcile at once.
    if let Some(l) = leadership {
        l.release().await;
    }
    server.abort();
    if lost.load(Ordering::SeqCst) {
        anyhow::bail!("lost the leader lease; exiting so a restart rejoins as a follower");
    }
    info!("shut down");
    Ok(())
}

/// Installs logging (`RUST_LOG` filters; default `info`) and, when `OTEL_EXPORTER_OTLP_ENDPOINT`
/// is set, exports the reconcile and SLO spans over OTLP. Keep the guard until exit: dropping it
/// flushes the last spans.
pub fn init_tracing(json: bool) -> sluice_telemetry::TelemetryGuard {
    sluice_telemetry::init("sluice-operator", json)
}

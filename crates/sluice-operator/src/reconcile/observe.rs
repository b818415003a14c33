//! Observe: what exists now — the owned children, the Deployment's rollout and, when a tick is
//! due, the service's SLIs. The only reads of a reconcile; nothing is decided here.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::core::DynamicObject;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource};
use sluice_api::InferenceService;
use sluice_contract::AppliedSettings;

use crate::build::{
    self, BuildOptions, Monitoring, prometheus_rule_resource, service_monitor_resource,
};
use crate::effective::{self, Running};
use crate::error::FetchError;
use crate::slo::SloLoop;
use crate::slo::tick::{self, Observation};
use crate::status::Rollout;
use crate::validate::Validated;

/// The controller's watch caches of the children it owns (Deployments, Services and
/// PodDisruptionBudgets carrying the operator's `managed-by` label).
///
/// A cache can lag the apiserver by a watch event, so it only ever saves work: the apply stage
/// writes nothing on a cached copy alone. When the cached copy differs from what is wanted (or
/// is missing), it reads the object afresh and decides on that (see `crate::apply`). A settled
/// service therefore costs no request at all, where it cost four GETs per reconcile.
#[derive(Clone)]
pub struct ChildCache {
    pub deployments: Store<Deployment>,
    pub services: Store<Service>,
    pub pdbs: Store<PodDisruptionBudget>,
    /// The settings ConfigMaps.
    pub settings: Store<ConfigMap>,
    /// Only when the operator gives services a NetworkPolicy.
    pub network_policies: Option<Store<NetworkPolicy>>,
}

fn cached<K>(store: &Store<K>, ns: &str, name: &str) -> Option<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .get(&ObjectRef::new(name).within(ns))
        .map(|k| (*k).clone())
}

/// What exists now, read before deciding anything.
pub struct Observed {
    /// Whether the Deployment, Service and PDB come from the watch caches (and must be read
    /// afresh before a write is decided on them).
    pub from_cache: bool,
    /// The settings ConfigMap.
    pub settings: Option<ConfigMap>,
    pub deployment: Option<Deployment>,
    pub service: Option<Service>,
    pub pdb: Option<PodDisruptionBudget>,
    pub service_monitor: Option<DynamicObject>,
    pub prometheus_rule: Option<DynamicObject>,
    pub network_policy: Option<NetworkPolicy>,
    /// The Deployment's rollout, when it exists.
    pub rollout: Option<Rollout>,
    /// The settings in force before this reconcile decides anything: what the children say
    /// runs, within the spec's current bounds (status is never read for it). Derived once, here:
    /// it sizes the SLI history below and is where the decide stage starts.
    pub current: AppliedSettings,
    /// What the SLO loop read.
    pub slo: Observation,
}

async fn get_opt<K>(
    api: &Api<K>,
    kind: &'static str,
    ns: &str,
    name: &str,
) -> Result<Option<K>, FetchError>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.map_err(|source| FetchError::Get {
        kind,
        namespace: ns.to_owned(),
        name: name.to_owned(),
        source,
    })
}

pub struct Apis {
    pub settings: Api<ConfigMap>,
    pub deployment: Api<Deployment>,
    pub service: Api<Service>,
    pub pdb: Api<PodDisruptionBudget>,
    pub service_monitor: Api<DynamicObject>,
    pub prometheus_rule: Api<DynamicObject>,
    pub network_policy: Api<NetworkPolicy>,
    /// Only ever used to create the admin-key Secret (never to read one).
    pub secrets: Api<Secret>,
    pub isvc: Api<InferenceService>,
}

impl Apis {
    pub fn new(client: &Client, ns: &str) -> Self {
        Self {
            settings: Api::namespaced(client.clone(), ns),
            deployment: Api::namespaced(client.clone(), ns),
            service: Api::namespaced(client.clone(), ns),
            pdb: Api::namespaced(client.clone(), ns),
            service_monitor: Api::namespaced_with(client.clone(), ns, &service_monitor_resource()),
            prometheus_rule: Api::namespaced_with(client.clone(), ns, &prometheus_rule_resource()),
            network_policy: Api::namespaced(client.clone(), ns),
            secrets: Api::namespaced(client.clone(), ns),
            isvc: Api::namespaced(client.clone(), ns),
        }
    }
}

/// What runs now, as the children say (never status): see [`effective::derive`].
fn running(deployment: Option<&Deployment>, settings: Option<&ConfigMap>) -> Running {
    Running {
        replicas: deployment
            .and_then(|d| d.spec.replicas)
            .map(i32::unsigned_abs),
        settings: settings.and_then(build::recorded),
    }
}

/// Reads the children of `v` that `build` makes and, when a tick is due, its SLIs. The
/// settings in force are derived from the children first: they size the SLI history the
/// planner needs.
pub async fn observe(
    apis: &Apis,
    cache: Option<&ChildCache>,
    slo: &SloLoop,
    v: &Validated,
    build: &BuildOptions,
    now: f64,
) -> Result<Observed, FetchError> {
    // Only the kinds this operator builds are read: a missing CRD or RBAC for the others is fine.
    let want_monitor = matches!(build.monitoring, Monitoring::ServiceMonitor { .. });
    let want_rules = matches!(
        build.monitoring,
        Monitoring::ServiceMonitor {
            alert_rules: true,
            ..
        }
    );
    let want_network_policy = build.network_policy_for.is_some();
    let (ns, name) = (v.namespace.as_str(), v.name.as_str());
    let settings_name = build::settings_name(v);
    let (settings, deployment, service, pdb) = match cache {
        Some(c) => (
            cached(&c.settings, ns, &settings_name),
            cached(&c.deployments, ns, name),
            cached(&c.services, ns, name),
            cached(&c.pdbs, ns, name),
        ),
        None => (
            get_opt(&apis.settings, "ConfigMap", ns, &settings_name).await?,
            get_opt(&apis.deployment, "Deployment", ns, name).await?,
            get_opt(&apis.service, "Service", ns, name).await?,
            get_opt(&apis.pdb, "PodDisruptionBudget", ns, name).await?,
        ),
    };
    let service_monitor = if want_monitor {
        get_opt(&apis.service_monitor, "ServiceMonitor", ns, name).await?
    } else {
        None
    };
    let prometheus_rule = if want_rules {
        get_opt(&apis.prometheus_rule, "PrometheusRule", ns, name).await?
    } else {
        None
    };
    let network_policy = match (
        want_network_policy,
        cache.and_then(|c| c.network_policies.as_ref()),
    ) {
        (false, _) => None,
        (true, Some(store)) => cached(store, ns, name),
        (true, None) => get_opt(&apis.network_policy, "NetworkPolicy", ns, name).await?,
    };
    let current = effective::derive(v, &running(deployment.as_ref(), settings.as_ref()));
    let slo = tick::observe(slo, v, &current, now).await;
    Ok(Observed {
        from_cache: cache.is_some(),
        settings,
        rollout: deployment.as_ref().map(Rollout::of),
        deployment,
        service,
        pdb,
        service_monitor,
        prometheus_rule,
        network_policy,
        current,
        slo,
    })
}

//! Observe: what exists now — the owned children, the Deployment's rollout and, when a tick is
//! due, the service's SLIs. The only reads of a reconcile; nothing is decided here.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::core::DynamicObject;
use kube::{Api, Client, Resource};
use sluice_api::InferenceService;
use sluice_contract::AppliedSettings;

use crate::build::{BuildOptions, Monitoring, service_monitor_resource};
use crate::error::FetchError;
use crate::slo::SloLoop;
use crate::slo::tick::{self, Observation};
use crate::status::Rollout;
use crate::validate::Validated;

/// What exists now, read before deciding anything.
pub struct Observed {
    pub deployment: Option<Deployment>,
    pub service: Option<Service>,
    pub pdb: Option<PodDisruptionBudget>,
    pub service_monitor: Option<DynamicObject>,
    pub network_policy: Option<NetworkPolicy>,
    /// The Deployment's rollout, when it exists.
    pub rollout: Option<Rollout>,
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
    pub deployment: Api<Deployment>,
    pub service: Api<Service>,
    pub pdb: Api<PodDisruptionBudget>,
    pub service_monitor: Api<DynamicObject>,
    pub network_policy: Api<NetworkPolicy>,
    pub isvc: Api<InferenceService>,
}

impl Apis {
    pub fn new(client: &Client, ns: &str) -> Self {
        Self {
            deployment: Api::namespaced(client.clone(), ns),
            service: Api::namespaced(client.clone(), ns),
            pdb: Api::namespaced(client.clone(), ns),
            service_monitor: Api::namespaced_with(client.clone(), ns, &service_monitor_resource()),
            network_policy: Api::namespaced(client.clone(), ns),
            isvc: Api::namespaced(client.clone(), ns),
        }
    }
}

/// Reads the children of `v` that `build` makes and, when a tick is due, its SLIs. `eff`
/// (derived from the stored status) sizes the SLI history the planner needs.
pub async fn observe(
    apis: &Apis,
    slo: &SloLoop,
    v: &Validated,
    eff: &AppliedSettings,
    build: &BuildOptions,
    now: f64,
) -> Result<Observed, FetchError> {
    // Only the kinds this operator builds are read: a missing CRD or RBAC for the others is fine.
    let want_monitor = matches!(build.monitoring, Monitoring::ServiceMonitor { .. });
    let want_network_policy = build.network_policy_for.is_some();
    let (ns, name) = (v.namespace.as_str(), v.name.as_str());
    let deployment = get_opt(&apis.deployment, "Deployment", ns, name).await?;
    Ok(Observed {
        rollout: deployment.as_ref().map(Rollout::of),
        deployment,
        service: get_opt(&apis.service, "Service", ns, name).await?,
        pdb: get_opt(&apis.pdb, "PodDisruptionBudget", ns, name).await?,
        service_monitor: if want_monitor {
            get_opt(&apis.service_monitor, "ServiceMonitor", ns, name).await?
        } else {
            None
        },
        network_policy: if want_network_policy {
            get_opt(&apis.network_policy, "NetworkPolicy", ns, name).await?
        } else {
            None
        },
        slo: tick::observe(slo, v, eff, now).await,
    })
}

//! Leader election on a `coordination.k8s.io` Lease (via `kube-lease-manager`): only the holder
//! reconciles, and a holder that loses the lease stops, so two replicas never write at once.

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tracing::info;

/// A held lease: resolves [`Leadership::lost`] when it is gone.
pub struct Leadership {
    state: watch::Receiver<bool>,
    _task: tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
}

/// Lease settings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub duration_secs: u64,
}

/// Blocks until this replica holds the lease.
pub async fn acquire(client: Client, cfg: &LeaseConfig) -> anyhow::Result<Leadership> {
    // Renew a third of the duration before expiry, so a slow API call does not lose the lease.
    let grace = (cfg.duration_secs / 3).max(2);
    let manager = LeaseManagerBuilder::new(client, &cfg.name)
        .with_namespace(&cfg.namespace)
        .with_identity(&cfg.identity)
        .with_duration(cfg.duration_secs)
        .with_grace(grace)
        .build()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "failed to set up leader lease {}/{}: {e}",
                cfg.namespace,
                cfg.name
            )
        })?;
    let (mut state, task) = manager.watch().await;
    info!(lease = %cfg.name, identity = %cfg.identity, "waiting for leadership");
    while !*state.borrow_and_update() {
        state.changed().await.map_err(|_| {
            anyhow::anyhow!(
                "failed to acquire lease {}: lease manager stopped",
                cfg.name
            )
        })?;
    }
    info!(lease = %cfg.name, identity = %cfg.identity, "acquired leadership");
    Ok(Leadership { state, _task: task })
}

impl Leadership {
    /// Resolves when leadership is lost (or the lease manager stops).
    pub async fn lost(mut self) {
        loop {
            if !*self.state.borrow_and_update() {
                return;
            }
            if self.state.changed().await.is_err() {
                return;
            }
        }
    }
}

//! Leader election on a `coordination.k8s.io` Lease (via `kube-lease-manager`): only the holder
//! reconciles, and a holder that loses the lease stops, so two replicas never write at once.

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tracing::{info, warn};

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
    /// A future that resolves when leadership is lost (or the lease manager stops). It holds its
    /// own view of the lease state, so the [`Leadership`] itself stays with the caller for
    /// [`Leadership::release`].
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut state = self.state.clone();
        async move {
            loop {
                if !*state.borrow_and_update() {
                    return;
                }
                if state.changed().await.is_err() {
                    return;
                }
            }
        }
    }

    /// Gives the lease up at once (on shutdown), so a standby replica takes over without waiting
    /// for it to expire. The lease manager releases when the last receiver of its state is gone;
    /// waiting for its task keeps the process alive until the release has been written.
    pub async fn release(self) {
        let Leadership { state, _task: task } = self;
        drop(state);
        match tokio::time::timeout(std::time::Duration::from_secs(5), task).await {
            Ok(Ok(Ok(_))) => info!("released the leader lease"),
            Ok(Ok(Err(e))) => warn!(error = %e, "failed to release the leader lease"),
            Ok(Err(e)) => warn!(error = %e, "lease manager task failed"),
            Err(_) => warn!("timed out releasing the leader lease; it expires on its own"),
        }
    }
}

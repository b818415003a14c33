//! Command line of `sluice-operator`: `run` the controller, or print the `crd`.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};

/// Sluice operator: runs InferenceServices against their SLOs.
#[derive(Debug, Parser)]
#[command(name = "sluice-operator", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller.
    Run(Box<RunArgs>),
    /// Print the InferenceService CustomResourceDefinition as YAML.
    Crd,
}

/// Flags of `sluice-operator run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Watch only this namespace; unset watches all namespaces (needs cluster-wide RBAC).
    #[arg(long, env = "SLUICE_WATCH_NAMESPACE")]
    pub namespace: Option<String>,

    /// Default `sluice-server` image for CPU services.
    #[arg(long, env = "SLUICE_SERVER_IMAGE", default_value = concat!("ghcr.io/sluice-dev/sluice-server:", env!("CARGO_PKG_VERSION")))]
    pub server_image: String,

    /// Default `sluice-server` image for services that request GPUs.
    #[arg(long, env = "SLUICE_SERVER_CUDA_IMAGE", default_value = concat!("ghcr.io/sluice-dev/sluice-server:", env!("CARGO_PKG_VERSION"), "-cuda"))]
    pub server_cuda_image: String,

    /// How Prometheus finds server pods: `auto` (ServiceMonitor when the Prometheus Operator's
    /// CRDs exist, scrape annotations otherwise), `service-monitor` or `annotations`.
    #[arg(long, env = "SLUICE_MONITORING", default_value = "auto", value_parser = ["auto", "service-monitor", "annotations"])]
    pub monitoring: String,

    /// Extra label on every ServiceMonitor, `key=value` (repeatable), e.g. the `release` label
    /// a kube-prometheus-stack Prometheus selects on.
    #[arg(long = "service-monitor-label", env = "SLUICE_SERVICE_MONITOR_LABELS", value_delimiter = ',', value_parser = parse_label)]
    pub service_monitor_labels: Vec<(String, String)>,

    /// Address of the `/metrics`, `/healthz` and `/readyz` endpoints.
    #[arg(long, env = "SLUICE_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Elect a leader through a coordination.k8s.io Lease, so several replicas are safe.
    #[arg(long, env = "SLUICE_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Name of the leader Lease.
    #[arg(
        long,
        env = "SLUICE_LEASE_NAME",
        default_value = "sluice-operator-leader"
    )]
    pub lease_name: String,

    /// Namespace of the leader Lease; defaults to the pod's namespace (`POD_NAMESPACE`).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,

    /// Seconds a lease stays valid without renewal.
    #[arg(long, env = "SLUICE_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,

    /// Identity in the Lease and on Events; defaults to the pod name (`POD_NAME`).
    #[arg(long, env = "POD_NAME", default_value = "sluice-operator")]
    pub identity: String,

    /// InferenceServices reconciled at once.
    #[arg(long, env = "SLUICE_CONCURRENCY", default_value_t = 4)]
    pub concurrency: u16,

    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "SLUICE_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_run_flags() {
        let cli = Cli::try_parse_from([
            "sluice-operator",
            "run",
            "--namespace",
            "ml",
            "--service-monitor-label",
            "release=kps,team=ml",
            "--leader-election",
            "false",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("expected run");
        };
        assert_eq!(args.namespace.as_deref(), Some("ml"));
        assert_eq!(args.service_monitor_labels.len(), 2);
        assert!(!args.leader_election);
    }

    #[test]
    fn rejects_malformed_label() {
        assert!(
            Cli::try_parse_from(["sluice-operator", "run", "--service-monitor-label", "oops"])
                .is_err()
        );
    }
}

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
    /// Print alerting rules: an InferenceService's SLO alerts, as the operator creates them,
    /// or the operator's own alerts.
    Rules(RulesArgs),
    /// Print the Grafana dashboard (JSON) the chart ships: import it, or diff it against yours.
    Dashboard,
}

/// Flags of `sluice-operator rules`.
#[derive(Debug, Clone, Args)]
pub struct RulesArgs {
    /// InferenceService manifest (YAML) whose objectives the alerts are for.
    #[arg(
        long,
        env = "SLUICE_RULES_FILE",
        required_unless_present = "operator",
        conflicts_with = "operator"
    )]
    pub file: Option<std::path::PathBuf>,
    /// Namespace of a manifest that names none.
    #[arg(long, env = "SLUICE_RULES_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Print the operator's own alerts (SLIs unavailable, remediation exhausted) instead.
    #[arg(long, env = "SLUICE_RULES_OPERATOR")]
    pub operator: bool,
    /// `rules-file` (a Prometheus rules file, as promtool reads it) or `prometheus-rule` (a
    /// PrometheusRule to `kubectl apply`). `--operator` always prints a rules file: the chart
    /// wraps it in its own PrometheusRule.
    #[arg(long, env = "SLUICE_RULES_FORMAT", value_enum, default_value_t = crate::rules::RulesFormat::RulesFile)]
    pub format: crate::rules::RulesFormat,
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

    /// Give each service a NetworkPolicy: inference (port 8000) from anywhere, the admin API
    /// (port 8001) only from the operator's namespace (`POD_NAMESPACE`). Needs a CNI that
    /// enforces NetworkPolicy to take effect. Takes a value (`--network-policy=true`), as the
    /// chart renders it.
    #[arg(long, env = "SLUICE_NETWORK_POLICY", default_value_t = false, action = clap::ArgAction::Set)]
    pub network_policy: bool,

    /// With `--network-policy`: namespaces whose pods may reach the servers' inference port
    /// (comma-separated; each service's own namespace always may). Name Prometheus's namespace
    /// here too. Empty: every namespace.
    #[arg(
        long,
        env = "SLUICE_NETWORK_POLICY_INFERENCE_NAMESPACES",
        value_delimiter = ','
    )]
    pub network_policy_inference_namespaces: Vec<String>,

    /// Images an InferenceService may run in `spec.serving.image` (comma-separated prefixes,
    /// e.g. `registry.example/sluice-server:`), besides the two images above. Others are refused
    /// as an invalid spec: whoever may create an InferenceService must not choose what runs with
    /// the service's Secrets.
    #[arg(long, env = "SLUICE_ALLOWED_SERVER_IMAGES", value_delimiter = ',')]
    pub allowed_server_images: Vec<String>,

    /// File holding the admin key seed (at least 16 bytes; the chart mounts a generated
    /// Secret). Every service then gets its own admin key, derived from it, in a Secret the
    /// operator creates: inference clients cannot reach the admin API, and the operator reads
    /// no Secret. Unset: servers' admin APIs take their inference key, and the operator's
    /// settings pushes to servers with an API key fail (the settings ConfigMap still applies).
    #[arg(long, env = "SLUICE_ADMIN_KEY_SEED_FILE")]
    pub admin_key_seed_file: Option<std::path::PathBuf>,

    /// How Prometheus finds server pods: `auto` (ServiceMonitor when the Prometheus Operator's
    /// CRDs exist, scrape annotations otherwise), `service-monitor` or `annotations`.
    #[arg(long, env = "SLUICE_MONITORING", default_value = "auto", value_parser = ["auto", "service-monitor", "annotations"])]
    pub monitoring: String,

    /// Create a PrometheusRule with each service's SLO alerts (multi-window burn rates for the
    /// error and TTFT objectives, thresholds for TPOT and memory) next to its ServiceMonitor,
    /// when the Prometheus Operator serves the kind. `--alert-rules=false` leaves alerting to you.
    #[arg(long, env = "SLUICE_ALERT_RULES", default_value_t = true, action = clap::ArgAction::Set)]
    pub alert_rules: bool,

    /// Extra label on every ServiceMonitor and PrometheusRule, `key=value` (repeatable), e.g. the `release` label
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

    /// Prometheus the SLO loop reads SLIs from, e.g. `http://prometheus.monitoring:9090`; an
    /// InferenceService's `spec.slo.prometheusUrl` overrides it. Unset, and without the
    /// override, the loop reports `SLOMet=Unknown` (`NoPrometheusUrl`) and never acts.
    #[arg(long, env = "SLUICE_PROMETHEUS_URL", value_parser = parse_http_url)]
    pub prometheus_url: Option<String>,

    /// How to reach Prometheus (every URL the SLO loop queries): TLS trust and credentials.
    #[command(flatten)]
    pub prometheus_connection: sluice_slo::source::ConnectionArgs,

    /// Prometheus URLs an InferenceService may name in `spec.slo.prometheusUrl` (comma-separated
    /// prefixes, e.g. `http://prometheus.team-a:9090`); the operator's own `--prometheus-url` is
    /// always allowed. Any other per-service URL is refused without a request, so a CR author
    /// cannot make the operator send requests to arbitrary hosts.
    #[arg(long, env = "SLUICE_ALLOWED_PROMETHEUS_URLS", value_delimiter = ',', value_parser = parse_http_url)]
    pub allowed_prometheus_urls: Vec<String>,

    /// Time between two SLO evaluations of one InferenceService (e.g. `15s`, `1m`).
    #[arg(long, env = "SLUICE_SLO_INTERVAL", default_value = "15s", value_parser = parse_interval)]
    pub slo_interval: std::time::Duration,

    /// OTLP/HTTP endpoint the server pods export spans to (e.g.
    /// `http://jaeger-collector.tracing:4318`), unless a service's `spec.tracing.otlpEndpoint`
    /// says otherwise. The operator's own spans follow the standard `OTEL_EXPORTER_OTLP_*`
    /// environment instead.
    #[arg(long, env = "SLUICE_POD_OTLP_ENDPOINT", value_parser = parse_http_url)]
    pub pod_otlp_endpoint: Option<String>,

    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "SLUICE_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
}

fn parse_http_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.chars().any(char::is_whitespace) => {
            Ok(s.trim_end_matches('/').to_owned())
        }
        _ => Err(format!("expected an http:// or https:// URL, got {s:?}")),
    }
}

fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))?;
    if d < std::time::Duration::from_secs(1) || d > std::time::Duration::from_secs(3600) {
        return Err(format!("{s:?}: must be between 1s and 1h"));
    }
    Ok(d)
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
        assert_eq!(args.slo_interval, std::time::Duration::from_secs(15));
        assert_eq!(args.prometheus_url, None);
    }

    #[test]
    fn parses_prometheus_connection_flags() {
        let cli = Cli::try_parse_from([
            "sluice-operator",
            "run",
            "--prometheus-ca-file",
            "/ca.crt",
            "--prometheus-basic-auth-user",
            "sluice",
            "--prometheus-basic-auth-password-file",
            "/pw",
            "--prometheus-header",
            "X-Scope-OrgID=team-a",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("expected run");
        };
        let c = args.prometheus_connection.connection();
        assert_eq!(c.ca_file.as_deref(), Some(std::path::Path::new("/ca.crt")));
        assert_eq!(c.basic_auth.unwrap().username, "sluice");
        assert_eq!(
            c.headers,
            [("X-Scope-OrgID".to_string(), "team-a".to_string())]
        );
        // A user without a password file, or both kinds of credentials, is refused.
        for bad in [
            vec!["--prometheus-basic-auth-user", "u"],
            vec![
                "--prometheus-bearer-token-file",
                "/t",
                "--prometheus-basic-auth-user",
                "u",
                "--prometheus-basic-auth-password-file",
                "/p",
            ],
        ] {
            let mut argv = vec!["sluice-operator", "run"];
            argv.extend(bad.iter().copied());
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_slo_flags_and_rejects_bad_ones() {
        let cli = Cli::try_parse_from([
            "sluice-operator",
            "run",
            "--prometheus-url",
            "http://prometheus.monitoring:9090/",
            "--slo-interval",
            "30s",
            "--allowed-prometheus-urls",
            "http://prometheus.team-a:9090,https://thanos.example/",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("expected run");
        };
        assert_eq!(
            args.prometheus_url.as_deref(),
            Some("http://prometheus.monitoring:9090")
        );
        assert_eq!(args.slo_interval, std::time::Duration::from_secs(30));
        assert_eq!(
            args.allowed_prometheus_urls,
            ["http://prometheus.team-a:9090", "https://thanos.example"]
        );
        for bad in [
            ["--prometheus-url", "prometheus:9090"],
            ["--allowed-prometheus-urls", "http://ok:9090,file:///etc"],
            ["--slo-interval", "0s"],
            ["--slo-interval", "soon"],
        ] {
            let mut argv = vec!["sluice-operator", "run"];
            argv.extend(bad);
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rejects_malformed_label() {
        assert!(
            Cli::try_parse_from(["sluice-operator", "run", "--service-monitor-label", "oops"])
                .is_err()
        );
    }
}

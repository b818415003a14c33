//! The commands that work on an InferenceService in a cluster: `kubectl sluice status NAME`,
//! `kubectl sluice explain NAME` and `kubectl sluice bench NAME`. They find the cluster the way
//! kubectl does (`--kubeconfig`, else `$KUBECONFIG`, else `~/.kube/config`, else the pod's
//! service account), read the object the operator keeps its reasoning in, and render it;
//! rendering is pure ([`status`], [`explain`]) so it is tested on fixed objects.

pub mod explain;
pub mod forward;
pub mod status;

use std::path::PathBuf;

use clap::Args;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use sluice_api::InferenceService;

/// How to reach the cluster, as kubectl's own flags.
#[derive(Debug, Clone, Default, Args)]
pub struct KubeArgs {
    /// Namespace of the InferenceService (default: the kubeconfig context's namespace).
    #[arg(short = 'n', long, env = "SLUICE_NAMESPACE")]
    pub namespace: Option<String>,
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then the in-cluster service
    /// account).
    #[arg(long, env = "SLUICE_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current context).
    #[arg(long, env = "SLUICE_CONTEXT")]
    pub context: Option<String>,
}

/// A cluster command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("failed to read kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("failed to load the Kubernetes client configuration: {0}")]
    Config(String),
    #[error("failed to create the Kubernetes client: {0}")]
    Client(kube::Error),
    #[error(
        "InferenceService {namespace}/{name} not found (is the namespace right? -n picks another)"
    )]
    NotFound { namespace: String, name: String },
    #[error("failed to get InferenceService {namespace}/{name}: {source}")]
    Get {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error(transparent)]
    NoSuchDecision(#[from] explain::NoSuchDecision),
    #[error(transparent)]
    Forward(#[from] forward::ForwardError),
}

/// A client and the namespace to work in.
pub async fn connect(args: &KubeArgs) -> Result<(Client, String), ClusterError> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|source| ClusterError::Kubeconfig {
                path: path.display().to_string(),
                source,
            })?;
            Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| ClusterError::Config(e.to_string()))?
        }
        None if args.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| ClusterError::Config(e.to_string()))?,
        None => Config::infer()
            .await
            .map_err(|e| ClusterError::Config(e.to_string()))?,
    };
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(ClusterError::Client)?;
    Ok((client, namespace))
}

/// The InferenceService `name` in `namespace`.
pub async fn get(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<InferenceService, ClusterError> {
    let api: Api<InferenceService> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(isvc)) => Ok(isvc),
        Ok(None) => Err(ClusterError::NotFound {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }),
        Err(source) => Err(ClusterError::Get {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        }),
    }
}

/// Arguments of `status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The InferenceService.
    pub name: String,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Decisions to list, newest first.
    #[arg(long, env = "SLUICE_STATUS_DECISIONS", default_value_t = 5)]
    pub decisions: usize,
}

/// Arguments of `explain`.
#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    /// The InferenceService.
    pub name: String,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// The decision to explain, by id (default: the latest that moved a knob, else the latest).
    #[arg(long, env = "SLUICE_EXPLAIN_DECISION")]
    pub decision: Option<u64>,
}

/// Where `bench NAME` sends its load: the in-cluster URL, or a port-forward that must live as
/// long as the bench runs.
pub async fn bench_target(
    name: &str,
    kube: &KubeArgs,
    in_cluster: bool,
) -> Result<(reqwest::Url, Option<forward::Forward>), ClusterError> {
    let (client, ns) = connect(kube).await?;
    let isvc = get(&client, &ns, name).await?;
    if in_cluster {
        return Ok((forward::in_cluster_url(&isvc)?, None));
    }
    let fwd = forward::start(&client, &isvc).await?;
    eprintln!(
        "forwarding {} to pod {} of InferenceService {ns}/{name}",
        fwd.url, fwd.pod
    );
    Ok((fwd.url.clone(), Some(fwd)))
}

/// `status NAME`: prints the service's objectives against its SLIs, the bottleneck, the latest
/// decisions and what the operator waits for.
pub async fn run_status(args: &StatusArgs) -> Result<(), ClusterError> {
    let (client, ns) = connect(&args.kube).await?;
    let isvc = get(&client, &ns, &args.name).await?;
    print!("{}", status::render(&isvc, args.decisions));
    Ok(())
}

/// `explain NAME`: prints why the operator decided what it did, with the evidence.
pub async fn run_explain(args: &ExplainArgs) -> Result<(), ClusterError> {
    let (client, ns) = connect(&args.kube).await?;
    let isvc = get(&client, &ns, &args.name).await?;
    print!("{}", explain::render(&isvc, args.decision)?);
    Ok(())
}

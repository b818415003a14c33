//! How `kubectl sluice bench NAME` reaches a service's pods: a port-forward through the
//! apiserver to one Ready pod's `http` port (what `kubectl port-forward` does, so it works from
//! a laptop with nothing but a kubeconfig), or with `--in-cluster` the service's in-cluster URL
//! from `status.endpoint` (for a bench run as a pod or Job inside the cluster).
//!
//! The forward listens on 127.0.0.1 on a free port and opens one apiserver port-forward stream
//! per accepted connection, so the bench's connection pool maps one to one onto streams and a
//! broken stream fails only the requests on it.

use std::net::SocketAddr;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use reqwest::Url;
use sluice_api::InferenceService;
use sluice_contract::server::HTTP_PORT_NAME;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The service could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error(
        "InferenceService {service} has no pod selector in its status yet: the operator has not \
         reconciled it (is it running?)"
    )]
    NoSelector { service: String },
    #[error("failed to list the pods of InferenceService {service}: {source}")]
    List {
        service: String,
        source: kube::Error,
    },
    #[error(
        "InferenceService {service} has no Ready pod to forward to ({pods} pods match its \
         selector); `kubectl sluice status {name}` says what the operator waits for"
    )]
    NoReadyPod {
        service: String,
        name: String,
        pods: usize,
    },
    #[error("pod {pod} declares no container port named {HTTP_PORT_NAME:?}")]
    NoHttpPort { pod: String },
    #[error("failed to open a port-forward to pod {pod} port {port}: {source}")]
    Open {
        pod: String,
        port: u16,
        source: kube::Error,
    },
    #[error("failed to listen on 127.0.0.1 for the port-forward: {0}")]
    Bind(std::io::Error),
    #[error(
        "InferenceService {service} has no status.endpoint yet: the operator has not created \
         its Service"
    )]
    NoEndpoint { service: String },
    #[error("InferenceService {service} has an invalid status.endpoint {endpoint:?}: {reason}")]
    BadEndpoint {
        service: String,
        endpoint: String,
        reason: String,
    },
}

fn service(isvc: &InferenceService) -> String {
    format!(
        "{}/{}",
        isvc.namespace().unwrap_or_default(),
        isvc.name_any()
    )
}

/// The service's in-cluster URL, from `status.endpoint`.
pub fn in_cluster_url(isvc: &InferenceService) -> Result<Url, ForwardError> {
    let endpoint = isvc
        .status
        .as_ref()
        .and_then(|s| s.endpoint.clone())
        .ok_or_else(|| ForwardError::NoEndpoint {
            service: service(isvc),
        })?;
    let url = Url::parse(&endpoint).map_err(|e| ForwardError::BadEndpoint {
        service: service(isvc),
        endpoint: endpoint.clone(),
        reason: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ForwardError::BadEndpoint {
            service: service(isvc),
            endpoint,
            reason: "not an http(s) URL".into(),
        });
    }
    Ok(url)
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The container port named `http`.
pub fn http_port(pod: &Pod) -> Option<u16> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(HTTP_PORT_NAME))
        .and_then(|p| u16::try_from(p.container_port).ok())
}

/// The pod a forward goes to: Ready, not terminating, first by name so repeated runs pick the
/// same pod while it lives.
pub fn pick(pods: &[Pod]) -> Option<&Pod> {
    pods.iter()
        .filter(|p| is_ready(p))
        .min_by(|a, b| a.name_any().cmp(&b.name_any()))
}

/// A running port-forward; dropping it stops listening and ends its streams.
pub struct Forward {
    /// `http://127.0.0.1:<port>`, the base URL to bench.
    pub url: Url,
    /// The pod it forwards to.
    pub pod: String,
    task: JoinHandle<()>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Forwards a free local port to one Ready pod of the service. One stream is opened at once, so
/// a cluster that refuses port-forwards (RBAC: `pods/portforward` create) fails here with the
/// apiserver's reason instead of as connection errors in the bench.
pub async fn start(client: &Client, isvc: &InferenceService) -> Result<Forward, ForwardError> {
    let svc = service(isvc);
    let selector = isvc
        .status
        .as_ref()
        .and_then(|s| s.selector.clone())
        .ok_or_else(|| ForwardError::NoSelector {
            service: svc.clone(),
        })?;
    let ns = isvc.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| ForwardError::List {
            service: svc.clone(),
            source,
        })?;
    let pod = pick(&list.items).ok_or_else(|| ForwardError::NoReadyPod {
        service: svc.clone(),
        name: isvc.name_any(),
        pods: list.items.len(),
    })?;
    let name = pod.name_any();
    let port = http_port(pod).ok_or_else(|| ForwardError::NoHttpPort { pod: name.clone() })?;
    let open = |source| ForwardError::Open {
        pod: name.clone(),
        port,
        source,
    };
    let probe = pods.portforward(&name, &[port]).await.map_err(open)?;
    drop(probe);
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(ForwardError::Bind)?;
    let local = listener.local_addr().map_err(ForwardError::Bind)?;
    let url = Url::parse(&format!("http://{local}")).expect("a socket address is a valid host");
    let task = tokio::spawn(accept(listener, pods, name.clone(), port));
    Ok(Forward {
        url,
        pod: name,
        task,
    })
}

async fn accept(listener: TcpListener, pods: Api<Pod>, pod: String, port: u16) {
    loop {
        let conn = match listener.accept().await {
            Ok((conn, _)) => conn,
            Err(_) => {
                // Out of descriptors or a connection reset before accept: back off a little
                // instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(relay(conn, pods.clone(), pod.clone(), port));
    }
}

/// Copies one local connection through its own port-forward stream. A failure ends this
/// connection only (the client sees it closed) and is reported once on stderr.
async fn relay(mut conn: TcpStream, pods: Api<Pod>, pod: String, port: u16) {
    let mut forwarder = match pods.portforward(&pod, &[port]).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("warning: failed to open a port-forward to pod {pod} port {port}: {e}");
            return;
        }
    };
    let Some(mut upstream) = forwarder.take_stream(port) else {
        return;
    };
    // A reset by either side is how HTTP connections end; nothing to report.
    let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
    drop(upstream);
    let _ = forwarder.join().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ready: bool, port: Option<(&str, i32)>) -> Pod {
        let ports = port
            .map(|(n, p)| serde_json::json!([{"name": n, "containerPort": p}]))
            .unwrap_or(serde_json::json!([]));
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "server", "ports": ports}]},
            "status": {"conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}
            ]}
        }))
        .unwrap()
    }

    #[test]
    fn picks_the_first_ready_pod_by_name() {
        let pods = [
            pod("chat-b", true, Some(("http", 8080))),
            pod("chat-a", false, Some(("http", 8080))),
            pod("chat-c", true, Some(("http", 8080))),
        ];
        assert_eq!(pick(&pods).map(|p| p.name_any()).as_deref(), Some("chat-b"));
        assert!(pick(&pods[1..2]).is_none());
    }

    #[test]
    fn finds_the_port_by_name() {
        assert_eq!(http_port(&pod("a", true, Some(("http", 8080)))), Some(8080));
        assert_eq!(http_port(&pod("a", true, Some(("metrics", 9090)))), None);
        assert_eq!(http_port(&pod("a", true, None)), None);
    }

    #[test]
    fn the_in_cluster_url_comes_from_status() {
        let mut isvc: InferenceService = crate::cluster::status::tests::fixture();
        assert_eq!(
            in_cluster_url(&isvc).unwrap().as_str(),
            "http://chat.apps.svc:8080/"
        );
        isvc.status.as_mut().unwrap().endpoint = Some("chat:8080".into());
        assert!(matches!(
            in_cluster_url(&isvc),
            Err(ForwardError::BadEndpoint { .. })
        ));
        isvc.status.as_mut().unwrap().endpoint = None;
        assert_eq!(
            in_cluster_url(&isvc).unwrap_err().to_string(),
            "InferenceService apps/chat has no status.endpoint yet: the operator has not created \
             its Service"
        );
    }
}

//! The demo's fleet of local processes: `sluice-server` replicas on loopback ports behind a
//! small round-robin HTTP balancer, observed by scraping their `/metrics` (the same
//! [`ScrapeSource`] `sluice analyze` uses) and changed for real: replicas are processes started
//! and stopped, `max_tokens` and quantization are pushed to each server's admin API (a hot swap,
//! never a restart). It implements [`Fleet`], so the demo runs the operator's own loop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sluice_contract::admin::{self, RuntimeSettings, SettingsReport};
use sluice_contract::server::ServerArgs;
use sluice_contract::{Action, AppliedSettings, QuantizationFlag};
use sluice_slo::{Fleet, MetricsSource, Observed, ScrapeSource, Settings, Window};

use super::server::{self, LocalServer, ServerError};

/// Backends the balancer spreads requests over, in order.
#[derive(Debug, Clone, Default)]
pub struct Backends(Arc<RwLock<Vec<u16>>>);

impl Backends {
    fn set(&self, ports: Vec<u16>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = ports;
    }

    fn pick(&self, n: usize) -> Option<u16> {
        let all = self.0.read().unwrap_or_else(|e| e.into_inner());
        (!all.is_empty()).then(|| all[n % all.len()])
    }
}

#[derive(Clone)]
struct Proxy {
    backends: Backends,
    next: Arc<AtomicUsize>,
    client: reqwest::Client,
}

/// Forwards one request to the next backend, streaming the answer back.
async fn forward(State(p): State<Proxy>, req: Request) -> Response {
    let n = p.next.fetch_add(1, Ordering::Relaxed);
    let Some(port) = p.backends.pick(n) else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no replica is ready").into_response();
    };
    let (parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |q| q.as_str());
    let url = format!("http://127.0.0.1:{port}{path}");
    let body = match axum::body::to_bytes(body, 16 << 20).await {
        Ok(b) => b,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "body too large").into_response(),
    };
    let mut headers = HeaderMap::new();
    for (k, v) in &parts.headers {
        if k != "host" && k != "content-length" {
            headers.insert(k.clone(), v.clone());
        }
    }
    let sent = p
        .client
        .request(parts.method, url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(r) => {
            let mut out = Response::builder().status(r.status());
            for (k, v) in r.headers() {
                out = out.header(k, v);
            }
            out.body(Body::from_stream(r.bytes_stream()))
                .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("replica {port}: {e}")).into_response(),
    }
}

/// Starts the balancer on a free loopback port; it runs until the process ends.
pub async fn balancer(backends: Backends) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let proxy = Proxy {
        backends,
        next: Arc::new(AtomicUsize::new(0)),
        client: reqwest::Client::new(),
    };
    let app = axum::Router::new().fallback(forward).with_state(proxy);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

struct Replica {
    server: LocalServer,
    admin_port: u16,
}

/// Replicas as local processes.
pub struct LocalFleet {
    bin: PathBuf,
    template: ServerArgs,
    replicas: Vec<Replica>,
    backends: Backends,
    source: ScrapeSource,
    http: reqwest::Client,
    applied: AppliedSettings,
}

impl LocalFleet {
    /// Starts `initial.replicas` servers from `template` (ports chosen here) and lists them in
    /// `backends`.
    pub async fn start(
        bin: PathBuf,
        template: ServerArgs,
        initial: AppliedSettings,
        backends: Backends,
        window: Window,
    ) -> Result<Self, ServerError> {
        let mut f = Self {
            bin,
            template,
            replicas: Vec::new(),
            backends,
            source: ScrapeSource::new(Vec::new(), window, 0.95),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            applied: initial,
        };
        f.scale_to(initial.replicas).await?;
        Ok(f)
    }

    /// Server ports, for the SLI source and the balancer.
    fn publish(&self) {
        let ports: Vec<u16> = self.replicas.iter().map(|r| r.server.port).collect();
        self.source.set_targets(
            ports
                .iter()
                .map(|p| format!("http://127.0.0.1:{p}/metrics"))
                .collect(),
        );
        self.backends.set(ports);
    }

    async fn scale_to(&mut self, n: u32) -> Result<(), ServerError> {
        while self.replicas.len() < n as usize {
            let port = server::free_port()?;
            let admin_port = server::free_port()?;
            let args = ServerArgs {
                port,
                admin_port: Some(admin_port),
                max_tokens: self.applied.max_tokens as usize,
                quantization: QuantizationFlag::Level(self.applied.quantization),
                ..self.template.clone()
            };
            let server = LocalServer::start(&self.bin, &args, Duration::from_secs(120)).await?;
            self.replicas.push(Replica { server, admin_port });
        }
        while self.replicas.len() > n.max(1) as usize {
            let r = self.replicas.pop().expect("more than one");
            // Out of the balancer first, so no new request reaches it; then it drains.
            self.publish();
            r.server.terminate(Duration::from_secs(15)).await;
        }
        self.applied.replicas = self.replicas.len() as u32;
        self.publish();
        Ok(())
    }

    async fn push(&self, s: RuntimeSettings) -> Result<(), String> {
        for r in &self.replicas {
            let url = format!("http://127.0.0.1:{}{}", r.admin_port, admin::SETTINGS_PATH);
            self.http
                .put(&url)
                .json(&s)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| format!("failed to push settings to {url}: {e}"))?;
        }
        Ok(())
    }

    /// True when every replica runs the settings asked for (a hot swap done).
    async fn settled(&self) -> bool {
        for r in &self.replicas {
            let url = format!("http://127.0.0.1:{}{}", r.admin_port, admin::SETTINGS_PATH);
            let report: Option<SettingsReport> = match self.http.get(&url).send().await {
                Ok(resp) => resp.json().await.ok(),
                Err(_) => None,
            };
            if !report.is_some_and(|r| r.settled()) {
                return false;
            }
        }
        true
    }

    /// Stops every replica.
    pub async fn stop(self) {
        for r in self.replicas {
            r.server.stop().await;
        }
    }

    /// Primes the scrape history so the next read has rates.
    pub async fn prime(&self, now: f64) {
        let _ = self.source.read(now).await;
    }
}

impl Fleet for LocalFleet {
    type Error = String;

    async fn observe(&mut self, now: f64) -> Result<Observed, String> {
        let sli = self.source.read(now).await;
        Ok(Observed {
            settings: Settings {
                applied: self.applied,
                ready_replicas: self.replicas.len() as u32,
                rollout_complete: self.settled().await,
            },
            sli,
        })
    }

    async fn apply(&mut self, action: &Action, desired: &Settings, _: f64) -> Result<(), String> {
        match action {
            Action::Hold => Ok(()),
            Action::ScaleReplicas { to, .. } => self.scale_to(*to).await.map_err(|e| e.to_string()),
            Action::SetQuantization { .. } | Action::SetMaxTokens { .. } => {
                let s = RuntimeSettings {
                    max_tokens: desired.applied.max_tokens as usize,
                    quantization: desired.applied.quantization,
                };
                self.push(s).await?;
                self.applied.quantization = s.quantization;
                self.applied.max_tokens = desired.applied.max_tokens;
                Ok(())
            }
        }
    }
}

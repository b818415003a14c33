//! The listener: accepting connections under a limit, timing out slow clients, and draining on
//! shutdown without refusing anyone.
//!
//! `axum::serve` sets neither a header read timeout nor a connection limit, so a few hundred
//! clients that send headers slowly (or half a body) hold the server indefinitely. Here each
//! connection is served by hyper's HTTP/1 builder with a header read timeout (which also bounds
//! an idle keep-alive connection waiting for its next request), the body read timeout is a layer
//! on the router ([`super::router`]), and a semaphore bounds open connections: past the limit,
//! new connections wait in the kernel's accept backlog rather than costing memory here.
//!
//! Shutdown is in two phases, the way Kubernetes needs it: when the signal arrives the server
//! reports not-ready (`/ready` answers 503) but keeps accepting and serving for `drain_delay`, so
//! requests routed here before the endpoint update lands still succeed; then it stops accepting
//! and waits up to `drain_timeout` for the requests in flight.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// Limits and shutdown timing of the listener.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// A client must send a request's complete headers within this time, including the wait for
    /// the next request on a kept-alive connection.
    pub header_read_timeout: Duration,
    /// Connections open at once; more wait to be accepted.
    pub max_connections: usize,
    /// How long after the shutdown signal the server keeps accepting (while `/ready` fails).
    pub drain_delay: Duration,
    /// How long it then waits for requests in flight before exiting anyway.
    pub drain_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves and the drain completes. `on_shutdown`
/// runs when the signal arrives (it marks the server not ready). With `tls`, every connection
/// must complete a TLS handshake within the header read timeout first.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: &ListenConfig,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
    on_shutdown: impl FnOnce(),
) {
    let connections = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    let service = TowerToHyperService::new(app);
    let mut shutdown = std::pin::pin!(shutdown);
    // Becomes the drain-delay timer once the signal arrives.
    let mut stop_accepting: std::pin::Pin<Box<dyn Future<Output = ()> + Send>> =
        Box::pin(std::future::pending());
    let mut on_shutdown = Some(on_shutdown);
    loop {
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown, if on_shutdown.is_some() => {
                begin_drain(&mut on_shutdown, &mut stop_accepting, config.drain_delay);
                continue;
            }
            () = &mut stop_accepting => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "failed to accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown, if on_shutdown.is_some() => {
                begin_drain(&mut on_shutdown, &mut stop_accepting, config.drain_delay);
                continue;
            }
            () = &mut stop_accepting => break,
        };
        let _ = stream.set_nodelay(true);
        let Some(tls) = &tls else {
            let conn = http.serve_connection(TokioIo::new(stream), service.clone());
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                // A client that vanishes or times out ends its own connection; nothing to report.
                let _ = conn.await;
                drop(permit);
            });
            continue;
        };
        // The handshake runs in the connection's task, so a slow client delays only itself.
        let (tls, http, service, watcher) = (
            tls.clone(),
            http.clone(),
            service.clone(),
            graceful.watcher(),
        );
        let handshake_timeout = config.header_read_timeout;
        tokio::spawn(async move {
            match tokio::time::timeout(handshake_timeout, tls.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let conn = http.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn).await;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(drain_timeout = ?config.drain_timeout, "stopped accepting; waiting for requests in flight");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(config.drain_timeout) => {
            tracing::warn!(drain_timeout = ?config.drain_timeout, "drain timeout reached; exiting with requests in flight");
        }
    }
}

fn begin_drain(
    on_shutdown: &mut Option<impl FnOnce()>,
    stop_accepting: &mut std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    delay: Duration,
) {
    if let Some(f) = on_shutdown.take() {
        f();
    }
    tracing::info!(
        ?delay,
        "shutdown signal: not ready, still serving until the delay ends"
    );
    *stop_accepting = Box::pin(tokio::time::sleep(delay));
}

//! Logging and tracing for Sluice's long-running processes (the server and the operator):
//! `tracing` to stderr always, plus OTLP/HTTP span export (Jaeger, Tempo and any OpenTelemetry
//! collector ingest it) when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//!
//! Configuration is the OpenTelemetry SDK's standard environment, so the operator can hand it to
//! pods as plain env vars and a platform team's existing conventions carry over:
//! - `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`): the collector;
//!   `https://` is verified with rustls against the system's roots;
//! - `OTEL_EXPORTER_OTLP_CERTIFICATE`: a PEM bundle of CAs trusted besides the system's (a
//!   private CA in front of the collector);
//! - `OTEL_EXPORTER_OTLP_HEADERS`: `key=value,…` headers, e.g. a tenant or an API key from a
//!   Secret-backed env var;
//! - `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER(_ARG)`.
//!
//! `RUST_LOG` filters the log and `SLUICE_TRACE_FILTER` the exported spans (default: info
//! level), each on its own.
//!
//! A broken tracing setup never stops the process: it logs why and keeps spans local.
//! W3C `traceparent` headers are honoured ([`adopt_remote_parent`]), so a request's spans join
//! the caller's trace.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderMap;
use opentelemetry::global;
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithHttpConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The collector endpoint variables, the signal-specific one first (the SDK's precedence).
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];
/// The CA bundle variables, the signal-specific one first.
const CERTIFICATE_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
];
/// How long one export may take; the SDK's default.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why span export could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("failed to read the OTLP CA bundle {path}: {message}")]
    Ca { path: PathBuf, message: String },
    #[error("failed to build the OTLP HTTP client: {0}")]
    Client(String),
    #[error("failed to build the OTLP span exporter: {0}")]
    Exporter(String),
}

/// Flushes exported spans when dropped (at process exit).
pub struct TelemetryGuard(Option<SdkTracerProvider>);

impl TelemetryGuard {
    /// Whether spans leave the process.
    pub fn exporting(&self) -> bool {
        self.0.is_some()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take()
            && let Err(e) = p.shutdown()
        {
            eprintln!("failed to flush traces: {e}");
        }
    }
}

fn env_first(vars: &[&str]) -> Option<String> {
    vars.iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
}

/// Installs the global subscriber: `RUST_LOG` filters (default `info`), `json` selects JSON log
/// lines, and spans are exported over OTLP when an endpoint is set. `service_name` names the
/// process in traces unless `OTEL_SERVICE_NAME` does.
pub fn init(service_name: &str, json: bool) -> TelemetryGuard {
    global::set_text_map_propagator(TraceContextPropagator::new());
    // Each layer has its own filter: `RUST_LOG=warn` quiets the log without turning traces off.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json().with_filter(filter).boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    let registry = tracing_subscriber::registry().with(fmt);
    let Some(endpoint) = env_first(&ENDPOINT_VARS) else {
        let _ = registry.try_init();
        return TelemetryGuard(None);
    };
    let ca = env_first(&CERTIFICATE_VARS).map(PathBuf::from);
    match provider(service_name, ca.as_deref()) {
        Ok(provider) => {
            let tracer = provider.tracer(service_name.to_string());
            let _ = registry
                .with(
                    tracing_opentelemetry::layer()
                        .with_tracer(tracer)
                        .with_filter(span_filter()),
                )
                .try_init();
            tracing::info!(%endpoint, "exporting traces over OTLP");
            TelemetryGuard(Some(provider))
        }
        Err(e) => {
            let _ = registry.try_init();
            tracing::error!(error = %e, %endpoint, "failed to set up OTLP export; traces stay local");
            TelemetryGuard(None)
        }
    }
}

/// What reaches the exporter: `SLUICE_TRACE_FILTER` (`RUST_LOG` syntax), default the info-level
/// spans of the program. The HTTP stack's own spans stay out: they are noise in a request's
/// trace, and the exporter's requests would otherwise trace themselves.
fn span_filter() -> EnvFilter {
    const DEFAULT: &str =
        "info,h2=off,hyper=off,hyper_util=off,reqwest=off,tower=off,opentelemetry=off";
    match std::env::var("SLUICE_TRACE_FILTER") {
        Ok(f) if !f.trim().is_empty() => EnvFilter::try_new(&f).unwrap_or_else(|e| {
            eprintln!("SLUICE_TRACE_FILTER {f:?} is not a filter ({e}); using {DEFAULT:?}");
            EnvFilter::new(DEFAULT)
        }),
        _ => EnvFilter::new(DEFAULT),
    }
}

/// The tracer provider: the SDK reads the endpoint, headers, sampler and resource attributes
/// from the environment; the HTTP client is ours, for the CA bundle.
fn provider(service_name: &str, ca: Option<&Path>) -> Result<SdkTracerProvider, TelemetryError> {
    let client = http_client(ca)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service_name.to_string());
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// A blocking client (the batch exporter runs on its own thread) trusting the system's roots
/// plus `ca`. Built on a thread of its own: reqwest's blocking client starts a runtime, which
/// may not happen inside the caller's async runtime.
pub fn http_client(ca: Option<&Path>) -> Result<reqwest::blocking::Client, TelemetryError> {
    let certs = match ca {
        None => Vec::new(),
        Some(path) => {
            let ca_err = |message: String| TelemetryError::Ca {
                path: path.to_path_buf(),
                message,
            };
            let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_err(e.to_string()))?;
            if certs.is_empty() {
                return Err(ca_err("no PEM certificates in it".into()));
            }
            certs
        }
    };
    std::thread::spawn(move || {
        reqwest::blocking::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .tls_certs_merge(certs)
            .build()
    })
    .join()
    .map_err(|_| TelemetryError::Client("the thread building it panicked".into()))?
    .map_err(|e| TelemetryError::Client(e.to_string()))
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Makes `span` a child of the caller's trace when the request carries `traceparent`.
pub fn adopt_remote_parent(span: &tracing::Span, headers: &HeaderMap) {
    let parent = global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    let _ = span.set_parent(parent);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_ca_builds_a_client_with_the_system_roots() {
        assert!(http_client(None).is_ok());
    }

    #[test]
    fn a_missing_ca_file_is_named_in_the_error() {
        let err = http_client(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("failed to read the OTLP CA bundle /nonexistent/ca.pem:"),
            "{msg}"
        );
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let msg = http_client(Some(&path)).unwrap_err().to_string();
        assert!(msg.contains("no PEM certificates in it"), "{msg}");
    }
}

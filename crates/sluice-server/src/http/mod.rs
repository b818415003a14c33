//! The HTTP surface: routing, shared state, authentication, outcome metrics, health.
//!
//! Handlers follow one path: admission (a [`Permit`] or 429) → validation into a
//! [`crate::engine::ValidRequest`] → the engine → events rendered as JSON or SSE.

mod admin;
mod driver;
pub mod listen;
pub mod native;
pub mod openai;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sluice_contract::admin as paths;
use subtle::ConstantTimeEq;

use crate::admission::{Admission, Permit};
use crate::engine::{Engine, ModelView};
use crate::error::{ApiError, ErrorOutcome};
use crate::model::quant::QuantizationFlag;
use crate::settings::SettingsControl;

/// Request bodies above this are refused with 413.
pub const BODY_LIMIT_BYTES: usize = 2 * 1024 * 1024;

/// Settings the handlers need besides the engine.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Bearer token of the inference routes (and of the admin routes without `admin_key`).
    pub api_key: Option<String>,
    /// Bearer token of the admin routes; when set, the API key does not open them.
    pub admin_key: Option<String>,
    pub request_timeout: Duration,
    /// A request body must arrive within this time (408 otherwise).
    pub body_read_timeout: Duration,
    pub device: candle_core::Device,
    pub hf_home: Option<std::path::PathBuf>,
    /// `POST /model/load` loads files only under this directory (when set).
    pub model_root: Option<std::path::PathBuf>,
    pub default_quantization: QuantizationFlag,
    /// Precision of the KV cache of every model loaded.
    pub kv_cache: sluice_contract::server::KvCacheDtype,
}

#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub admission: Arc<Admission>,
    pub config: Arc<HttpConfig>,
    /// Serialises `/model/load` and precision switches so two loads never race.
    pub loading: Arc<tokio::sync::Mutex<()>>,
    /// Run-time settings (`/admin/settings`); None when the server cannot switch precision.
    pub settings: Option<Arc<SettingsControl>>,
}

impl AppState {
    pub fn new(engine: Engine, config: HttpConfig) -> Self {
        Self {
            engine,
            admission: Admission::new(),
            config: Arc::new(config),
            loading: Arc::new(tokio::sync::Mutex::new(())),
            settings: None,
        }
    }

    /// Serves `/admin/settings` through `control`.
    pub fn with_settings(mut self, control: Arc<SettingsControl>) -> Self {
        self.settings = Some(control);
        self
    }

    /// Takes an admission slot (429 when full).
    pub fn admit(&self) -> Result<Permit, ApiError> {
        let shared = self.engine.shared();
        self.admission
            .try_acquire(shared.limits.max_concurrent_requests(), &shared.metrics)
    }

    /// The loaded model, or 503.
    pub fn model(&self) -> Result<ModelView, ApiError> {
        self.engine
            .model()
            .ok_or_else(|| ApiError::Unavailable("no model is loaded".into()))
    }
}

/// Every route on one router: inference, probes, metrics and the admin API.
pub fn router(state: AppState) -> Router {
    let (inference, admin) = routes(&state);
    finish(inference.merge(admin), &state)
}

/// The inference router (generation, models, probes, metrics) and the admin router (limits,
/// model load/unload), for serving the admin API on a port of its own.
pub fn routers(state: AppState) -> (Router, Router) {
    let (inference, admin) = routes(&state);
    (finish(inference, &state), finish(admin, &state))
}

fn routes(state: &AppState) -> (Router<AppState>, Router<AppState>) {
    let protected = Router::new()
        .route("/generate", post(native::generate))
        .route("/generate/stream", post(native::generate_stream))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route(paths::MODELS_PATH, get(openai::models))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    let inference = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .merge(protected);
    let admin = Router::new()
        .route(
            paths::LIMITS_PATH,
            get(admin::get_limits).put(admin::put_limits),
        )
        .route(
            paths::SETTINGS_PATH,
            get(admin::get_settings).put(admin::put_settings),
        )
        .route(paths::MODEL_LOAD_PATH, post(admin::load_model))
        .route(paths::MODEL_UNLOAD_PATH, post(admin::unload_model))
        .route_layer(middleware::from_fn_with_state(state.clone(), admin_auth));
    (inference, admin)
}

/// The layers every router shares: the arrival stamp, error counting, body limits, the fallback.
fn finish(routes: Router<AppState>, state: &AppState) -> Router {
    routes
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(state.clone(), count_errors))
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(tower_http::timeout::RequestBodyDeadlineLayer::new(
            state.config.body_read_timeout,
        ))
        // Outermost, so the stamp is taken before anything reads the body.
        .layer(middleware::from_fn(crate::validate::stamp_arrival))
        .with_state(state.clone())
}

/// Bearer-token check of the inference routes; open when no API key is configured.
async fn auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    check_bearer(state.config.api_key.as_deref(), req, next).await
}

/// Bearer-token check of the admin routes: the admin key when one is set (an inference key
/// then opens nothing here), else the API key.
async fn admin_auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let key = state
        .config
        .admin_key
        .as_deref()
        .or(state.config.api_key.as_deref());
    check_bearer(key, req, next).await
}

/// Compares the presented bearer token with `key` in constant time; open when `key` is None.
async fn check_bearer(key: Option<&str>, req: Request, next: Next) -> Response {
    if let Some(key) = key {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let ok: bool = presented.as_bytes().ct_eq(key.as_bytes()).into();
        if !ok {
            return ApiError::Unauthorized.into_response();
        }
    }
    next.run(req).await
}

/// Counts error responses the engine did not already count, so every outcome lands in
/// `llm_requests_total` exactly once.
async fn count_errors(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    if let Some(o) = resp.extensions().get::<ErrorOutcome>()
        && !o.counted
    {
        state
            .engine
            .shared()
            .metrics
            .finish(o.status, Some(o.reason));
    }
    resp
}

async fn fallback(req: Request) -> ApiError {
    ApiError::RouteNotFound(format!("{} {}", req.method(), req.uri().path()))
}

/// Liveness: fails when the engine thread has died or fails every step, so Kubernetes restarts
/// the pod.
async fn health(State(state): State<AppState>) -> Response {
    match state.engine.unhealthy() {
        None => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ok"})),
        )
            .into_response(),
        Some(why) => ApiError::Unavailable(why).into_response(),
    }
}

/// Readiness: a model is loaded, the engine lives and the server is not draining.
async fn ready(State(state): State<AppState>) -> Response {
    let reason = if let Some(why) = state.engine.unhealthy() {
        Some(why)
    } else if state.admission.is_draining() {
        Some("draining".into())
    } else if state.engine.model().is_none() {
        Some("no model is loaded".into())
    } else {
        None
    };
    match reason {
        None => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ready"})),
        )
            .into_response(),
        Some(r) => ApiError::Unavailable(r).into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let m = &state.engine.shared().metrics;
    m.set_memory(
        sluice_contract::metrics::MemoryType::Ram,
        crate::memory::rss_bytes() as f64,
        crate::memory::total_ram_bytes().unwrap_or(0) as f64,
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.render(),
    )
        .into_response()
}

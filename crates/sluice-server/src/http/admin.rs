//! Admin endpoints: runtime limits (the operator's no-restart lever) and model load/unload.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use crate::engine::{EngineModel, LimitsUpdate};
use crate::error::ApiError;
use crate::model::quant::QuantizationFlag;
use crate::model::{LoadSpec, ModelSource};
use crate::settings::SettingsControl;
use crate::validate::ApiJson;
use sluice_contract::admin::{RuntimeSettings, SettingsReport};

pub async fn get_limits(State(state): State<AppState>) -> Json<LimitsUpdate> {
    Json(state.engine.shared().limits.snapshot())
}

pub async fn put_limits(
    State(state): State<AppState>,
    body: Result<ApiJson<LimitsUpdate>, ApiError>,
) -> Result<Json<LimitsUpdate>, ApiError> {
    let ApiJson(update) = body?;
    let shared = state.engine.shared();
    let applied = shared
        .limits
        .apply(update, &shared.metrics)
        .map_err(ApiError::Unprocessable)?;
    tracing::info!(?applied, "limits changed at run time");
    Ok(Json(applied))
}

fn settings(state: &AppState) -> Result<&std::sync::Arc<SettingsControl>, ApiError> {
    state.settings.as_ref().ok_or_else(|| {
        ApiError::Unavailable(
            "run-time settings are not available: the running model's precision has no name \
             to switch from (start the server with an explicit --quantization)"
                .into(),
        )
    })
}

pub async fn get_settings(State(state): State<AppState>) -> Result<Json<SettingsReport>, ApiError> {
    Ok(Json(settings(&state)?.report()))
}

/// Applies new run-time settings: the cap at once, a precision switch in the background (the
/// report's `pending` says how it goes; poll `GET` until `running` equals `wanted`).
pub async fn put_settings(
    State(state): State<AppState>,
    body: Result<ApiJson<RuntimeSettings>, ApiError>,
) -> Result<Json<SettingsReport>, ApiError> {
    let ApiJson(wanted) = body?;
    let report = settings(&state)?
        .apply(wanted)
        .map_err(ApiError::Unprocessable)?;
    tracing::info!(?report, "settings changed at run time");
    Ok(Json(report))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadRequest {
    pub model: String,
    #[serde(default)]
    pub quantization: Option<String>,
    #[serde(default)]
    pub served_model_name: Option<String>,
}

/// Loads a model in the background and swaps it in once the running batch drains. Requests
/// queued for the old model fail with 503 and can be retried.
pub async fn load_model(
    State(state): State<AppState>,
    body: Result<ApiJson<LoadRequest>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let ApiJson(body) = body?;
    let source: ModelSource = body.model.parse().map_err(ApiError::Unprocessable)?;
    if let Some(root) = &state.config.model_root {
        check_under_root(&source, root)?;
    }
    let quantization = match &body.quantization {
        Some(q) => q
            .parse::<QuantizationFlag>()
            .map_err(ApiError::Unprocessable)?,
        None => state.config.default_quantization,
    };
    let _guard = state.loading.lock().await;
    let spec = LoadSpec {
        source,
        quantization,
        device: state.config.device.clone(),
        served_name: body.served_model_name,
        hf_home: state.config.hf_home.clone(),
        kv_cache: state.config.kv_cache,
    };
    let kept = spec.clone();
    let loaded = tokio::task::spawn_blocking(move || crate::model::load(&spec))
        .await
        .map_err(|e| ApiError::Internal(format!("model load task failed: {e}")))?
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let served = EngineModel::serve(loaded);
    let info = served.1.clone();
    state.engine.swap(Some(served));
    // Later precision switches reload this model, not the one the server started with.
    if let Some(control) = &state.settings {
        control.model_replaced(kept, info.quantization.parse().ok());
    }
    Ok(Json(json!({
        "model": info.served_name, "source": info.source, "quantization": info.quantization,
        "device": info.device, "load_seconds": info.load_seconds,
        "weight_megabytes": info.weight_bytes as f64 / (1024.0 * 1024.0),
    })))
}

/// Refuses a file source outside `root`, judged on the path as written (no `..`, under the
/// root) and before anything is read, with a message that does not echo it: the admin API must
/// not tell which paths exist.
fn check_under_root(source: &ModelSource, root: &std::path::Path) -> Result<(), ApiError> {
    use std::path::Component;
    let path = match source {
        ModelSource::Directory(p) | ModelSource::Gguf(p) => p,
        ModelSource::Builtin(_) | ModelSource::HfCache { .. } => return Ok(()),
    };
    let inside = path.is_absolute()
        && path.starts_with(root)
        && !path.components().any(|c| matches!(c, Component::ParentDir));
    if inside {
        Ok(())
    } else {
        Err(ApiError::Unprocessable(
            "the model path is outside the server's model root (--model-root)".into(),
        ))
    }
}

pub async fn unload_model(State(state): State<AppState>) -> Json<Value> {
    let _guard = state.loading.lock().await;
    state.engine.swap(None);
    Json(json!({"unloaded": true}))
}

//! `POST /generate` and `POST /generate/stream`: Sluice's own API.

use std::convert::Infallible;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;
use super::driver::{self, Completion, StreamItem, request_span};
use crate::engine::{FinishReason, Timings, ValidRequest};
use crate::error::ApiError;
use crate::validate::{ApiJson, Arrival, RawSampling, tokenize, validate};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    pub prompt: String,
    #[serde(flatten)]
    pub sampling: RawSampling,
}

#[derive(Debug, Serialize)]
pub struct GenerateResponse {
    pub text: String,
    pub generated_tokens: usize,
    pub prompt_tokens: usize,
    pub finish_reason: FinishReason,
    pub timings: Timings,
}

impl From<Completion> for GenerateResponse {
    fn from(c: Completion) -> Self {
        Self {
            text: c.text,
            generated_tokens: c.completion_tokens,
            prompt_tokens: c.prompt_tokens,
            finish_reason: c.finish_reason,
            timings: c.timings,
        }
    }
}

async fn prepare(
    state: &AppState,
    Arrival(arrived): Arrival,
    body: GenerateRequest,
    span: &tracing::Span,
) -> Result<ValidRequest, ApiError> {
    let view = state.model()?;
    let ids = tokenize(&view, body.prompt, span).await?;
    validate(
        arrived,
        ids,
        body.sampling,
        0.0,
        &view,
        &state.engine.shared().limits,
        state.config.request_timeout,
    )
}

pub async fn generate(
    State(state): State<AppState>,
    headers: HeaderMap,
    arrival: Arrival,
    body: Result<ApiJson<GenerateRequest>, ApiError>,
) -> Result<Json<GenerateResponse>, ApiError> {
    let permit = state.admit()?;
    let ApiJson(body) = body?;
    let span = request_span("/generate", &headers);
    let req = prepare(&state, arrival, body, &span).await?;
    let c = driver::complete(&state, req, &span, permit).await?;
    Ok(Json(c.into()))
}

pub async fn generate_stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    arrival: Arrival,
    body: Result<ApiJson<GenerateRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let permit = state.admit()?;
    let ApiJson(body) = body?;
    let span = request_span("/generate/stream", &headers);
    let req = prepare(&state, arrival, body, &span).await?;
    let events = driver::stream(&state, req, &span, permit).map(|item| {
        let ev = match item {
            StreamItem::Token { index, id, text } => SseEvent::default()
                .event("token")
                .data(json!({"index": index, "token": {"id": id, "text": text}}).to_string()),
            StreamItem::Done(c) => SseEvent::default().event("done").data(
                json!({
                    "finish_reason": c.finish_reason,
                    "usage": {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens},
                    "timings": c.timings,
                    "text": c.text,
                })
                .to_string(),
            ),
            StreamItem::Error(e) => SseEvent::default().event("error").data(e.body().to_string()),
        };
        Ok::<_, Infallible>(ev)
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

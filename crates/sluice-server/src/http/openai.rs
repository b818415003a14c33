//! The OpenAI-compatible API: `/v1/completions`, `/v1/chat/completions` (streaming and not, with
//! a usage block) and `/v1/models`, close enough that the official `openai` client works.

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, stream};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::driver::{self, Completion, StreamItem, request_span};
use crate::engine::ModelView;
use crate::error::ApiError;
use crate::model::chat::ChatMessage;
use crate::validate::{ApiJson, Arrival, RawSampling, tokenize, validate};
use sluice_contract::admin::{ModelCard, ModelList};

/// OpenAI's default temperature is 1.
const OPENAI_DEFAULT_TEMPERATURE: f64 = 1.0;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PromptInput {
    Text(String),
    Texts(Vec<String>),
}

#[derive(Debug, Deserialize, Default)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub prompt: PromptInput,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub n: Option<u32>,
    /// Refused unless 1: answering with one sample while the client asked for the best of
    /// several would be silently wrong.
    #[serde(default)]
    pub best_of: Option<u32>,
    /// Refused when set: this server returns no log probabilities.
    #[serde(default)]
    pub logprobs: Option<u32>,
    /// Refused when true: the prompt is not echoed.
    #[serde(default)]
    pub echo: bool,
    #[serde(flatten)]
    pub sampling: RawSampling,
}

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub n: Option<u32>,
    /// The newer spelling of `max_tokens`.
    #[serde(default)]
    pub max_completion_tokens: Option<i64>,
    /// Refused when true: this server returns no log probabilities.
    #[serde(default)]
    pub logprobs: Option<bool>,
    /// Refused when set, for the same reason.
    #[serde(default)]
    pub top_logprobs: Option<u32>,
    #[serde(flatten)]
    pub sampling: RawSampling,
}

fn check_model(view: &ModelView, requested: &Option<String>) -> Result<(), ApiError> {
    match requested {
        Some(m) if m != &view.info.served_name && m != &view.info.source => {
            Err(ApiError::ModelNotFound(m.clone()))
        }
        _ => Ok(()),
    }
}

fn check_n(n: Option<u32>) -> Result<(), ApiError> {
    match n {
        None | Some(1) => Ok(()),
        Some(n) => Err(ApiError::Unprocessable(format!(
            "n must be 1 (this server returns one choice), got {n}"
        ))),
    }
}

/// Options the server cannot honour are refused (422), never silently ignored.
fn check_unsupported(best_of: Option<u32>, logprobs: bool, echo: bool) -> Result<(), ApiError> {
    let refused = if best_of.is_some_and(|b| b != 1) {
        Some("best_of must be 1 (this server samples one completion per request)")
    } else if logprobs {
        Some("logprobs are not supported by this server")
    } else if echo {
        Some("echo is not supported by this server")
    } else {
        None
    };
    refused.map_or(Ok(()), |m| Err(ApiError::Unprocessable(m.into())))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn new_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{prefix}-{:x}{:06x}",
        now_secs(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn usage(c: &Completion) -> Value {
    json!({"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens, "total_tokens": c.prompt_tokens + c.completion_tokens})
}

pub async fn models(State(state): State<AppState>) -> Result<Json<ModelList>, ApiError> {
    let view = state.model()?;
    let info = &view.info;
    Ok(Json(ModelList {
        object: "list".into(),
        data: vec![ModelCard {
            id: info.served_name.clone(),
            object: "model".into(),
            created: now_secs(),
            owned_by: "sluice".into(),
            source: info.source.clone(),
            quantization: info.quantization.clone(),
            device: info.device.clone(),
            context_length: info.context_length,
            max_tokens: state.engine.shared().limits.max_tokens(),
            weight_bytes: info.weight_bytes as u64,
            kv_bytes_per_token: info.kv_bytes_per_token as u64,
            load_seconds: info.load_seconds,
        }],
    }))
}

pub async fn completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    Arrival(arrived): Arrival,
    body: Result<ApiJson<CompletionRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let permit = state.admit()?;
    let ApiJson(body) = body?;
    let view = state.model()?;
    check_model(&view, &body.model)?;
    check_n(body.n)?;
    check_unsupported(body.best_of, body.logprobs.is_some(), body.echo)?;
    let prompt = match body.prompt {
        PromptInput::Text(t) => t,
        PromptInput::Texts(mut v) if v.len() == 1 => v.remove(0),
        PromptInput::Texts(v) => {
            return Err(ApiError::Unprocessable(format!(
                "prompt must be one string (batched prompts are not supported), got {}",
                v.len()
            )));
        }
    };
    let span = request_span("/v1/completions", &headers);
    let ids = tokenize(&view, prompt, &span).await?;
    let req = validate(
        arrived,
        ids,
        body.sampling,
        OPENAI_DEFAULT_TEMPERATURE,
        &view,
        &state.engine.shared().limits,
        state.config.request_timeout,
    )?;
    let (id, created, model) = (new_id("cmpl"), now_secs(), view.info.served_name.clone());
    if !body.stream {
        let c = driver::complete(&state, req, &span, permit).await?;
        return Ok(Json(json!({
            "id": id, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": 0, "text": c.text, "logprobs": null, "finish_reason": c.finish_reason.openai()}],
            "usage": usage(&c),
        }))
        .into_response());
    }
    let include_usage = body.stream_options.is_some_and(|o| o.include_usage);
    let chunk = move |choices: Value, usage: Value| json!({"id": id, "object": "text_completion", "created": created, "model": model, "choices": choices, "usage": usage});
    let events = openai_chunks(
        driver::stream(&state, req, &span, permit),
        chunk,
        include_usage,
        |text| json!({"index": 0, "text": text, "logprobs": null, "finish_reason": null}),
        |reason| json!({"index": 0, "text": "", "logprobs": null, "finish_reason": reason}),
    );
    Ok(sse_with_done(events))
}

pub async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    Arrival(arrived): Arrival,
    body: Result<ApiJson<ChatRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let permit = state.admit()?;
    let ApiJson(mut body) = body?;
    let view = state.model()?;
    check_model(&view, &body.model)?;
    check_n(body.n)?;
    check_unsupported(
        None,
        body.logprobs == Some(true) || body.top_logprobs.is_some(),
        false,
    )?;
    if body.messages.is_empty() {
        return Err(ApiError::Unprocessable("messages must not be empty".into()));
    }
    if body.sampling.max_tokens.is_none() {
        body.sampling.max_tokens = body.max_completion_tokens;
    }
    let prompt = view
        .chat
        .render(&body.messages)
        .map_err(ApiError::Unprocessable)?;
    let span = request_span("/v1/chat/completions", &headers);
    let ids = tokenize(&view, prompt, &span).await?;
    let req = validate(
        arrived,
        ids,
        body.sampling,
        OPENAI_DEFAULT_TEMPERATURE,
        &view,
        &state.engine.shared().limits,
        state.config.request_timeout,
    )?;
    let (id, created, model) = (
        new_id("chatcmpl"),
        now_secs(),
        view.info.served_name.clone(),
    );
    if !body.stream {
        let c = driver::complete(&state, req, &span, permit).await?;
        return Ok(Json(json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": c.text}, "logprobs": null, "finish_reason": c.finish_reason.openai()}],
            "usage": usage(&c),
        }))
        .into_response());
    }
    let include_usage = body.stream_options.is_some_and(|o| o.include_usage);
    let chunk = move |choices: Value, usage: Value| json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices, "usage": usage});
    let first = chunk(
        json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]),
        Value::Null,
    );
    let rest = openai_chunks(
        driver::stream(&state, req, &span, permit),
        chunk,
        include_usage,
        |text| json!({"index": 0, "delta": {"content": text}, "logprobs": null, "finish_reason": null}),
        |reason| json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": reason}),
    );
    Ok(sse_with_done(
        stream::once(async move { first }).chain(rest),
    ))
}

/// Renders the engine's stream as OpenAI chunks: one per non-empty token text, a final one with
/// the finish reason, a usage chunk when asked, and the error body if generation fails midway.
fn openai_chunks(
    items: impl futures::Stream<Item = StreamItem> + Send + 'static,
    chunk: impl Fn(Value, Value) -> Value + Send + 'static,
    include_usage: bool,
    token_choice: fn(&str) -> Value,
    final_choice: fn(&str) -> Value,
) -> impl futures::Stream<Item = Value> + Send + 'static {
    items.flat_map(move |item| {
        let out: Vec<Value> = match item {
            StreamItem::Token { text, .. } if text.is_empty() => vec![],
            StreamItem::Token { text, .. } => {
                vec![chunk(json!([token_choice(&text)]), Value::Null)]
            }
            StreamItem::Done(c) => {
                let mut v = vec![chunk(
                    json!([final_choice(c.finish_reason.openai())]),
                    Value::Null,
                )];
                if include_usage {
                    v.push(chunk(json!([]), usage(&c)));
                }
                v
            }
            StreamItem::Error(e) => vec![e.body()],
        };
        stream::iter(out)
    })
}

/// OpenAI-style SSE: `data: {json}` lines, then `data: [DONE]`.
fn sse_with_done(chunks: impl futures::Stream<Item = Value> + Send + 'static) -> Response {
    let events = chunks
        .map(|v| SseEvent::default().data(v.to_string()))
        .chain(stream::once(async { SseEvent::default().data("[DONE]") }))
        .map(Ok::<_, Infallible>);
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

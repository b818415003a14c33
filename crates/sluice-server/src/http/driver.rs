//! Running one validated request on the engine and turning its events into either a finished
//! completion or a stream. Shared by the native and the OpenAI endpoints.

use futures::Stream;
use tokio::sync::mpsc;

use crate::admission::Permit;
use crate::engine::{Event, FinishReason, Timings, ValidRequest};
use crate::error::ApiError;

use super::AppState;

/// A finished generation.
#[derive(Debug, Clone)]
pub struct Completion {
    pub text: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub finish_reason: FinishReason,
    pub timings: Timings,
}

/// Everything a streaming response yields.
#[derive(Debug, Clone)]
pub enum StreamItem {
    Token { index: usize, id: u32, text: String },
    Done(Completion),
    Error(ApiError),
}

fn submit(
    state: &AppState,
    req: ValidRequest,
    span: &tracing::Span,
) -> mpsc::UnboundedReceiver<Event> {
    state.engine.submit(req, span.clone())
}

/// Waits for the whole completion. Dropping the future (client gone) drops the receiver, which
/// the engine notices at its next step and frees the slot.
pub async fn complete(
    state: &AppState,
    req: ValidRequest,
    span: &tracing::Span,
    _permit: Permit,
) -> Result<Completion, ApiError> {
    let mut rx = submit(state, req, span);
    let mut text = String::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Token { text: t, .. } => text.push_str(&t),
            Event::Done {
                finish_reason,
                prompt_tokens,
                completion_tokens,
                timings,
            } => {
                let _d =
                    tracing::info_span!(parent: span, "decode_output", completion_tokens).entered();
                return Ok(Completion {
                    text,
                    prompt_tokens,
                    completion_tokens,
                    finish_reason,
                    timings,
                });
            }
            Event::Error(e) => return Err(ApiError::Engine(e)),
        }
    }
    Err(ApiError::Internal(
        "the engine stopped before finishing the request".into(),
    ))
}

/// Streams tokens as they come. The permit moves into the stream so the slot stays taken until
/// the stream ends or the client disconnects (which drops the stream).
pub fn stream(
    state: &AppState,
    req: ValidRequest,
    span: &tracing::Span,
    permit: Permit,
) -> impl Stream<Item = StreamItem> + Send + 'static {
    let rx = submit(state, req, span);
    let span = span.clone();
    futures::stream::unfold(
        (rx, String::new(), false, permit, span),
        |(mut rx, mut text, done, permit, span)| async move {
            if done {
                return None;
            }
            let item = match rx.recv().await {
                Some(Event::Token { index, id, text: t }) => {
                    text.push_str(&t);
                    StreamItem::Token { index, id, text: t }
                }
                Some(Event::Done {
                    finish_reason,
                    prompt_tokens,
                    completion_tokens,
                    timings,
                }) => {
                    let full = std::mem::take(&mut text);
                    let c = Completion {
                        text: full,
                        prompt_tokens,
                        completion_tokens,
                        finish_reason,
                        timings,
                    };
                    return Some((StreamItem::Done(c), (rx, text, true, permit, span)));
                }
                Some(Event::Error(e)) => {
                    return Some((
                        StreamItem::Error(ApiError::Engine(e)),
                        (rx, text, true, permit, span),
                    ));
                }
                None => {
                    let e = ApiError::Internal(
                        "the engine stopped before finishing the request".into(),
                    );
                    return Some((StreamItem::Error(e), (rx, text, true, permit, span)));
                }
            };
            Some((item, (rx, text, false, permit, span)))
        },
    )
}

/// The span every request runs in, joined to the caller's trace when `traceparent` is sent.
pub fn request_span(route: &'static str, headers: &axum::http::HeaderMap) -> tracing::Span {
    let span = tracing::info_span!("request", route, otel.kind = "server");
    sluice_telemetry::adopt_remote_parent(&span, headers);
    span
}

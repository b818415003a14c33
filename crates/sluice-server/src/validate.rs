//! Turning client input into a [`ValidRequest`]: JSON parsing with the right status codes,
//! tokenization, and range checks on every sampling parameter.
//!
//! Documented clamps (rather than errors): a `max_tokens` above the server cap is lowered to the
//! cap — the cap is the operator's remediation lever and must not turn into client errors — and
//! to the context left after the prompt.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::engine::{GenerationParams, Limits, ModelView, ValidRequest};
use crate::error::ApiError;

/// When the request arrived, stamped by the outermost layer ([`stamp_arrival`]) before the body
/// is read: TTFT, the request duration and the deadline then count body reading, parsing and
/// tokenization, as the client's clock does.
#[derive(Debug, Clone, Copy)]
pub struct Arrival(pub Instant);

impl<S: Send + Sync> FromRequestParts<S> for Arrival {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // A router built without the layer (unit tests) still gets a sensible stamp.
        Ok(parts
            .extensions
            .get::<Arrival>()
            .copied()
            .unwrap_or_else(|| Arrival(Instant::now())))
    }
}

/// Middleware stamping [`Arrival`] on every request.
pub async fn stamp_arrival(mut req: Request, next: Next) -> Response {
    req.extensions_mut().insert(Arrival(Instant::now()));
    next.run(req).await
}

/// Most stop sequences a request may carry, and their longest length.
pub const MAX_STOP_SEQUENCES: usize = 8;
pub const MAX_STOP_LEN: usize = 256;

/// A JSON body extractor whose failures are [`ApiError`]s: syntax errors are 400, wrong types or
/// missing fields 422, an oversized body 413. The content type is not required.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(crate::http::BODY_LIMIT_BYTES)
            } else if caused_by::<tower_http::timeout::TimeoutError>(&rej) {
                ApiError::BodyTimeout
            } else {
                ApiError::BadRequest(format!("failed to read request body: {rej}"))
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// True when `err` or any error it wraps is an `E`.
fn caused_by<E: std::error::Error + 'static>(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<E>() {
            return true;
        }
        cur = e.source();
    }
    false
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::Unprocessable(format!("invalid request: {e}")),
            _ => ApiError::BadRequest(format!("malformed JSON: {e}")),
        }
    })
}

/// `stop` as a string or a list, as the OpenAI API allows.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(untagged)]
pub enum StopSpec {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl StopSpec {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            StopSpec::None => vec![],
            StopSpec::One(s) => vec![s],
            StopSpec::Many(v) => v,
        }
    }
}

/// Sampling fields shared by every endpoint, before validation. Integers are signed so that a
/// negative value is a range error (422) with a clear message rather than a type error.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawSampling {
    pub max_tokens: Option<i64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    pub seed: Option<u64>,
    #[serde(default)]
    pub stop: StopSpec,
    #[serde(default)]
    pub ignore_eos: bool,
}

static SEEDS: AtomicU64 = AtomicU64::new(0x5eed);

/// Checks the sampling fields and the prompt length against the model and the server limits;
/// `arrived` is when the request reached the server ([`Arrival`]).
pub fn validate(
    arrived: Instant,
    prompt_ids: Vec<u32>,
    raw: RawSampling,
    default_temperature: f64,
    view: &ModelView,
    limits: &Limits,
    timeout: Duration,
) -> Result<ValidRequest, ApiError> {
    let ctx = view.info.context_length;
    if prompt_ids.is_empty() {
        // A model needs at least one token to predict from; tokenizers that add no BOS token
        // turn an empty prompt into none.
        return Err(ApiError::BadRequest(
            "the prompt is empty after tokenization; send at least one token of text".into(),
        ));
    }
    if prompt_ids.len() >= ctx {
        return Err(ApiError::BadRequest(format!(
            "prompt has {} tokens but the model's context limit is {ctx} tokens (prompt + generated)",
            prompt_ids.len()
        )));
    }
    let cap = limits.max_tokens();
    let max_tokens = match raw.max_tokens {
        None => cap,
        Some(n) if n <= 0 => {
            return Err(ApiError::Unprocessable(format!(
                "max_tokens must be at least 1, got {n}"
            )));
        }
        Some(n) => (n as usize).min(cap),
    }
    .min(ctx - prompt_ids.len());
    let temperature = raw.temperature.unwrap_or(default_temperature);
    if !temperature.is_finite() || !(0.0..=100.0).contains(&temperature) {
        return Err(ApiError::Unprocessable(format!(
            "temperature must be in [0, 100], got {temperature}"
        )));
    }
    if let Some(p) = raw.top_p
        && !(p > 0.0 && p <= 1.0)
    {
        return Err(ApiError::Unprocessable(format!(
            "top_p must be in (0, 1], got {p}"
        )));
    }
    let top_k = match raw.top_k {
        None => None,
        Some(k) if k <= 0 => {
            return Err(ApiError::Unprocessable(format!(
                "top_k must be at least 1, got {k}"
            )));
        }
        Some(k) => Some(k as usize),
    };
    let stop: Vec<String> = raw
        .stop
        .into_vec()
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    if stop.len() > MAX_STOP_SEQUENCES {
        return Err(ApiError::Unprocessable(format!(
            "at most {MAX_STOP_SEQUENCES} stop sequences are allowed, got {}",
            stop.len()
        )));
    }
    if let Some(s) = stop.iter().find(|s| s.len() > MAX_STOP_LEN) {
        return Err(ApiError::Unprocessable(format!(
            "stop sequences are limited to {MAX_STOP_LEN} bytes, got {}",
            s.len()
        )));
    }
    let seed = raw.seed.unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        t ^ SEEDS.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
    });
    Ok(ValidRequest {
        prompt_ids,
        params: GenerationParams {
            max_tokens,
            temperature,
            top_p: raw.top_p,
            top_k,
            seed,
            stop,
            ignore_eos: raw.ignore_eos,
        },
        arrived,
        deadline: arrived + timeout,
        model_epoch: view.epoch,
    })
}

/// Tokenizes off the async threads (long prompts take a while) inside a `tokenize_input` span.
pub async fn tokenize(
    view: &ModelView,
    text: String,
    span: &tracing::Span,
) -> Result<Vec<u32>, ApiError> {
    let tok = view.tokenizer.clone();
    let tspan = tracing::info_span!(parent: span, "tokenize_input", bytes = text.len());
    tokio::task::spawn_blocking(move || {
        let _e = tspan.enter();
        tok.encode(text, true)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| ApiError::BadRequest(format!("failed to tokenize prompt: {e}")))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("tokenizer task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ModelInfo, chat::ChatTemplate, tiny};
    use std::sync::Arc;

    fn view() -> ModelView {
        ModelView {
            info: ModelInfo {
                served_name: "m".into(),
                source: "builtin:tiny".into(),
                quantization: "f32".into(),
                device: "cpu".into(),
                context_length: 100,
                weight_bytes: 0,
                kv_bytes_per_token: 0,
                load_seconds: 0.0,
                eos_token_ids: vec![1],
            },
            tokenizer: Arc::new(tiny::tokenizer().unwrap()),
            chat: Arc::new(ChatTemplate::default_template("<s>", "</s>")),
            epoch: 1,
        }
    }

    fn check(ids: usize, raw: RawSampling) -> Result<ValidRequest, ApiError> {
        validate(
            Instant::now(),
            vec![5; ids],
            raw,
            0.0,
            &view(),
            &Limits::new(50, 8, 4),
            Duration::from_secs(5),
        )
    }

    #[test]
    fn range_errors_are_422_with_the_field_named() {
        let cases: Vec<(RawSampling, &str)> = vec![
            (
                RawSampling {
                    max_tokens: Some(0),
                    ..Default::default()
                },
                "max_tokens",
            ),
            (
                RawSampling {
                    max_tokens: Some(-3),
                    ..Default::default()
                },
                "max_tokens",
            ),
            (
                RawSampling {
                    temperature: Some(-0.1),
                    ..Default::default()
                },
                "temperature",
            ),
            (
                RawSampling {
                    temperature: Some(f64::NAN),
                    ..Default::default()
                },
                "temperature",
            ),
            (
                RawSampling {
                    top_p: Some(0.0),
                    ..Default::default()
                },
                "top_p",
            ),
            (
                RawSampling {
                    top_p: Some(1.5),
                    ..Default::default()
                },
                "top_p",
            ),
            (
                RawSampling {
                    top_k: Some(0),
                    ..Default::default()
                },
                "top_k",
            ),
            (
                RawSampling {
                    stop: StopSpec::Many(vec!["x".into(); 9]),
                    ..Default::default()
                },
                "stop",
            ),
        ];
        for (raw, field) in cases {
            let err = check(3, raw).unwrap_err();
            assert_eq!(err.status().as_u16(), 422, "{err}");
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn prompt_over_context_is_400_naming_the_limit() {
        let err = check(100, RawSampling::default()).unwrap_err();
        assert_eq!(err.status().as_u16(), 400);
        assert!(err.to_string().contains("100 tokens"), "{err}");
    }

    /// Regression: an empty prompt on a tokenizer that adds no BOS token reached the engine as
    /// zero tokens and failed the whole batch it joined.
    #[test]
    fn a_prompt_of_no_tokens_is_400() {
        let err = check(0, RawSampling::default()).unwrap_err();
        assert_eq!(err.status().as_u16(), 400);
        assert!(err.to_string().contains("empty"), "{err}");
    }

    #[test]
    fn max_tokens_defaults_to_and_is_clamped_by_the_cap_and_context() {
        assert_eq!(
            check(3, RawSampling::default()).unwrap().params.max_tokens,
            50
        );
        let r = check(
            3,
            RawSampling {
                max_tokens: Some(500),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(r.params.max_tokens, 50);
        let r = check(
            90,
            RawSampling {
                max_tokens: Some(40),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(r.params.max_tokens, 10);
        let r = check(
            3,
            RawSampling {
                max_tokens: Some(7),
                top_p: Some(1.0),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(r.params.max_tokens, 7);
    }

    #[test]
    fn json_errors_split_into_syntax_400_and_type_422() {
        #[derive(Debug, Deserialize)]
        struct B {
            #[allow(dead_code)]
            prompt: String,
        }
        assert_eq!(
            parse_json::<B>(b"{not json").unwrap_err().status().as_u16(),
            400
        );
        assert_eq!(
            parse_json::<B>(br#"{"prompt": 5}"#)
                .unwrap_err()
                .status()
                .as_u16(),
            422
        );
        assert_eq!(
            parse_json::<B>(br#"{}"#).unwrap_err().status().as_u16(),
            422
        );
        assert!(parse_json::<B>(br#"{"prompt": "x"}"#).is_ok());
    }
}

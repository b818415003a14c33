//! Request bodies for `/v1/completions`, `/v1/chat/completions` and `/generate` → the server's
//! JSON parsing, chat rendering, tokenization and validation into a `ValidRequest`, on the tiny
//! model's real tokenizer. Any bytes are either a `ValidRequest` within the limits or a 4xx
//! `ApiError`, never a panic or a 5xx.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sluice_server::engine::{Limits, ModelView, ValidRequest};
use sluice_server::error::ApiError;
use sluice_server::http::native::GenerateRequest;
use sluice_server::http::openai::{ChatRequest, CompletionRequest, PromptInput};
use sluice_server::model::chat::ChatTemplate;
use sluice_server::model::{ModelInfo, tiny};
use sluice_server::validate::{RawSampling, parse_json, validate};

const CONTEXT: usize = 256;
const CAP: usize = 64;

fn view() -> &'static ModelView {
    static V: OnceLock<ModelView> = OnceLock::new();
    V.get_or_init(|| ModelView {
        info: ModelInfo {
            served_name: "tiny".into(),
            source: "builtin:tiny".into(),
            quantization: "f32".into(),
            device: "cpu".into(),
            context_length: CONTEXT,
            weight_bytes: 0,
            kv_bytes_per_token: 0,
            load_seconds: 0.0,
            eos_token_ids: vec![1],
        },
        tokenizer: Arc::new(tiny::tokenizer().expect("the tiny tokenizer builds")),
        chat: Arc::new(ChatTemplate::default_template("<s>", "</s>")),
        epoch: 1,
    })
}

fn finish(prompt: String, sampling: RawSampling) -> Result<ValidRequest, ApiError> {
    let v = view();
    let ids = v
        .tokenizer
        .encode(prompt, true)
        .map(|e| e.get_ids().to_vec())
        .map_err(|e| ApiError::BadRequest(format!("failed to tokenize prompt: {e}")))?;
    validate(
        Instant::now(),
        ids,
        sampling,
        1.0,
        v,
        &Limits::new(CAP, 8, 4),
        Duration::from_secs(30),
    )
}

fn run(data: &[u8]) -> Result<ValidRequest, ApiError> {
    let (&route, body) = data
        .split_first()
        .ok_or(ApiError::BadRequest("empty".into()))?;
    match route % 3 {
        0 => {
            let req: CompletionRequest = parse_json(body)?;
            let prompt = match req.prompt {
                PromptInput::Text(t) => t,
                PromptInput::Texts(mut v) if v.len() == 1 => v.remove(0),
                PromptInput::Texts(_) => return Err(ApiError::Unprocessable("batched".into())),
            };
            finish(prompt, req.sampling)
        }
        1 => {
            let req: ChatRequest = parse_json(body)?;
            let prompt = view()
                .chat
                .render(&req.messages)
                .map_err(ApiError::Unprocessable)?;
            finish(prompt, req.sampling)
        }
        _ => {
            let req: GenerateRequest = parse_json(body)?;
            finish(req.prompt, req.sampling)
        }
    }
}

fuzz_target!(|data: &[u8]| {
    match run(data) {
        Ok(req) => {
            let p = &req.params;
            assert!(
                p.max_tokens >= 1 && p.max_tokens <= CAP,
                "max_tokens {}",
                p.max_tokens
            );
            assert!(
                req.prompt_ids.len() + p.max_tokens <= CONTEXT,
                "context overrun"
            );
            assert!(p.temperature.is_finite() && p.temperature >= 0.0);
            assert!(p.top_p.is_none_or(|t| t.is_finite() && t > 0.0 && t <= 1.0));
            assert!(p.top_k.is_none_or(|k| k >= 1));
        }
        Err(e) => assert!(
            e.status().is_client_error(),
            "{e:?} is {} for client input",
            e.status()
        ),
    }
});

//! The generation engine: a scheduler thread that owns the model and runs continuous batching.
//!
//! HTTP handlers hand it validated requests ([`ValidRequest`]) over a channel and read
//! [`Event`]s back; they never touch the model. The scheduler is generic over [`StepModel`], so
//! the queueing logic is tested with a fake model.

mod limits;
mod runner;
mod scheduler;
mod sequence;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sluice_contract::metrics::{ErrorReason, RequestStatus};
use tokenizers::Tokenizer;
use tokio::sync::mpsc;

pub use limits::{DEFAULT_CPU_PREFILL_TOKENS, DEFAULT_MAX_PREFILL_TOKENS, Limits, LimitsUpdate};
pub use runner::{LlamaRunner, StepModel};
/// Stop-sequence matching, public for the fuzz targets (`fuzz/`).
pub use sequence::{StopText, find_stop, held_back};

use crate::metrics::Metrics;
use crate::model::ModelInfo;
use crate::model::chat::ChatTemplate;

/// Steps in a row that fail every sequence before `/health` reports the engine unhealthy (one
/// bad request fails one step; a broken model fails them all).
pub const UNHEALTHY_AFTER_FAILED_STEPS: u64 = 5;

/// Sampling and stopping parameters after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationParams {
    pub max_tokens: usize,
    /// 0 means greedy.
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
    pub seed: u64,
    pub stop: Vec<String>,
    /// Keep generating past end-of-sequence tokens (load tests want fixed lengths).
    pub ignore_eos: bool,
}

/// A request the engine can run as is: tokenized, within limits, with a deadline.
#[derive(Debug, Clone)]
pub struct ValidRequest {
    pub prompt_ids: Vec<u32>,
    pub params: GenerationParams,
    pub arrived: Instant,
    pub deadline: Instant,
    /// Identifies the model generation the ids were tokenized for; a request queued across a
    /// model swap is failed rather than run with the wrong vocabulary.
    pub model_epoch: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// `max_tokens` (or the context) was reached.
    Length,
    /// A stop sequence matched.
    Stop,
    /// The model produced an end-of-sequence token.
    Eos,
}

impl FinishReason {
    /// The OpenAI API spelling.
    pub fn openai(self) -> &'static str {
        match self {
            FinishReason::Length => "length",
            FinishReason::Stop | FinishReason::Eos => "stop",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Timings {
    pub queue_seconds: f64,
    pub ttft_seconds: f64,
    pub tpot_seconds: f64,
    pub total_seconds: f64,
}

/// What the engine sends back for one request: one `Token` per generated token, then `Done`,
/// or an `Error` at any point.
#[derive(Debug, Clone)]
pub enum Event {
    Token {
        index: usize,
        id: u32,
        text: String,
    },
    Done {
        finish_reason: FinishReason,
        prompt_tokens: usize,
        completion_tokens: usize,
        timings: Timings,
    },
    Error(EngineError),
}

/// Why the engine could not finish a request.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum EngineError {
    #[error("request deadline of {0:?} exceeded")]
    Timeout(Duration),
    #[error("no model is loaded")]
    NoModel,
    #[error("the model was replaced while the request waited; retry")]
    ModelChanged,
    #[error(
        "request needs {needed_mb} MB of KV cache but only {available_mb} MB fit the memory budget"
    )]
    InsufficientMemory { needed_mb: u64, available_mb: u64 },
    #[error("the engine is shutting down")]
    ShuttingDown,
    #[error("failed to run the model: {0}")]
    Internal(String),
}

impl EngineError {
    /// How a request that failed this way is counted: the `llm_requests_total` status and the
    /// `llm_errors_total` reason (also the error body's `type`).
    pub fn outcome(&self) -> (RequestStatus, ErrorReason) {
        match self {
            EngineError::Timeout(_) => (RequestStatus::Timeout, ErrorReason::Timeout),
            EngineError::Internal(_) => (RequestStatus::Error, ErrorReason::Internal),
            EngineError::InsufficientMemory { .. }
            | EngineError::NoModel
            | EngineError::ModelChanged
            | EngineError::ShuttingDown => (RequestStatus::Error, ErrorReason::Unavailable),
        }
    }
}

/// A loaded model as the HTTP side sees it: everything needed to validate and tokenize.
#[derive(Clone)]
pub struct ModelView {
    pub info: ModelInfo,
    pub tokenizer: Arc<Tokenizer>,
    pub chat: Arc<ChatTemplate>,
    pub epoch: u64,
}

pub(crate) struct Job {
    request: ValidRequest,
    events: mpsc::UnboundedSender<Event>,
    span: tracing::Span,
}

/// A model the scheduler can run, with what it needs besides the forward pass.
pub struct EngineModel {
    pub runner: Box<dyn StepModel>,
    pub tokenizer: Arc<Tokenizer>,
    pub eos: Vec<u32>,
}

/// What [`Engine::start`] and [`Engine::swap`] take: the runnable model, what clients are told
/// about it, and its chat template.
pub type ServedModel = (EngineModel, ModelInfo, Arc<ChatTemplate>);

impl EngineModel {
    /// Wraps a freshly loaded model for the scheduler.
    pub fn serve(loaded: crate::model::LoadedModel) -> ServedModel {
        let info = loaded.info;
        let model = EngineModel {
            runner: Box::new(LlamaRunner::new(loaded.model)),
            tokenizer: loaded.tokenizer,
            eos: info.eos_token_ids.clone(),
        };
        (model, info, loaded.chat)
    }
}

pub(crate) enum Command {
    Generate(Box<Job>),
    /// Replace (or with `None`, unload) the model once the running batch is empty; with `true`,
    /// requests queued for earlier epochs stay valid (a new precision of the same model).
    Swap(Option<EngineModel>, u64, bool),
}

/// State shared between the scheduler thread and the HTTP side.
pub struct Shared {
    alive: AtomicBool,
    /// Steps in a row in which every running sequence failed; a model that fails everything it
    /// is given is not healthy even though the thread lives.
    failed_steps_in_a_row: AtomicU64,
    pub limits: Limits,
    pub metrics: Metrics,
    model: RwLock<Option<ModelView>>,
    epoch: AtomicU64,
    /// Bytes the KV cache may use (memory budget minus weights); set on each swap.
    pub memory_budget_bytes: u64,
}

/// A handle to the scheduler thread. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
}

impl Engine {
    /// Starts the scheduler thread, optionally with a model already loaded.
    pub fn start(
        model: Option<ServedModel>,
        limits: Limits,
        metrics: Metrics,
        memory_budget_bytes: u64,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            alive: AtomicBool::new(true),
            failed_steps_in_a_row: AtomicU64::new(0),
            limits,
            metrics,
            model: RwLock::new(None),
            epoch: AtomicU64::new(0),
            memory_budget_bytes,
        });
        shared.limits.publish(&shared.metrics);
        let engine = Self { tx, shared };
        let initial = model.map(|(m, info, chat)| {
            let epoch = engine.publish_model(Some((&info, m.tokenizer.clone(), chat)));
            (m, epoch)
        });
        scheduler::spawn(rx, engine.shared.clone(), initial);
        engine
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// False once the scheduler thread has exited (or panicked): `/health` fails on it.
    pub fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::SeqCst) && !self.tx.is_closed()
    }

    /// Why the engine cannot serve, if it cannot: its thread stopped, or its last
    /// [`UNHEALTHY_AFTER_FAILED_STEPS`] steps failed every sequence they ran. `/health` and
    /// `/ready` report it.
    pub fn unhealthy(&self) -> Option<String> {
        if !self.is_alive() {
            return Some("the engine thread has stopped".into());
        }
        let failed = self.shared.failed_steps_in_a_row.load(Ordering::SeqCst);
        (failed >= UNHEALTHY_AFTER_FAILED_STEPS)
            .then(|| format!("the last {failed} engine steps failed every sequence they ran"))
    }

    pub fn model(&self) -> Option<ModelView> {
        self.shared.model.read().ok().and_then(|m| m.clone())
    }

    /// Queues a request; events arrive on the returned receiver.
    pub fn submit(
        &self,
        request: ValidRequest,
        span: tracing::Span,
    ) -> mpsc::UnboundedReceiver<Event> {
        let (events, rx) = mpsc::unbounded_channel();
        let job = Box::new(Job {
            request,
            events,
            span,
        });
        if let Err(mpsc::error::SendError(Command::Generate(job))) =
            self.tx.send(Command::Generate(job))
        {
            let _ = job.events.send(Event::Error(EngineError::ShuttingDown));
        }
        rx
    }

    /// Installs a new model (or unloads with `None`); takes effect when the running batch drains.
    /// Requests queued for the old model fail with [`EngineError::ModelChanged`]: their tokens
    /// belong to another tokenizer.
    pub fn swap(&self, model: Option<ServedModel>) {
        self.install(model, false);
    }

    /// Installs the same model at another precision (same tokenizer, same vocabulary): requests
    /// queued for the old weights stay queued and run on the new ones, so the switch fails no
    /// request. Takes effect when the running batch drains.
    pub fn requantize(&self, model: ServedModel) {
        self.install(Some(model), true);
    }

    fn install(&self, model: Option<ServedModel>, keeps_requests: bool) {
        let (m, view) = match model {
            Some((m, info, chat)) => {
                let tok = m.tokenizer.clone();
                (Some(m), Some((info, tok, chat)))
            }
            None => (None, None),
        };
        let epoch = self.publish_model(view.as_ref().map(|(i, t, c)| (i, t.clone(), c.clone())));
        let _ = self.tx.send(Command::Swap(m, epoch, keeps_requests));
    }

    fn publish_model(&self, view: Option<(&ModelInfo, Arc<Tokenizer>, Arc<ChatTemplate>)>) -> u64 {
        let epoch = self.shared.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        let metrics = &self.shared.metrics;
        match &view {
            Some((info, _, _)) => metrics.set_model(
                Some((&info.served_name, &info.quantization, &info.device)),
                info.load_seconds,
            ),
            None => metrics.set_model(None, 0.0),
        }
        if let Ok(mut slot) = self.shared.model.write() {
            *slot = view.map(|(info, tokenizer, chat)| ModelView {
                info: info.clone(),
                tokenizer,
                chat,
                epoch,
            });
        }
        epoch
    }
}

#[cfg(test)]
mod tests;

//! The scheduler thread: continuous batching over a [`StepModel`].
//!
//! Each iteration drains the command channel, drops requests whose client left or whose deadline
//! passed, admits waiting requests into the running batch (bounded by the batch-size limit and
//! the KV memory budget), runs one forward step for every running sequence — a newcomer feeds its
//! whole prompt, the others one token — and streams the sampled tokens back. Finished sequences
//! leave at once; their place is taken at the next token boundary.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use candle_core::Tensor;
use sluice_contract::metrics::{ErrorReason, MemoryType, RequestStatus};
use tokio::sync::mpsc;

use super::sequence::Sequence;
use super::{Command, EngineError, EngineModel, Event, Job, Shared, StepModel, Timings};
use crate::memory;

pub(super) fn spawn(
    rx: mpsc::UnboundedReceiver<Command>,
    shared: Arc<Shared>,
    initial: Option<(EngineModel, u64)>,
) {
    let result = std::thread::Builder::new()
        .name("sluice-engine".into())
        .spawn(move || {
            // Marks the engine dead however the thread ends, a panic included, so /health fails
            // instead of a dead engine looking healthy.
            let _alive = AliveGuard(shared.clone());
            let (model, epoch) = match initial {
                Some((m, e)) => (Some(m), e),
                None => (None, 0),
            };
            Scheduler {
                rx,
                shared,
                model,
                epoch,
                oldest_valid_epoch: epoch,
                pending_swap: None,
                waiting: VecDeque::new(),
                running: Vec::new(),
                next_id: 0,
            }
            .run();
        });
    if let Err(e) = result {
        tracing::error!(error = %e, "failed to start the engine thread");
    }
}

struct AliveGuard(Arc<Shared>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::SeqCst);
        if std::thread::panicking() {
            tracing::error!("the engine thread panicked; /health now fails");
        }
    }
}

struct Waiting {
    job: Box<Job>,
    span: tracing::Span,
}

struct Active {
    id: u64,
    job: Box<Job>,
    seq: Sequence,
    reserved: usize,
    admitted_at: Instant,
    span: tracing::Span,
}

impl Active {
    /// Whether the whole prompt is in the KV cache (the sequence decodes from here on).
    fn prefill_done(&self) -> bool {
        let len = self.job.request.prompt_ids.len();
        len > 0 && self.seq.prefill_pos >= len
    }
}

/// How many prompt tokens each prefilling sequence (oldest first, `remaining` tokens each) feeds
/// this step: the oldest take what they need until `budget` is spent; the rest wait. At least
/// one token goes in, so a budget of 0 cannot stall prefill. Pure.
pub(super) fn prefill_chunks(remaining: &[usize], budget: usize) -> Vec<usize> {
    let mut left = budget.max(1);
    remaining
        .iter()
        .map(|&r| {
            let n = r.min(left);
            left -= n;
            n
        })
        .collect()
}

struct Scheduler {
    rx: mpsc::UnboundedReceiver<Command>,
    shared: Arc<Shared>,
    model: Option<EngineModel>,
    epoch: u64,
    /// Requests validated at an epoch from here up to `epoch` may run on the current model:
    /// a requantization keeps the tokenizer, so it does not invalidate the queue.
    oldest_valid_epoch: u64,
    /// The next model, its epoch, and whether it keeps queued requests valid.
    pending_swap: Option<(Option<EngineModel>, u64, bool)>,
    waiting: VecDeque<Waiting>,
    running: Vec<Active>,
    next_id: u64,
}

enum Outcome {
    Cancelled,
    Failed(EngineError),
}

/// How a running sequence left the batch this step (`None` in the list: the client went away).
enum Finish {
    Done(Event),
    Error(EngineError),
}

impl Scheduler {
    fn run(&mut self) {
        loop {
            let idle =
                self.running.is_empty() && self.waiting.is_empty() && self.pending_swap.is_none();
            if idle {
                self.publish_gauges();
                match self.rx.blocking_recv() {
                    Some(cmd) => self.handle(cmd),
                    None => return,
                }
            }
            loop {
                match self.rx.try_recv() {
                    Ok(cmd) => self.handle(cmd),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        if self.running.is_empty() && self.waiting.is_empty() {
                            return;
                        }
                        break;
                    }
                }
            }
            if self.running.is_empty()
                && let Some((model, epoch, keeps_requests)) = self.pending_swap.take()
            {
                self.model = model;
                self.epoch = epoch;
                if !keeps_requests {
                    self.oldest_valid_epoch = epoch;
                }
            }
            self.drop_waiting_that_cannot_run();
            self.drop_running_that_left();
            self.admit();
            if !self.running.is_empty() {
                self.step();
            }
            self.publish_gauges();
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Generate(job) => {
                let span = tracing::info_span!(parent: &job.span, "queue_wait");
                self.waiting.push_back(Waiting { job, span });
            }
            Command::Swap(model, epoch, keeps_requests) => {
                self.pending_swap = Some((model, epoch, keeps_requests));
            }
        }
    }

    fn finish_waiting(&self, w: Waiting, outcome: Outcome) {
        self.record(&w.job, &outcome);
        if let Outcome::Failed(e) = outcome {
            let _ = w.job.events.send(Event::Error(e));
        }
    }

    fn record(&self, job: &Job, outcome: &Outcome) {
        let m = &self.shared.metrics;
        match outcome {
            Outcome::Cancelled => m.finish(RequestStatus::Cancelled, Some(ErrorReason::Cancelled)),
            Outcome::Failed(e) => {
                let (status, reason) = e.outcome();
                m.finish(status, Some(reason));
            }
        }
        m.request_duration
            .observe(job.request.arrived.elapsed().as_secs_f64());
    }

    /// Queued requests whose client is gone, whose deadline passed, or that cannot run on the
    /// current model leave the queue before they take a batch slot.
    fn drop_waiting_that_cannot_run(&mut self) {
        let now = Instant::now();
        let swapping = self.pending_swap.is_some();
        let mut keep = VecDeque::with_capacity(self.waiting.len());
        while let Some(w) = self.waiting.pop_front() {
            let req = &w.job.request;
            if w.job.events.is_closed() {
                self.finish_waiting(w, Outcome::Cancelled);
            } else if now >= req.deadline {
                let limit = req.deadline - req.arrived;
                self.finish_waiting(w, Outcome::Failed(EngineError::Timeout(limit)));
            } else if swapping {
                keep.push_back(w);
            } else if self.model.is_none() {
                self.finish_waiting(w, Outcome::Failed(EngineError::NoModel));
            } else if !(self.oldest_valid_epoch..=self.epoch).contains(&req.model_epoch) {
                self.finish_waiting(w, Outcome::Failed(EngineError::ModelChanged));
            } else {
                keep.push_back(w);
            }
        }
        self.waiting = keep;
    }

    fn drop_running_that_left(&mut self) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.running.len() {
            let a = &self.running[i];
            let outcome = if a.job.events.is_closed() {
                Some(Outcome::Cancelled)
            } else if now >= a.job.request.deadline {
                Some(Outcome::Failed(EngineError::Timeout(
                    a.job.request.deadline - a.job.request.arrived,
                )))
            } else {
                None
            };
            match outcome {
                Some(o) => {
                    let a = self.running.swap_remove(i);
                    self.release(&a);
                    self.record(&a.job, &o);
                    if let Outcome::Failed(e) = o {
                        let _ = a.job.events.send(Event::Error(e));
                    }
                }
                None => i += 1,
            }
        }
    }

    fn admit(&mut self) {
        if self.pending_swap.is_some() {
            return;
        }
        let Some(model) = &self.model else { return };
        let per_token = model.runner.kv_bytes_per_token();
        let ctx = model.runner.context_length();
        let capacity =
            (self.shared.memory_budget_bytes as usize).saturating_sub(model.runner.weight_bytes());
        let max_batch = self.shared.limits.max_batch_size().max(1);
        while self.running.len() < max_batch {
            let Some(front) = self.waiting.front() else {
                break;
            };
            let req = &front.job.request;
            let needed = (req.prompt_ids.len() + req.params.max_tokens).min(ctx) * per_token;
            let reserved: usize = self.running.iter().map(|a| a.reserved).sum();
            let in_use = reserved.max(model.runner.kv_bytes());
            if in_use + needed > capacity {
                if self.running.is_empty() {
                    let w = self.waiting.pop_front().expect("front exists");
                    let e = EngineError::InsufficientMemory {
                        needed_mb: (needed >> 20) as u64,
                        available_mb: (capacity >> 20) as u64,
                    };
                    self.finish_waiting(w, Outcome::Failed(e));
                    continue;
                }
                break;
            }
            let w = self.waiting.pop_front().expect("front exists");
            let now = Instant::now();
            self.shared
                .metrics
                .queue_wait
                .observe(now.duration_since(w.job.request.arrived).as_secs_f64());
            drop(w.span);
            let span = tracing::info_span!(parent: &w.job.span, "model_generate", prompt_tokens = w.job.request.prompt_ids.len());
            self.shared
                .metrics
                .prompt_tokens
                .inc_by(w.job.request.prompt_ids.len() as u64);
            self.next_id += 1;
            self.running.push(Active {
                id: self.next_id,
                seq: Sequence::new(&w.job.request.params),
                job: w.job,
                reserved: needed,
                admitted_at: now,
                span,
            });
        }
    }

    fn release(&mut self, a: &Active) {
        if let Some(m) = &mut self.model {
            m.runner.release(a.id);
        }
    }

    fn step(&mut self) {
        let Some(model) = &mut self.model else { return };
        // Running streams feed their last token; prompts not yet read in get chunks, oldest
        // first, within the step's prefill budget — so a burst of new prompts cannot stall the
        // running streams for longer than one budget's worth of prefill.
        let mut prefilling: Vec<usize> = (0..self.running.len())
            .filter(|&i| !self.running[i].prefill_done())
            .collect();
        prefilling.sort_by_key(|&i| self.running[i].id);
        let remaining: Vec<usize> = prefilling
            .iter()
            .map(|&i| {
                let a = &self.running[i];
                a.job.request.prompt_ids.len() - a.seq.prefill_pos
            })
            .collect();
        let chunks = prefill_chunks(&remaining, self.shared.limits.max_prefill_tokens());
        // (index into `running`, sequence id, tokens fed this step)
        let mut inputs: Vec<(usize, u64, Vec<u32>)> = Vec::new();
        for (i, a) in self.running.iter().enumerate() {
            if a.prefill_done() {
                let last = *a
                    .seq
                    .generated
                    .last()
                    .expect("a prefilled sequence has a token");
                inputs.push((i, a.id, vec![last]));
            }
        }
        for ((&i, &n), &left) in prefilling.iter().zip(&chunks).zip(&remaining) {
            // An empty prompt (validation refuses them) is fed as is, and fails itself.
            if n > 0 || left == 0 {
                let a = &self.running[i];
                let from = a.seq.prefill_pos;
                inputs.push((i, a.id, a.job.request.prompt_ids[from..from + n].to_vec()));
            }
        }
        let prefill_spans: Vec<tracing::Span> = inputs
            .iter()
            .filter(|(i, ..)| !self.running[*i].prefill_done())
            .map(|(i, _, tokens)| {
                let a = &self.running[*i];
                tracing::info_span!(parent: &a.span, "prefill", tokens = tokens.len(), from = a.seq.prefill_pos, batch = inputs.len())
            })
            .collect();
        let refs: Vec<(u64, &[u32])> = inputs
            .iter()
            .map(|(_, id, t)| (*id, t.as_slice()))
            .collect();
        self.shared.metrics.batch_size.observe(refs.len() as f64);
        let rows = step_isolated(model.runner.as_mut(), &refs);
        drop(prefill_spans);
        let ctx = model.runner.context_length();
        let now = Instant::now();
        let mut finished = Vec::new();
        for ((i, _, fed), row) in inputs.iter().zip(&rows) {
            let i = *i;
            let a = &mut self.running[i];
            if !a.prefill_done() {
                // A chunk of the prompt: only its last chunk's logits are sampled.
                if row.is_ok() {
                    a.seq.prefill_pos += fed.len();
                }
                if row.is_ok() && !a.prefill_done() {
                    continue;
                }
            }
            let req = &a.job.request;
            let used = req.prompt_ids.len() + a.seq.generated.len() + 1;
            let outcome = row.clone().and_then(|row| {
                contained(|| {
                    a.seq
                        .advance(
                            &row,
                            &model.tokenizer,
                            &req.params,
                            &model.eos,
                            ctx.saturating_sub(used),
                        )
                        .map_err(|e| EngineError::Internal(format!("failed to sample: {e}")))
                })
            });
            let outcome = match outcome {
                Ok(o) => o,
                Err(e) => {
                    finished.push((i, Some(Finish::Error(e))));
                    continue;
                }
            };
            let m = &self.shared.metrics;
            m.generated_tokens.inc();
            match a.seq.last_token_at {
                None => {
                    m.ttft
                        .observe(now.duration_since(req.arrived).as_secs_f64());
                    a.seq.first_token_at = Some(now);
                }
                Some(prev) => m.tpot.observe(now.duration_since(prev).as_secs_f64()),
            }
            a.seq.last_token_at = Some(now);
            let index = a.seq.generated.len() - 1;
            let sent = a.job.events.send(Event::Token {
                index,
                id: outcome.id,
                text: outcome.text,
            });
            if sent.is_err() {
                finished.push((i, None));
                continue;
            }
            if let Some(reason) = outcome.finish {
                let first = a.seq.first_token_at.unwrap_or(now);
                let n = a.seq.generated.len();
                let timings = Timings {
                    queue_seconds: a.admitted_at.duration_since(req.arrived).as_secs_f64(),
                    ttft_seconds: first.duration_since(req.arrived).as_secs_f64(),
                    tpot_seconds: if n > 1 {
                        now.duration_since(first).as_secs_f64() / (n - 1) as f64
                    } else {
                        0.0
                    },
                    total_seconds: now.duration_since(req.arrived).as_secs_f64(),
                };
                let done = Event::Done {
                    finish_reason: reason,
                    prompt_tokens: req.prompt_ids.len(),
                    completion_tokens: n,
                    timings,
                };
                m.finish(RequestStatus::Success, None);
                m.request_duration.observe(timings.total_seconds);
                m.prefill
                    .observe(first.duration_since(a.admitted_at).as_secs_f64());
                if n > 1 {
                    m.decode.observe(now.duration_since(first).as_secs_f64());
                }
                finished.push((i, Some(Finish::Done(done))));
            }
        }
        let failed = finished
            .iter()
            .filter(|(_, f)| matches!(f, Some(Finish::Error(_))))
            .count();
        if failed > 0 {
            self.shared.metrics.engine_failed_steps.inc();
        }
        if failed == inputs.len() {
            self.shared
                .failed_steps_in_a_row
                .fetch_add(1, Ordering::SeqCst);
        } else {
            self.shared.failed_steps_in_a_row.store(0, Ordering::SeqCst);
        }
        // Remove from the back so earlier indices stay valid.
        finished.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
        for (i, err) in finished {
            let a = self.running.swap_remove(i);
            self.release(&a);
            match err {
                // The cache is freed before the client hears it is done, so anyone reacting to
                // the answer sees the memory already returned.
                Some(Finish::Done(ev)) => {
                    let _ = a.job.events.send(ev);
                }
                Some(Finish::Error(e)) => {
                    self.record(&a.job, &Outcome::Failed(e.clone()));
                    let _ = a.job.events.send(Event::Error(e));
                }
                None => self.record(&a.job, &Outcome::Cancelled),
            }
        }
    }

    fn publish_gauges(&self) {
        let m = &self.shared.metrics;
        m.queue_depth.set(self.waiting.len() as i64);
        m.running.set(self.running.len() as i64);
        let budget = self.shared.memory_budget_bytes as f64;
        let (weights, kv, device) = self
            .model
            .as_ref()
            .map(|m| {
                (
                    m.runner.weight_bytes() as f64,
                    m.runner.kv_bytes() as f64,
                    m.runner.device_memory(),
                )
            })
            .unwrap_or((0.0, 0.0, None));
        // On a GPU the device's own count (everything allocated on it, as nvidia-smi shows);
        // on CPU what would live there, against the budget.
        match device {
            Some((used, total)) => m.set_memory(MemoryType::Vram, used as f64, total as f64),
            None => m.set_memory(MemoryType::Vram, weights + kv, budget),
        }
        m.set_memory(MemoryType::KvCache, kv, (budget - weights).max(0.0));
        m.set_memory(
            MemoryType::Ram,
            memory::rss_bytes() as f64,
            memory::total_ram_bytes().unwrap_or(0) as f64,
        );
    }
}

/// Runs one forward step so that a failure can only fail the sequences that cause it: when the
/// batched step fails (or panics), each sequence is retried alone, and only those that fail alone
/// get the error. Returns one logits row (or the error) per input, in order.
///
/// A failed step leaves every cache as it was (a cache's length only grows once the whole
/// forward pass succeeded), so the retry computes the same rows the batch would have.
pub(super) fn step_isolated(
    runner: &mut dyn StepModel,
    batch: &[(u64, &[u32])],
) -> Vec<Result<Tensor, EngineError>> {
    let rows = |logits: Tensor, n: usize| -> Vec<Result<Tensor, EngineError>> {
        (0..n)
            .map(|i| {
                logits
                    .get(i)
                    .map_err(|e| EngineError::Internal(format!("failed to read logits: {e}")))
            })
            .collect()
    };
    let forward = |runner: &mut dyn StepModel, batch: &[(u64, &[u32])]| {
        contained(|| {
            runner
                .step(batch)
                .map_err(|e| EngineError::Internal(e.to_string()))
        })
    };
    match forward(runner, batch) {
        Ok(logits) => rows(logits, batch.len()),
        Err(e) if batch.len() == 1 => {
            tracing::error!(error = %e, sequence = batch[0].0, "forward step failed");
            vec![Err(e)]
        }
        Err(e) => {
            tracing::warn!(error = %e, batch = batch.len(), "batched forward step failed; retrying each sequence alone");
            batch
                .iter()
                .map(|one| {
                    let row = forward(runner, std::slice::from_ref(one))
                        .and_then(|l| rows(l, 1).remove(0));
                    if let Err(e) = &row {
                        tracing::error!(error = %e, sequence = one.0, "forward step failed");
                    }
                    row
                })
                .collect()
        }
    }
}

/// Runs `f`, turning a panic into an [`EngineError::Internal`] for the caller's sequences
/// instead of unwinding through (and killing) the scheduler thread.
fn contained<T>(f: impl FnOnce() -> Result<T, EngineError>) -> Result<T, EngineError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let what = panic_message(payload.as_ref());
        tracing::error!(panic = %what, "contained a panic in the engine");
        Err(EngineError::Internal(format!(
            "the engine panicked: {what}"
        )))
    })
}

/// The text a panic was raised with.
pub(super) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

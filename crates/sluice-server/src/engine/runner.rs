//! The boundary between the scheduler and a model: a [`StepModel`] runs one ragged batch step and
//! owns the per-sequence KV caches, so the scheduler never sees tensors except the logits.

use std::collections::HashMap;

use candle_core::Tensor;

use crate::model::llama::{Llama, SeqCache, SeqStep};

/// A model the scheduler can drive.
pub trait StepModel: Send {
    /// Feeds each `(sequence, new tokens)` pair and returns `[n, vocab]` logits, row `i` for the
    /// last token of pair `i`. A sequence seen for the first time gets a fresh cache.
    fn step(&mut self, batch: &[(u64, &[u32])]) -> candle_core::Result<Tensor>;
    /// Frees a sequence's cache.
    fn release(&mut self, seq: u64);
    /// Bytes currently allocated for all KV caches.
    fn kv_bytes(&self) -> usize;
    /// Bytes held by weights.
    fn weight_bytes(&self) -> usize;
    /// The longest sequence (prompt + generated) the model accepts.
    fn context_length(&self) -> usize;
    /// KV bytes per token, for admission's memory reservation.
    fn kv_bytes_per_token(&self) -> usize;
    /// Accelerator memory as the device reports it, `(used, total)` bytes; `None` on CPU,
    /// where there is no device to ask.
    fn device_memory(&self) -> Option<(u64, u64)> {
        None
    }
}

/// Runs a [`Llama`] with one cache per live sequence.
pub struct LlamaRunner {
    model: Llama,
    caches: HashMap<u64, SeqCache>,
}

impl LlamaRunner {
    pub fn new(model: Llama) -> Self {
        Self {
            model,
            caches: HashMap::new(),
        }
    }
}

impl StepModel for LlamaRunner {
    fn step(&mut self, batch: &[(u64, &[u32])]) -> candle_core::Result<Tensor> {
        // Take the caches out so each step borrows its own cache mutably and the model
        // immutably at once; they go back afterwards, including on error.
        let mut taken: Vec<(u64, SeqCache)> = batch
            .iter()
            .map(|(id, _)| {
                let cache = self
                    .caches
                    .remove(id)
                    .unwrap_or_else(|| self.model.new_cache());
                (*id, cache)
            })
            .collect();
        let result = {
            let mut steps: Vec<SeqStep<'_>> = taken
                .iter_mut()
                .zip(batch)
                .map(|((_, cache), (_, tokens))| SeqStep { tokens, cache })
                .collect();
            // A panic must not lose the caches taken out above: they go back either way, and
            // a cache's length only advances once the whole pass succeeded, so each stays valid.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.model.forward(&mut steps)
            }))
            .unwrap_or_else(|payload| {
                Err(candle_core::Error::msg(format!(
                    "the forward pass panicked: {}",
                    super::scheduler::panic_message(payload.as_ref())
                )))
            })
        };
        for (id, cache) in taken {
            self.caches.insert(id, cache);
        }
        result
    }

    fn release(&mut self, seq: u64) {
        self.caches.remove(&seq);
    }

    fn kv_bytes(&self) -> usize {
        self.caches.values().map(SeqCache::bytes).sum()
    }

    fn weight_bytes(&self) -> usize {
        self.model.weight_bytes()
    }

    fn context_length(&self) -> usize {
        self.model.config().max_position_embeddings
    }

    fn kv_bytes_per_token(&self) -> usize {
        self.model.kv_bytes_per_token()
    }

    fn device_memory(&self) -> Option<(u64, u64)> {
        crate::memory::device_memory(self.model.device())
    }
}

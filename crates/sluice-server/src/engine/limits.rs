//! Server-wide limits that the operator changes at run time (its fastest lever): the
//! `max_tokens` cap and the admission limits. Atomics, so every request sees a change at once.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::metrics::Metrics;

/// Prompt tokens prefilled per step unless told otherwise (`--max-prefill-tokens`), on a GPU.
pub const DEFAULT_MAX_PREFILL_TOKENS: usize = 512;
/// The same on CPU, where prefill is two orders of magnitude slower.
pub const DEFAULT_CPU_PREFILL_TOKENS: usize = 64;

#[derive(Debug)]
pub struct Limits {
    max_tokens: AtomicUsize,
    max_concurrent_requests: AtomicUsize,
    max_batch_size: AtomicUsize,
    /// Prompt tokens prefilled per step (set at start; not an operator lever).
    max_prefill_tokens: AtomicUsize,
}

/// The limits as JSON (`GET /admin/limits`), and a partial update (`PUT /admin/limits`): the
/// contract's type, named for what the handler does with it.
pub use sluice_contract::admin::Limits as LimitsUpdate;

impl Limits {
    pub fn new(max_tokens: usize, max_concurrent_requests: usize, max_batch_size: usize) -> Self {
        Self {
            max_tokens: AtomicUsize::new(max_tokens),
            max_concurrent_requests: AtomicUsize::new(max_concurrent_requests),
            max_batch_size: AtomicUsize::new(max_batch_size),
            max_prefill_tokens: AtomicUsize::new(DEFAULT_MAX_PREFILL_TOKENS),
        }
    }

    /// These limits with `n` prompt tokens prefilled per step (at least 1).
    pub fn with_max_prefill_tokens(self, n: usize) -> Self {
        self.max_prefill_tokens.store(n.max(1), Ordering::Relaxed);
        self
    }

    pub fn max_prefill_tokens(&self) -> usize {
        self.max_prefill_tokens.load(Ordering::Relaxed)
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens.load(Ordering::Relaxed)
    }
    pub fn max_concurrent_requests(&self) -> usize {
        self.max_concurrent_requests.load(Ordering::Relaxed)
    }
    pub fn max_batch_size(&self) -> usize {
        self.max_batch_size.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> LimitsUpdate {
        LimitsUpdate {
            max_tokens: Some(self.max_tokens()),
            max_concurrent_requests: Some(self.max_concurrent_requests()),
            max_batch_size: Some(self.max_batch_size()),
        }
    }

    /// Checks every field before changing any, so a bad update changes nothing.
    pub fn apply(&self, update: LimitsUpdate, metrics: &Metrics) -> Result<LimitsUpdate, String> {
        for (name, value) in [
            ("max_tokens", update.max_tokens),
            ("max_concurrent_requests", update.max_concurrent_requests),
            ("max_batch_size", update.max_batch_size),
        ] {
            if value == Some(0) {
                return Err(format!("{name} must be at least 1"));
            }
            if value.is_some_and(|v| v > 1_000_000) {
                return Err(format!("{name} must be at most 1000000"));
            }
        }
        if let Some(v) = update.max_tokens {
            self.max_tokens.store(v, Ordering::Relaxed);
        }
        if let Some(v) = update.max_concurrent_requests {
            self.max_concurrent_requests.store(v, Ordering::Relaxed);
        }
        if let Some(v) = update.max_batch_size {
            self.max_batch_size.store(v, Ordering::Relaxed);
        }
        self.publish(metrics);
        Ok(self.snapshot())
    }

    pub fn publish(&self, metrics: &Metrics) {
        metrics.max_tokens_cap.set(self.max_tokens() as i64);
        metrics
            .max_concurrent
            .set(self.max_concurrent_requests() as i64);
        metrics.max_batch.set(self.max_batch_size() as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_updates_apply_and_bad_ones_change_nothing() {
        let m = Metrics::new();
        let l = Limits::new(256, 64, 16);
        let out = l
            .apply(
                LimitsUpdate {
                    max_tokens: Some(32),
                    ..Default::default()
                },
                &m,
            )
            .unwrap();
        assert_eq!(out.max_tokens, Some(32));
        assert_eq!(l.max_batch_size(), 16);
        assert_eq!(m.max_tokens_cap.get(), 32);
        let err = l
            .apply(
                LimitsUpdate {
                    max_tokens: Some(8),
                    max_batch_size: Some(0),
                    ..Default::default()
                },
                &m,
            )
            .unwrap_err();
        assert!(err.contains("max_batch_size"));
        assert_eq!(l.max_tokens(), 32, "a rejected update must not half-apply");
    }
}

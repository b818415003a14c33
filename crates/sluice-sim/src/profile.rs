//! A server profile: what `sluice profile` measures of one `sluice-server` and the simulator
//! replays. It is also a performance model ([`Profile::capacity`]): how much traffic one replica
//! carries at a TTFT objective, which the planner's model-based sizing uses.
//!
//! Times are piecewise linear in the measured points and extrapolated from the last two, so a
//! profile measured up to batch 16 still answers for batch 20 (pessimistically, linearly).

use serde::{Deserialize, Serialize};
use sluice_contract::Quantization;

/// One measured point: `x` (prompt tokens, or batch size) → seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Prompt tokens or batch size.
    pub x: f64,
    /// Seconds.
    pub seconds: f64,
}

/// What one quantization of the model costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Variant {
    /// The `--quantization` this was measured with.
    pub quantization: Quantization,
    /// Prefill time of one prompt by its length (tokens), ascending.
    pub prefill: Vec<Point>,
    /// Time of one decode step by the number of sequences decoding, ascending.
    pub decode_step: Vec<Point>,
    /// Bytes of weights resident.
    pub weight_bytes: u64,
    /// KV-cache bytes per token of one sequence.
    pub kv_bytes_per_token: u64,
    /// Seconds a hot switch to this quantization takes (the server keeps serving the old weights
    /// meanwhile and admits nothing new).
    pub swap_seconds: f64,
}

/// A measured server: its limits, start-up time and one [`Variant`] per quantization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// Short name (`tiny`, `tinyllama-cpu`, `gpu-7b`).
    pub name: String,
    /// Where the numbers come from (machine, command, date).
    pub source: String,
    /// Seconds from a pod's creation to Ready (image pull excluded, model load included).
    pub start_seconds: f64,
    /// `--max-concurrent-requests`: requests admitted (running + waiting); beyond it, 429.
    pub max_concurrent_requests: u32,
    /// `--max-batch-size`: sequences decoding together.
    pub max_batch_size: u32,
    /// `--memory-budget-mb` in bytes: weights plus KV cache.
    pub memory_budget_bytes: u64,
    /// The model's context length (prompt + output tokens of one sequence).
    pub context_length: u32,
    /// True when the server runs on a GPU: the simulator then reports utilisation (busy share
    /// of each step loop) the way the DCGM join does; CPU servers report it Unknown.
    #[serde(default)]
    pub gpu: bool,
    /// Measured quantizations, highest precision first.
    pub variants: Vec<Variant>,
}

/// Why a profile cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProfileError {
    /// The profile names no quantization.
    #[error("failed to read profile {0}: it has no variants")]
    NoVariants(String),
    /// A curve is empty, unsorted or has a non-finite or negative value.
    #[error(
        "failed to read profile {name}: {quantization} {curve} must be non-empty, ascending in x, with finite non-negative seconds"
    )]
    Curve {
        /// Profile name.
        name: String,
        /// Variant.
        quantization: Quantization,
        /// `prefill` or `decodeStep`.
        curve: &'static str,
    },
    /// A limit is zero, or the weights do not fit the budget.
    #[error("failed to read profile {name}: {message}")]
    Limits {
        /// Profile name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// Not JSON of the profile's shape.
    #[error("failed to parse profile: {0}")]
    Json(String),
}

fn interpolate(points: &[Point], x: f64) -> f64 {
    match points {
        [] => 0.0,
        [p] => p.seconds * (x / p.x.max(1.0)).max(0.0),
        _ => {
            let i = points
                .windows(2)
                .position(|w| x <= w[1].x)
                .unwrap_or(points.len() - 2);
            let (a, b) = (points[i], points[i + 1]);
            let t = if b.x > a.x {
                (x - a.x) / (b.x - a.x)
            } else {
                0.0
            };
            (a.seconds + t * (b.seconds - a.seconds)).max(0.0)
        }
    }
}

impl Variant {
    /// Seconds to prefill a prompt of `tokens`.
    pub fn prefill_seconds(&self, tokens: u32) -> f64 {
        interpolate(&self.prefill, f64::from(tokens))
    }

    /// Seconds of one decode step over `batch` sequences (0 for none).
    pub fn decode_seconds(&self, batch: usize) -> f64 {
        if batch == 0 {
            return 0.0;
        }
        interpolate(&self.decode_step, batch as f64)
    }
}

impl Profile {
    /// Parses and validates a profile.
    pub fn from_json(text: &str) -> Result<Self, ProfileError> {
        let p: Profile =
            serde_json::from_str(text).map_err(|e| ProfileError::Json(e.to_string()))?;
        p.validate()?;
        Ok(p)
    }

    /// Checks curves and limits.
    pub fn validate(&self) -> Result<(), ProfileError> {
        if self.variants.is_empty() {
            return Err(ProfileError::NoVariants(self.name.clone()));
        }
        let limits = |message: String| ProfileError::Limits {
            name: self.name.clone(),
            message,
        };
        if self.max_concurrent_requests == 0 || self.max_batch_size == 0 || self.context_length < 2
        {
            return Err(limits(
                "maxConcurrentRequests and maxBatchSize must be >= 1, contextLength >= 2".into(),
            ));
        }
        if !(self.start_seconds.is_finite() && self.start_seconds >= 0.0) {
            return Err(limits("startSeconds must be finite and >= 0".into()));
        }
        for v in &self.variants {
            for (curve, pts) in [("prefill", &v.prefill), ("decodeStep", &v.decode_step)] {
                let ok = !pts.is_empty()
                    && pts
                        .iter()
                        .all(|p| p.x.is_finite() && p.seconds.is_finite() && p.seconds >= 0.0)
                    && pts.windows(2).all(|w| w[0].x < w[1].x);
                if !ok {
                    return Err(ProfileError::Curve {
                        name: self.name.clone(),
                        quantization: v.quantization,
                        curve,
                    });
                }
            }
            if v.weight_bytes >= self.memory_budget_bytes || v.kv_bytes_per_token == 0 {
                return Err(limits(format!(
                    "{}: weights ({} B) must fit in memoryBudgetBytes ({} B) and kvBytesPerToken must be >= 1",
                    v.quantization, v.weight_bytes, self.memory_budget_bytes
                )));
            }
            if !(v.swap_seconds.is_finite() && v.swap_seconds >= 0.0) {
                return Err(limits(format!(
                    "{}: swapSeconds must be >= 0",
                    v.quantization
                )));
            }
        }
        Ok(())
    }

    /// The variant measured for `q`, else the first (highest precision).
    pub fn variant(&self, q: Quantization) -> &Variant {
        self.variants
            .iter()
            .find(|v| v.quantization == q)
            .unwrap_or(&self.variants[0])
    }

    /// Quantizations measured, highest precision first: the ladder the planner may walk.
    pub fn ladder(&self) -> Vec<Quantization> {
        self.variants.iter().map(|v| v.quantization).collect()
    }

    /// KV bytes one replica has for sequences under quantization `q`.
    pub fn kv_capacity_bytes(&self, q: Quantization) -> u64 {
        self.memory_budget_bytes
            .saturating_sub(self.variant(q).weight_bytes)
    }

    /// Requests per second one replica sustains for a token mix (`prompt` and `output` tokens on
    /// average) while its TTFT stays within `ttft_seconds`: the largest batch whose step loop
    /// still serves the load, found by the steady-state balance of a continuous-batching server
    /// (each request costs one prefill plus `output` decode steps shared with the batch). The
    /// batch is bounded by `--max-batch-size` and by the KV cache reserved per sequence.
    pub fn capacity(&self, q: Quantization, prompt: f64, output: f64, max_tokens: u32) -> Capacity {
        let v = self.variant(q);
        let out = output.clamp(1.0, f64::from(max_tokens.max(1)));
        let reserve = (prompt + f64::from(max_tokens)).min(f64::from(self.context_length));
        let kv_batch = (self.kv_capacity_bytes(q) as f64 / (reserve * v.kv_bytes_per_token as f64))
            .floor()
            .max(1.0);
        let batch = f64::from(self.max_batch_size).min(kv_batch).max(1.0);
        let prefill = v.prefill_seconds(prompt.round().max(1.0) as u32);
        // In steady state with `b` sequences decoding, each step takes decode(b) plus the
        // prefills of the sequences that joined; a request spends `out` steps in the batch, so
        // the loop completes b / out requests per step.
        let step = v.decode_seconds(batch as usize);
        let per_request = prefill + out * step / batch;
        Capacity {
            requests_per_second: 1.0 / per_request,
            batch,
            limited_by_memory: kv_batch < f64::from(self.max_batch_size),
        }
    }
}

/// What [`Profile::capacity`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    /// Sustainable requests per second per replica at full batch.
    pub requests_per_second: f64,
    /// Sequences decoding together at that load.
    pub batch: f64,
    /// True when the KV cache, not `--max-batch-size`, bounds the batch.
    pub limited_by_memory: bool,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small made-up GPU-like profile for unit tests.
    pub fn test_profile() -> Profile {
        let pts = |v: &[(f64, f64)]| {
            v.iter()
                .map(|&(x, seconds)| Point { x, seconds })
                .collect::<Vec<_>>()
        };
        let variant = |q, scale: f64, weights| Variant {
            quantization: q,
            prefill: pts(&[(16.0, 0.004 * scale), (1024.0, 0.05 * scale)]),
            decode_step: pts(&[(1.0, 0.010 * scale), (16.0, 0.016 * scale)]),
            weight_bytes: weights,
            kv_bytes_per_token: 4096,
            swap_seconds: 2.0,
        };
        Profile {
            name: "test".into(),
            source: "unit test".into(),
            start_seconds: 30.0,
            max_concurrent_requests: 64,
            max_batch_size: 16,
            memory_budget_bytes: 1 << 30,
            context_length: 4096,
            gpu: true,
            variants: vec![
                variant(Quantization::F16, 1.0, 600 << 20),
                variant(Quantization::Q8_0, 0.8, 300 << 20),
                variant(Quantization::Q4_0, 0.7, 150 << 20),
            ],
        }
    }

    #[test]
    fn curves_interpolate_and_extrapolate() {
        let p = test_profile();
        let v = p.variant(Quantization::F16);
        assert!((v.decode_seconds(1) - 0.010).abs() < 1e-12);
        assert!((v.decode_seconds(16) - 0.016).abs() < 1e-12);
        assert!(
            (v.decode_seconds(32) - 0.0224).abs() < 1e-9,
            "{}",
            v.decode_seconds(32)
        );
        assert_eq!(v.decode_seconds(0), 0.0);
        assert!(v.prefill_seconds(520) > v.prefill_seconds(16));
    }

    #[test]
    fn validation_names_the_problem() {
        let mut p = test_profile();
        p.variants[0].decode_step.reverse();
        assert!(matches!(
            p.validate(),
            Err(ProfileError::Curve {
                curve: "decodeStep",
                ..
            })
        ));
        let mut p = test_profile();
        p.memory_budget_bytes = 100;
        assert!(p.validate().unwrap_err().to_string().contains("must fit"));
        assert!(Profile::from_json("{").is_err());
        let text = serde_json::to_string(&test_profile()).unwrap();
        assert_eq!(Profile::from_json(&text).unwrap(), test_profile());
    }

    #[test]
    fn capacity_falls_with_longer_outputs_and_rises_when_kv_frees() {
        let mut p = test_profile();
        // 64 KiB per token: 424 MiB of KV holds about 6,800 tokens.
        p.variants[0].kv_bytes_per_token = 64 << 10;
        let short = p.capacity(Quantization::F16, 200.0, 50.0, 256);
        let long = p.capacity(Quantization::F16, 200.0, 400.0, 1024);
        assert!(short.requests_per_second > long.requests_per_second);
        // 1024 + 200 tokens reserved per sequence: KV bounds the batch below 16.
        assert!(long.limited_by_memory, "{long:?}");
        let clamped = p.capacity(Quantization::F16, 200.0, 400.0, 256);
        assert!(clamped.batch > long.batch);
    }
}

//! Attention on CPU for a whole ragged batch at once, reading each sequence's KV cache in place
//! (f32 or f16).
//!
//! Candle's path runs three small ops per sequence and layer (`Q Kᵀ`, softmax, `P V`); at decode
//! each is a few microseconds of dispatch around a tiny product, and at 16 sequences × 22 layers
//! that overhead outweighs the arithmetic. Here one parallel pass covers every (sequence, KV
//! head) pair of the step: a task takes the query rows of the `n_rep` heads sharing that KV
//! head, and each row's scores, softmax and weighted sum of values are computed together in one
//! [`kernel::attend_row`] call while the keys and values are still in cache. An f16 cache is
//! widened as it is read (F16C), so it costs half the memory and half the reads of f32.
//!
//! A row's result depends only on its query and its sequence's cache, never on batch-mates or
//! on how tasks are split (see [`kernel`] for the summation order).

pub mod kernel;

use std::sync::Mutex;

use half::f16;

pub use kernel::{Isa, KvElem};

/// The dimensions every sequence of a model shares.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Multiplies the scores (`1 / √head_dim`).
    pub scale: f32,
}

/// One sequence's KV cache for one layer: `[capacity, n_kv_heads, head_dim]`, row-major (token
/// by token, so a step appends its rows in one contiguous copy).
#[derive(Debug, Clone, Copy)]
pub enum Cache<'a> {
    F32 { k: &'a [f32], v: &'a [f32] },
    F16 { k: &'a [f16], v: &'a [f16] },
}

/// One sequence's share of a step.
#[derive(Debug, Clone, Copy)]
pub struct Seq<'a> {
    /// Rotated queries, `[t, n_heads, head_dim]` (rows of the batch's query matrix).
    pub q: &'a [f32],
    /// New tokens this step (already written to the cache at `past..past + t`).
    pub t: usize,
    /// Tokens cached before this step.
    pub past: usize,
    pub cache: Cache<'a>,
    /// Rows allocated per KV head in the cache.
    pub capacity: usize,
}

/// Computes causal attention for every sequence; returns the outputs concatenated in sequence
/// order, each `[t, n_heads * head_dim]` (the layout the output projection takes).
///
/// # Panics
/// If a sequence's slices do not match `dims` (a caller bug, not an input error).
pub fn attend(isa: Isa, dims: Dims, seqs: &[Seq<'_>]) -> Vec<f32> {
    let Dims {
        n_heads,
        n_kv_heads,
        head_dim: hd,
        ..
    } = dims;
    assert!(
        n_kv_heads > 0 && n_heads.is_multiple_of(n_kv_heads),
        "heads not grouped"
    );
    let n_rep = n_heads / n_kv_heads;
    let rows: usize = seqs.iter().map(|s| s.t).sum();
    let mut out = vec![0f32; rows * n_heads * hd];
    // Task (sequence s, KV head h) writes the contiguous [n_rep, t, hd] block of heads
    // h·n_rep.. in s's head-major output; handing each its own &mut keeps them disjoint.
    let mut blocks: Vec<Mutex<&mut [f32]>> = Vec::with_capacity(seqs.len() * n_kv_heads);
    let mut rest = out.as_mut_slice();
    for s in seqs {
        check(dims, s);
        for _ in 0..n_kv_heads {
            let (block, tail) = rest.split_at_mut(n_rep * s.t * hd);
            blocks.push(Mutex::new(block));
            rest = tail;
        }
    }
    candle_core::utils::barrier_pool().execute_chunked(blocks.len(), |range| {
        let mut scores = Vec::new();
        for task in range {
            let (s, h) = (&seqs[task / n_kv_heads], task % n_kv_heads);
            let mut block = blocks[task].lock().unwrap_or_else(|e| e.into_inner());
            match s.cache {
                Cache::F32 { k, v } => group(isa, dims, s, h, k, v, &mut scores, &mut block),
                Cache::F16 { k, v } => group(isa, dims, s, h, k, v, &mut scores, &mut block),
            }
        }
    });
    drop(blocks);
    if seqs.iter().all(|s| s.t == 1) {
        // [n_heads, 1, hd] is already [1, n_heads * hd].
        return out;
    }
    let mut rowwise = vec![0f32; out.len()];
    let mut base = 0;
    for s in seqs {
        for head in 0..n_heads {
            for i in 0..s.t {
                let from = base + (head * s.t + i) * hd;
                let to = base + (i * n_heads + head) * hd;
                rowwise[to..to + hd].copy_from_slice(&out[from..from + hd]);
            }
        }
        base += s.t * n_heads * hd;
    }
    rowwise
}

fn check(dims: Dims, s: &Seq<'_>) {
    let hd = dims.head_dim;
    assert_eq!(s.q.len(), dims.n_heads * s.t * hd, "queries mis-sized");
    assert!(s.past + s.t <= s.capacity, "cache rows beyond its capacity");
    let len = dims.n_kv_heads * s.capacity * hd;
    let (k, v) = match s.cache {
        Cache::F32 { k, v } => (k.len(), v.len()),
        Cache::F16 { k, v } => (k.len(), v.len()),
    };
    assert!(
        k == len && v == len,
        "cache is not [n_kv, capacity, head_dim]"
    );
}

/// The `n_rep` query heads of KV head `h`, every new token of sequence `s`.
#[allow(clippy::too_many_arguments)]
fn group<T: KvElem>(
    isa: Isa,
    dims: Dims,
    s: &Seq<'_>,
    h: usize,
    k: &[T],
    v: &[T],
    scores: &mut Vec<f32>,
    block: &mut [f32],
) {
    let hd = dims.head_dim;
    let n_rep = dims.n_heads / dims.n_kv_heads;
    // KV head h's row of token j is at (j * n_kv + h) * hd.
    let (k, v) = (&k[h * hd..], &v[h * hd..]);
    scores.resize(s.past + s.t, 0.0);
    for r in 0..n_rep {
        let head = h * n_rep + r;
        for i in 0..s.t {
            let q = &s.q[(i * dims.n_heads + head) * hd..][..hd];
            let o = &mut block[(r * s.t + i) * hd..][..hd];
            // Causal: the query at position past + i sees keys 0..=past + i.
            let rows = kernel::Rows {
                k,
                v,
                n: s.past + i + 1,
                stride: dims.n_kv_heads * hd,
            };
            kernel::attend_row(isa, q, rows, dims.scale, scores, o);
        }
    }
}

#[cfg(test)]
mod tests;

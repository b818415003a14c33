//! The llama-architecture decoder (llama 2/3, TinyLlama, Mistral, Qwen2) written for continuous
//! batching: one forward pass takes a *ragged* batch — each sequence contributes any number of
//! new tokens (its whole prompt on the first step, one token afterwards) and owns its KV cache.
//!
//! The linear layers run once on the stacked rows of every sequence, which is where batching pays:
//! each weight is read once per step for the whole batch. Attention runs per sequence because
//! each has its own cache length.

use candle_core::{D, DType, Device, Result, Tensor};
use candle_nn::RmsNorm;
use candle_nn::rotary_emb::{rope, rope_i};

use super::config::{ModelConfig, RopeStyle};
use super::linear::{Linear, tensor_bytes};

/// One decoder block's weights.
#[derive(Debug, Clone)]
pub struct Block {
    pub attn_norm: RmsNorm,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub ffn_norm: RmsNorm,
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

impl Block {
    fn bytes(&self) -> usize {
        [
            &self.q, &self.k, &self.v, &self.o, &self.gate, &self.up, &self.down,
        ]
        .iter()
        .map(|l| l.bytes())
        .sum::<usize>()
    }
}

/// All weights of a loaded model plus precomputed rotary tables.
#[derive(Debug, Clone)]
pub struct Llama {
    cfg: ModelConfig,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: RmsNorm,
    lm_head: Linear,
    cos: Tensor,
    sin: Tensor,
    weight_bytes: usize,
    device: Device,
}

/// The parts a loader hands over; kept as a struct so loaders cannot mix up argument order.
#[derive(Debug)]
pub struct LlamaParts {
    pub embed: Tensor,
    pub blocks: Vec<Block>,
    pub norm_weight: Tensor,
    pub lm_head: Linear,
}

/// Per-layer key/value storage of one sequence, grown geometrically so appends are amortised
/// O(1) rather than a full copy per generated token.
#[derive(Debug, Default)]
struct LayerKv {
    k: Option<Tensor>,
    v: Option<Tensor>,
    capacity: usize,
}

/// The KV cache of one sequence across all layers.
#[derive(Debug)]
pub struct SeqCache {
    layers: Vec<LayerKv>,
    len: usize,
}

impl SeqCache {
    /// Tokens already in the cache (the position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes allocated for this sequence's keys and values.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.k.as_ref().map_or(0, tensor_bytes) + l.v.as_ref().map_or(0, tensor_bytes))
            .sum()
    }
}

/// One sequence's share of a forward step.
#[derive(Debug)]
pub struct SeqStep<'a> {
    pub tokens: &'a [u32],
    pub cache: &'a mut SeqCache,
}

impl Llama {
    pub fn new(cfg: ModelConfig, parts: LlamaParts, device: &Device) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::msg)?;
        let (cos, sin) = rope_tables(&cfg, device)?;
        let embed = parts.embed.to_dtype(DType::F32)?;
        let norm = RmsNorm::new(parts.norm_weight.to_dtype(DType::F32)?, cfg.rms_norm_eps);
        let weight_bytes = tensor_bytes(&embed)
            + parts.lm_head.bytes()
            + parts.blocks.iter().map(Block::bytes).sum::<usize>();
        Ok(Self {
            cfg,
            embed,
            blocks: parts.blocks,
            norm,
            lm_head: parts.lm_head,
            cos,
            sin,
            weight_bytes,
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Bytes held by the weights (embedding, blocks, head).
    pub fn weight_bytes(&self) -> usize {
        self.weight_bytes
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn new_cache(&self) -> SeqCache {
        SeqCache {
            layers: (0..self.cfg.num_hidden_layers)
                .map(|_| LayerKv::default())
                .collect(),
            len: 0,
        }
    }

    /// Runs one step over a ragged batch and returns `[n_seqs, vocab]` f32 logits of each
    /// sequence's last new token. Caches advance by the number of tokens each sequence fed.
    pub fn forward(&self, seqs: &mut [SeqStep<'_>]) -> Result<Tensor> {
        if seqs.is_empty() {
            candle_core::bail!("forward called with an empty batch");
        }
        let max_pos = self.cfg.max_position_embeddings;
        let mut all_tokens = Vec::new();
        for s in seqs.iter() {
            if s.tokens.is_empty() {
                candle_core::bail!("a sequence fed no tokens");
            }
            if s.cache.len + s.tokens.len() > max_pos {
                candle_core::bail!(
                    "sequence of {} tokens exceeds the context of {max_pos}",
                    s.cache.len + s.tokens.len()
                );
            }
            all_tokens.extend_from_slice(s.tokens);
        }
        let ids = Tensor::new(all_tokens.as_slice(), &self.device)?;
        let mut x = self.embed.index_select(&ids, 0)?;
        for (layer, block) in self.blocks.iter().enumerate() {
            let h = x.apply(&block.attn_norm)?;
            let attn = self.attention(block, layer, &h, seqs)?;
            x = (x + block.o.forward(&attn)?)?;
            let h = x.apply(&block.ffn_norm)?;
            let gate = candle_nn::ops::silu(&block.gate.forward(&h)?)?;
            let ff = block.down.forward(&(gate * block.up.forward(&h)?)?)?;
            x = (x + ff)?;
        }
        let mut last_rows = Vec::with_capacity(seqs.len());
        let mut offset = 0u32;
        for s in seqs.iter_mut() {
            offset += s.tokens.len() as u32;
            last_rows.push(offset - 1);
            s.cache.len += s.tokens.len();
        }
        let last = Tensor::new(last_rows.as_slice(), &self.device)?;
        let x = x.index_select(&last, 0)?.apply(&self.norm)?;
        self.lm_head.forward(&x)
    }

    fn attention(
        &self,
        block: &Block,
        layer: usize,
        h: &Tensor,
        seqs: &mut [SeqStep<'_>],
    ) -> Result<Tensor> {
        let cfg = &self.cfg;
        let (n_heads, n_kv, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let n_rep = n_heads / n_kv;
        let q = block.q.forward(h)?;
        let k = block.k.forward(h)?;
        let v = block.v.forward(h)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let mut outs = Vec::with_capacity(seqs.len());
        let mut offset = 0;
        for s in seqs.iter_mut() {
            let t = s.tokens.len();
            let past = s.cache.len;
            let heads = |m: &Tensor, n: usize| -> Result<Tensor> {
                m.narrow(0, offset, t)?
                    .reshape((t, n, hd))?
                    .transpose(0, 1)?
                    .contiguous()?
                    .unsqueeze(0)
            };
            let cos = self.cos.narrow(0, past, t)?;
            let sin = self.sin.narrow(0, past, t)?;
            let qi = self.rotate(&heads(&q, n_heads)?, &cos, &sin)?.squeeze(0)?;
            let ki = self.rotate(&heads(&k, n_kv)?, &cos, &sin)?.squeeze(0)?;
            let vi = heads(&v, n_kv)?.squeeze(0)?;
            let (k_all, v_all) = append_kv(&mut s.cache.layers[layer], &ki, &vi, past, cfg)?;
            let total = past + t;
            // Grouped-query attention without copying K/V: the n_rep query heads that share a
            // KV head are adjacent, so they fold into that head's row dimension.
            let qg = qi.reshape((n_kv, n_rep * t, hd))?;
            let scores = (qg.matmul(&k_all.t()?)? * scale)?;
            let scores = if t > 1 {
                let mask = causal_mask(t, past, &self.device)?;
                scores
                    .reshape((n_kv, n_rep, t, total))?
                    .broadcast_add(&mask)?
                    .reshape((n_kv, n_rep * t, total))?
            } else {
                scores
            };
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let out = probs.matmul(&v_all)?; // [n_kv, n_rep*t, hd]
            let out = out
                .reshape((n_heads, t, hd))?
                .transpose(0, 1)?
                .reshape((t, n_heads * hd))?;
            outs.push(out);
            offset += t;
        }
        Tensor::cat(&outs, 0)
    }

    fn rotate(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        match self.cfg.rope_style {
            RopeStyle::Half => rope(x, cos, sin),
            RopeStyle::Interleaved => rope_i(x, cos, sin),
        }
    }
}

/// Writes this step's keys/values at `past` and returns views over everything cached so far.
fn append_kv(
    kv: &mut LayerKv,
    k: &Tensor,
    v: &Tensor,
    past: usize,
    cfg: &ModelConfig,
) -> Result<(Tensor, Tensor)> {
    let t = k.dim(1)?;
    let needed = past + t;
    if needed > kv.capacity || kv.k.is_none() {
        let capacity = needed
            .next_power_of_two()
            .max(32)
            .min(cfg.max_position_embeddings.max(needed));
        let shape = (cfg.num_key_value_heads, capacity, cfg.head_dim);
        let new_k = Tensor::zeros(shape, DType::F32, k.device())?;
        let new_v = Tensor::zeros(shape, DType::F32, k.device())?;
        if let (Some(old_k), Some(old_v)) = (&kv.k, &kv.v)
            && past > 0
        {
            new_k.slice_set(&old_k.narrow(1, 0, past)?.contiguous()?, 1, 0)?;
            new_v.slice_set(&old_v.narrow(1, 0, past)?.contiguous()?, 1, 0)?;
        }
        kv.k = Some(new_k);
        kv.v = Some(new_v);
        kv.capacity = capacity;
    }
    let (Some(ck), Some(cv)) = (&kv.k, &kv.v) else {
        candle_core::bail!("kv cache was not allocated");
    };
    ck.slice_set(k, 1, past)?;
    cv.slice_set(v, 1, past)?;
    Ok((ck.narrow(1, 0, needed)?, cv.narrow(1, 0, needed)?))
}

/// `[t, past + t]` additive mask: query `i` (at position `past + i`) sees keys `0..=past + i`.
fn causal_mask(t: usize, past: usize, device: &Device) -> Result<Tensor> {
    let total = past + t;
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| (0..total).map(move |j| if j > past + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (t, total), device)
}

fn rope_tables(cfg: &ModelConfig, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = cfg.head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f32 / cfg.head_dim as f32))
        .collect();
    let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
    let positions = Tensor::arange(0u32, cfg.max_position_embeddings as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((cfg.max_position_embeddings, 1))?;
    let freqs = positions.broadcast_mul(&inv_freq)?;
    Ok((freqs.cos()?, freqs.sin()?))
}

/// Reorders q/k rows the way llama.cpp's converter does, so a GGUF written from Hugging Face
/// weights rotates adjacent pairs ([`RopeStyle::Interleaved`]) and computes the same function.
pub fn permute_for_interleaved_rope(w: &Tensor, n_heads: usize) -> Result<Tensor> {
    let (out, inp) = w.dims2()?;
    let hd = out / n_heads;
    w.reshape((n_heads, 2, hd / 2, inp))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((out, inp))
}

/// Last-dimension argmax, used by tests and greedy decoding checks.
pub fn argmax_rows(logits: &Tensor) -> Result<Vec<u32>> {
    logits.argmax(D::Minus1)?.to_vec1::<u32>()
}

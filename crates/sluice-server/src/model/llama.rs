//! The llama-architecture decoder (llama 2/3, TinyLlama, Mistral, Qwen2) written for continuous
//! batching: one forward pass takes a *ragged* batch — each sequence contributes any number of
//! new tokens (its whole prompt on the first step, one token afterwards) and owns its KV cache.
//!
//! The linear layers run once on the stacked rows of every sequence, which is where batching pays:
//! each weight is read once per step for the whole batch. Attention reads each sequence's own
//! cache: on CPU in one parallel pass over the whole batch ([`super::attention`]), on an
//! accelerator with candle's matmuls per sequence. The cache holds f16 (the default: half the
//! memory per token) or f32 keys and values.

use candle_core::{D, DType, Device, Result, Tensor};
use candle_nn::RmsNorm;
use candle_nn::rotary_emb::{rope, rope_i};

use super::attention::{self, Cache, Dims, Isa};
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
    /// Element type of the KV cache: F16 or F32.
    kv_dtype: DType,
    /// The CPU attention kernel's instruction set; `None` runs candle's matmuls (always on an
    /// accelerator).
    attn_isa: Option<Isa>,
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
            kv_dtype: DType::F16,
            attn_isa: device.is_cpu().then(Isa::detect),
        })
    }

    /// Stores keys and values as `dtype` (F16 or F32) in caches created from now on.
    pub fn with_kv_dtype(mut self, dtype: DType) -> Result<Self> {
        if !matches!(dtype, DType::F16 | DType::F32) {
            candle_core::bail!("a KV cache holds f16 or f32, not {dtype:?}");
        }
        self.kv_dtype = dtype;
        Ok(self)
    }

    /// Element type of the KV cache.
    pub fn kv_dtype(&self) -> DType {
        self.kv_dtype
    }

    /// Bytes of K and V one token occupies across all layers.
    pub fn kv_bytes_per_token(&self) -> usize {
        self.cfg.kv_elements_per_token() * self.kv_dtype.size_in_bytes()
    }

    /// Runs attention with this CPU kernel, or with candle's matmuls (`None`), for tests that
    /// hold the paths to each other and benchmarks that time them side by side. A model on an
    /// accelerator always uses candle's.
    pub fn with_attention(mut self, isa: Option<Isa>) -> Self {
        self.attn_isa = isa.filter(|_| self.device.is_cpu());
        self
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
        // Every row's rotary angles, gathered once for all layers: [rows, 1, head_dim / 2].
        let positions: Vec<u32> = seqs
            .iter()
            .flat_map(|s| (s.cache.len..s.cache.len + s.tokens.len()).map(|p| p as u32))
            .collect();
        let positions = Tensor::new(positions.as_slice(), &self.device)?;
        let rows = all_tokens.len();
        let half = self.cfg.head_dim / 2;
        let cos = self
            .cos
            .index_select(&positions, 0)?
            .reshape((rows, 1, half))?;
        let sin = self
            .sin
            .index_select(&positions, 0)?
            .reshape((rows, 1, half))?;
        let mut x = self.embed.index_select(&ids, 0)?;
        for (layer, block) in self.blocks.iter().enumerate() {
            let h = x.apply(&block.attn_norm)?;
            let attn = self.attention(block, layer, &h, (&cos, &sin), seqs)?;
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
        (cos, sin): (&Tensor, &Tensor),
        seqs: &mut [SeqStep<'_>],
    ) -> Result<Tensor> {
        let cfg = &self.cfg;
        let (n_heads, n_kv, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let n_rep = n_heads / n_kv;
        let rows = h.dim(0)?;
        // Each row is its own rope "batch" entry with one position: [rows, heads, 1, hd] is
        // the matrix as it comes, so the whole step rotates in one op, no transposes.
        let q = self.rotate(
            &block.q.forward(h)?.reshape((rows, n_heads, 1, hd))?,
            cos,
            sin,
        )?;
        let k = self.rotate(&block.k.forward(h)?.reshape((rows, n_kv, 1, hd))?, cos, sin)?;
        let q = q.reshape((rows, n_heads, hd))?;
        let k = k.reshape((rows, n_kv, hd))?.to_dtype(self.kv_dtype)?;
        let v = block
            .v
            .forward(h)?
            .reshape((rows, n_kv, hd))?
            .to_dtype(self.kv_dtype)?;
        let scale = 1.0 / (hd as f64).sqrt();
        // Each sequence's rows go to the end of its token-major cache: one contiguous copy.
        let mut offset = 0;
        for s in seqs.iter_mut() {
            let t = s.tokens.len();
            let (ki, vi) = (k.narrow(0, offset, t)?, v.narrow(0, offset, t)?);
            append_kv(&mut s.cache.layers[layer], &ki, &vi, s.cache.len, cfg)?;
            offset += t;
        }
        if let Some(isa) = self.attn_isa {
            let dims = Dims {
                n_heads,
                n_kv_heads: n_kv,
                head_dim: hd,
                scale: scale as f32,
            };
            return cpu_attention(isa, dims, &q, seqs, layer);
        }
        let mut outs = Vec::with_capacity(seqs.len());
        let mut offset = 0;
        for s in seqs.iter() {
            let (past, t) = (s.cache.len, s.tokens.len());
            let total = past + t;
            let (k_all, v_all) = s.cache.layers[layer].view(total)?;
            // Head-major for the matmuls: [n_kv, total, hd].
            let k_all = k_all.transpose(0, 1)?.contiguous()?;
            let v_all = v_all.transpose(0, 1)?.contiguous()?;
            // Grouped-query attention without copying K/V: the n_rep query heads that share a
            // KV head are adjacent, so they fold into that head's row dimension. The products
            // run in the cache's precision, the softmax in f32.
            let qg = q
                .narrow(0, offset, t)?
                .transpose(0, 1)?
                .contiguous()?
                .reshape((n_kv, n_rep * t, hd))?
                .to_dtype(self.kv_dtype)?;
            let scores = (qg.matmul(&k_all.t()?)?.to_dtype(DType::F32)? * scale)?;
            let scores = if t > 1 {
                let mask = causal_mask(t, past, &self.device)?;
                scores
                    .reshape((n_kv, n_rep, t, total))?
                    .broadcast_add(&mask)?
                    .reshape((n_kv, n_rep * t, total))?
            } else {
                scores
            };
            let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(self.kv_dtype)?;
            let out = probs.matmul(&v_all)?.to_dtype(DType::F32)?; // [n_kv, n_rep*t, hd]
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

impl LayerKv {
    /// Views over the first `len` cached positions.
    fn view(&self, len: usize) -> Result<(Tensor, Tensor)> {
        let (Some(k), Some(v)) = (&self.k, &self.v) else {
            candle_core::bail!("kv cache was not allocated");
        };
        Ok((k.narrow(0, 0, len)?, v.narrow(0, 0, len)?))
    }
}

/// Writes this step's keys/values (`[t, n_kv, head_dim]`, already in the cache's precision) at
/// `past`, growing the cache when it is full.
fn append_kv(
    kv: &mut LayerKv,
    k: &Tensor,
    v: &Tensor,
    past: usize,
    cfg: &ModelConfig,
) -> Result<()> {
    let t = k.dim(0)?;
    let needed = past + t;
    if needed > kv.capacity || kv.k.is_none() {
        let capacity = needed
            .next_power_of_two()
            .max(32)
            .min(cfg.max_position_embeddings.max(needed));
        let shape = (capacity, cfg.num_key_value_heads, cfg.head_dim);
        let new_k = Tensor::zeros(shape, k.dtype(), k.device())?;
        let new_v = Tensor::zeros(shape, v.dtype(), v.device())?;
        if let (Some(old_k), Some(old_v)) = (&kv.k, &kv.v)
            && past > 0
        {
            new_k.slice_set(&old_k.narrow(0, 0, past)?, 0, 0)?;
            new_v.slice_set(&old_v.narrow(0, 0, past)?, 0, 0)?;
        }
        kv.k = Some(new_k);
        kv.v = Some(new_v);
        kv.capacity = capacity;
    }
    let (Some(ck), Some(cv)) = (&kv.k, &kv.v) else {
        candle_core::bail!("kv cache was not allocated");
    };
    ck.slice_set(&k.contiguous()?, 0, past)?;
    cv.slice_set(&v.contiguous()?, 0, past)?;
    Ok(())
}

/// The CPU path: every sequence's attention for this layer in one [`attention::attend`] pass,
/// reading the rotated queries (`[rows, n_heads, head_dim]`) and the caches in place.
fn cpu_attention(
    isa: Isa,
    dims: Dims,
    q: &Tensor,
    seqs: &[SeqStep<'_>],
    layer: usize,
) -> Result<Tensor> {
    let q = q.contiguous()?;
    let (q_storage, q_layout) = q.storage_and_layout();
    let q_all = cpu_slice::<f32>(&q_storage, q_layout)?;
    // Hold every cache's read guards while the kernel borrows slices of them.
    let mut guards = Vec::with_capacity(seqs.len());
    for s in seqs {
        let kv = &s.cache.layers[layer];
        let (Some(k), Some(v)) = (&kv.k, &kv.v) else {
            candle_core::bail!("kv cache was not allocated");
        };
        guards.push((k.storage_and_layout(), v.storage_and_layout()));
    }
    let row = dims.n_heads * dims.head_dim;
    let mut batch = Vec::with_capacity(seqs.len());
    let mut offset = 0;
    for (s, ((k, kl), (v, vl))) in seqs.iter().zip(&guards) {
        let t = s.tokens.len();
        let cache = match (&**k, &**v) {
            (candle_core::Storage::Cpu(kc), candle_core::Storage::Cpu(vc)) => match k.dtype() {
                DType::F16 => Cache::F16 {
                    k: contiguous(kc.as_slice()?, kl)?,
                    v: contiguous(vc.as_slice()?, vl)?,
                },
                _ => Cache::F32 {
                    k: contiguous(kc.as_slice()?, kl)?,
                    v: contiguous(vc.as_slice()?, vl)?,
                },
            },
            _ => candle_core::bail!("the CPU attention path got a cache on another device"),
        };
        batch.push(attention::Seq {
            q: &q_all[offset * row..(offset + t) * row],
            t,
            past: s.cache.len,
            cache,
            capacity: s.cache.layers[layer].capacity,
        });
        offset += t;
    }
    let out = attention::attend(isa, dims, &batch);
    Tensor::from_vec(out, (offset, row), &Device::Cpu)
}

fn cpu_slice<'a, T: candle_core::WithDType>(
    storage: &'a candle_core::Storage,
    layout: &candle_core::Layout,
) -> Result<&'a [T]> {
    match storage {
        candle_core::Storage::Cpu(c) => contiguous(c.as_slice::<T>()?, layout),
        _ => candle_core::bail!("expected a CPU tensor"),
    }
}

/// The elements a contiguous layout covers.
fn contiguous<'a, T>(all: &'a [T], layout: &candle_core::Layout) -> Result<&'a [T]> {
    if !layout.is_contiguous() {
        candle_core::bail!("attention expects contiguous tensors");
    }
    let start = layout.start_offset();
    Ok(&all[start..start + layout.shape().elem_count()])
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

//! Building a [`Llama`] from stored weights: Hugging Face tensor names (safetensors files or the
//! in-memory tiny model) and llama.cpp tensor names (GGUF). Both end in the same model type, so
//! everything after loading is one code path.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::{QTensor, gguf_file};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use candle_nn::RmsNorm;

use super::ModelError;
use super::config::{ModelConfig, RopeStyle};
use super::linear::Linear;
use super::llama::{Block, Llama, LlamaParts};
use super::quant::{Quantization, QuantizationFlag, ggml_name};

/// Something that hands out full-precision tensors by Hugging Face name.
pub trait TensorSource {
    fn tensor(&self, name: &str) -> candle_core::Result<Tensor>;
    fn contains(&self, name: &str) -> bool;
}

impl TensorSource for HashMap<String, Tensor> {
    fn tensor(&self, name: &str) -> candle_core::Result<Tensor> {
        self.get(name)
            .cloned()
            .ok_or_else(|| candle_core::Error::msg(format!("cannot find tensor {name}")))
    }
    fn contains(&self, name: &str) -> bool {
        self.contains_key(name)
    }
}

/// Memory-mapped safetensors shards.
pub struct Safetensors {
    inner: MmapedSafetensors,
    names: std::collections::HashSet<String>,
}

impl Safetensors {
    pub fn open(files: &[PathBuf]) -> Result<Self, ModelError> {
        // SAFETY: the files are mapped read-only and the mapping lives as long as `inner`; like
        // every mmap user we rely on nobody truncating a checkpoint while it is being served.
        #[allow(unsafe_code)]
        let inner = unsafe { MmapedSafetensors::multi(files) }
            .map_err(|e| ModelError::load(files_label(files), e))?;
        let names = inner.tensors().into_iter().map(|(n, _)| n).collect();
        Ok(Self { inner, names })
    }

    /// The tensor names the headers list.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }
}

impl TensorSource for Safetensors {
    fn tensor(&self, name: &str) -> candle_core::Result<Tensor> {
        self.inner.load(name, &Device::Cpu)
    }
    fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }
}

fn files_label(files: &[PathBuf]) -> String {
    files
        .first()
        .and_then(|f| f.parent())
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// The safetensors files of a checkpoint directory: the shards its index names, else every
/// `*.safetensors` file in it.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|e| ModelError::io(&index, e))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ModelError::invalid(&index, e))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| ModelError::invalid(&index, "missing weight_map"))?;
        let mut files: Vec<PathBuf> = map
            .values()
            .filter_map(|v| v.as_str())
            .map(|f| dir.join(f))
            .collect();
        files.sort();
        files.dedup();
        return Ok(files);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ModelError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ModelError::invalid(dir, "no *.safetensors files"));
    }
    Ok(files)
}

/// Builds the model from Hugging Face-named tensors, quantizing linear layers as asked.
pub fn load_hf(
    cfg: ModelConfig,
    src: &dyn TensorSource,
    quant: Quantization,
    device: &Device,
) -> candle_core::Result<Llama> {
    let get = |name: &str| -> candle_core::Result<Tensor> { src.tensor(name)?.to_device(device) };
    let bias = |name: &str| -> candle_core::Result<Option<Tensor>> {
        if cfg.attention_bias && src.contains(name) {
            Ok(Some(get(name)?))
        } else {
            Ok(None)
        }
    };
    let linear = |name: &str, with_bias: bool| -> candle_core::Result<Linear> {
        let b = if with_bias {
            bias(&format!("{name}.bias"))?
        } else {
            None
        };
        Linear::from_tensor(get(&format!("{name}.weight"))?, b, quant)
    };
    let norm = |name: &str| -> candle_core::Result<RmsNorm> {
        Ok(RmsNorm::new(
            get(name)?.to_dtype(DType::F32)?,
            cfg.rms_norm_eps,
        ))
    };
    let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
    for i in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{i}");
        blocks.push(Block {
            attn_norm: norm(&format!("{p}.input_layernorm.weight"))?,
            q: linear(&format!("{p}.self_attn.q_proj"), true)?,
            k: linear(&format!("{p}.self_attn.k_proj"), true)?,
            v: linear(&format!("{p}.self_attn.v_proj"), true)?,
            o: linear(&format!("{p}.self_attn.o_proj"), false)?,
            ffn_norm: norm(&format!("{p}.post_attention_layernorm.weight"))?,
            gate: linear(&format!("{p}.mlp.gate_proj"), false)?,
            up: linear(&format!("{p}.mlp.up_proj"), false)?,
            down: linear(&format!("{p}.mlp.down_proj"), false)?,
        });
    }
    let embed = get("model.embed_tokens.weight")?;
    let lm_head = if cfg.tie_word_embeddings || !src.contains("lm_head.weight") {
        Linear::from_tensor(embed.clone(), None, quant)?
    } else {
        linear("lm_head", false)?
    };
    let parts = LlamaParts {
        embed,
        blocks,
        norm_weight: get("model.norm.weight")?,
        lm_head,
    };
    Llama::new(cfg, parts, device)
}

/// The runtime config a GGUF header describes. Apart from [`Gguf`] so it runs on any parsed
/// header (the fuzz target feeds it arbitrary bytes); `path` only labels errors.
pub fn gguf_config(content: &gguf_file::Content, path: &Path) -> Result<ModelConfig, ModelError> {
    GgufHeader { content, path }.config()
}

struct GgufHeader<'a> {
    content: &'a gguf_file::Content,
    path: &'a Path,
}

impl GgufHeader<'_> {
    fn md(&self, key: &str) -> Result<&gguf_file::Value, ModelError> {
        self.content
            .metadata
            .get(key)
            .ok_or_else(|| ModelError::invalid(self.path, format!("missing metadata {key}")))
    }

    fn md_u32(&self, key: &str) -> Result<usize, ModelError> {
        let v = self.md(key)?;
        v.to_u32()
            .map(|v| v as usize)
            .or_else(|_| v.to_u64().map(|v| v as usize))
            .map_err(|e| ModelError::invalid(self.path, format!("{key}: {e}")))
    }

    fn config(&self) -> Result<ModelConfig, ModelError> {
        let arch = self
            .md("general.architecture")?
            .to_string()
            .map_err(|e| ModelError::invalid(self.path, e))?
            .clone();
        let rope_style = match arch.as_str() {
            "llama" | "mistral" => RopeStyle::Interleaved,
            "qwen2" => RopeStyle::Half,
            other => {
                return Err(ModelError::invalid(
                    self.path,
                    format!("GGUF architecture {other:?} is not supported (llama, mistral, qwen2)"),
                ));
            }
        };
        let key = |k: &str| format!("{arch}.{k}");
        let hidden = self.md_u32(&key("embedding_length"))?;
        let heads = self.md_u32(&key("attention.head_count"))?;
        let kv_heads = self
            .md_u32(&key("attention.head_count_kv"))
            .unwrap_or(heads);
        let head_dim = self
            .md_u32(&key("rope.dimension_count"))
            .unwrap_or(hidden / heads.max(1));
        let eps = self
            .md(&key("attention.layer_norm_rms_epsilon"))
            .and_then(|v| v.to_f32().map_err(|e| ModelError::invalid(self.path, e)))
            .unwrap_or(1e-5);
        let theta = self
            .md(&key("rope.freq_base"))
            .and_then(|v| v.to_f32().map_err(|e| ModelError::invalid(self.path, e)))
            .unwrap_or(10_000.0);
        let vocab = self
            .content
            .tensor_infos
            .get("token_embd.weight")
            .and_then(|t| t.shape.dims().first().copied())
            .ok_or_else(|| {
                ModelError::invalid(
                    self.path,
                    "missing token_embd.weight (or it has no dimensions)",
                )
            })?;
        let eos = self.md_u32("tokenizer.ggml.eos_token_id").ok();
        let cfg = ModelConfig {
            architecture: arch.clone(),
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: self.md_u32(&key("feed_forward_length"))?,
            num_hidden_layers: self.md_u32(&key("block_count"))?,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim,
            rms_norm_eps: eps as f64,
            rope_theta: theta,
            max_position_embeddings: self.md_u32(&key("context_length")).unwrap_or(2048),
            tie_word_embeddings: !self.content.tensor_infos.contains_key("output.weight"),
            attention_bias: self.content.tensor_infos.contains_key("blk.0.attn_q.bias"),
            rope_style,
            bos_token_id: self
                .md_u32("tokenizer.ggml.bos_token_id")
                .ok()
                .map(|v| v as u32),
            eos_token_ids: eos.map(|e| vec![e as u32]).unwrap_or_default(),
        };
        cfg.validate()
            .map_err(|e| ModelError::invalid(self.path, e))?;
        Ok(cfg)
    }
}

/// A parsed GGUF file: its header plus an open reader for the tensor data.
pub struct Gguf {
    pub content: gguf_file::Content,
    reader: BufReader<File>,
    path: PathBuf,
}

impl Gguf {
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
        let mut reader = BufReader::new(file);
        let content =
            gguf_file::Content::read(&mut reader).map_err(|e| ModelError::invalid(path, e))?;
        Ok(Self {
            content,
            reader,
            path: path.to_path_buf(),
        })
    }

    /// The runtime config from `{arch}.*` metadata.
    pub fn config(&self) -> Result<ModelConfig, ModelError> {
        gguf_config(&self.content, &self.path)
    }

    /// The precision most linear weights are stored in (reported as the effective quantization
    /// when the file is served as stored).
    pub fn stored_quantization(&self) -> String {
        // The type holding most of the layers' matrix weights: a mix such as Q4_K_M (Q4_K with
        // Q6_K for some ffn_down, attn_v and the output) is named for its main type, as
        // llama.cpp names it, not for whichever tensor happens to be looked at.
        let mut elements: Vec<(candle_core::quantized::GgmlDType, usize)> = Vec::new();
        for (name, info) in &self.content.tensor_infos {
            let dims = info.shape.dims();
            if !(name.starts_with("blk.") && dims.len() == 2) {
                continue;
            }
            let n = dims.iter().product::<usize>();
            match elements.iter_mut().find(|(t, _)| *t == info.ggml_dtype) {
                Some((_, count)) => *count += n,
                None => elements.push((info.ggml_dtype, n)),
            }
        }
        elements
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(t, _)| ggml_name(t))
            .unwrap_or_else(|| "unknown".into())
    }

    /// Builds the model; `quant` other than `Auto` re-quantizes every linear weight.
    pub fn load(
        &mut self,
        cfg: ModelConfig,
        quant: QuantizationFlag,
        device: &Device,
    ) -> candle_core::Result<Llama> {
        let mut qt = |name: &str| self.content.tensor(&mut self.reader, name, device);
        let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
        let requantize = quant.level();
        let linear = |name: &str,
                      bias: Option<Tensor>,
                      qt: &mut dyn FnMut(&str) -> candle_core::Result<QTensor>|
         -> candle_core::Result<Linear> {
            let q = qt(name)?;
            if let Some(level) = requantize {
                Linear::from_tensor(q.dequantize(device)?, bias, level)
            } else {
                Linear::from_qtensor(q, bias)
            }
        };
        let full = |name: &str, qt: &mut dyn FnMut(&str) -> candle_core::Result<QTensor>| {
            let q: QTensor = qt(name)?;
            q.dequantize(device)
        };
        for i in 0..cfg.num_hidden_layers {
            let p = format!("blk.{i}");
            let bias = |n: &str, qt: &mut dyn FnMut(&str) -> candle_core::Result<QTensor>| {
                if cfg.attention_bias {
                    let q: QTensor = qt(&format!("{p}.{n}.bias"))?;
                    q.dequantize(device).map(Some)
                } else {
                    Ok(None)
                }
            };
            let qb = bias("attn_q", &mut qt)?;
            let kb = bias("attn_k", &mut qt)?;
            let vb = bias("attn_v", &mut qt)?;
            blocks.push(Block {
                attn_norm: RmsNorm::new(
                    full(&format!("{p}.attn_norm.weight"), &mut qt)?,
                    cfg.rms_norm_eps,
                ),
                q: linear(&format!("{p}.attn_q.weight"), qb, &mut qt)?,
                k: linear(&format!("{p}.attn_k.weight"), kb, &mut qt)?,
                v: linear(&format!("{p}.attn_v.weight"), vb, &mut qt)?,
                o: linear(&format!("{p}.attn_output.weight"), None, &mut qt)?,
                ffn_norm: RmsNorm::new(
                    full(&format!("{p}.ffn_norm.weight"), &mut qt)?,
                    cfg.rms_norm_eps,
                ),
                gate: linear(&format!("{p}.ffn_gate.weight"), None, &mut qt)?,
                up: linear(&format!("{p}.ffn_up.weight"), None, &mut qt)?,
                down: linear(&format!("{p}.ffn_down.weight"), None, &mut qt)?,
            });
        }
        let embed = full("token_embd.weight", &mut qt)?;
        let lm_head = if cfg.tie_word_embeddings {
            // Served as stored (`auto`), a tied head keeps the embedding's f32.
            Linear::from_tensor(
                embed.clone(),
                None,
                quant.level().unwrap_or(Quantization::F32),
            )?
        } else {
            linear("output.weight", None, &mut qt)?
        };
        let parts = LlamaParts {
            embed,
            blocks,
            norm_weight: full("output_norm.weight", &mut qt)?,
            lm_head,
        };
        Llama::new(cfg, parts, device)
    }
}

//! The built-in tiny model: a deterministic random-weight llama of a few MB plus a real byte-level
//! BPE tokenizer trained in memory, so the server, the demo and every test run offline. It can be
//! written to disk as safetensors + config + tokenizer and as GGUF, so the file-loading paths are
//! exercised on it too. A TinyLlama-1.1B-shaped variant exists for benchmarks (never committed).

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokenizers::Tokenizer;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::processors::template::TemplateProcessing;

use super::config::{HfConfig, TokenIds};
use super::llama::permute_for_interleaved_rope;
use super::quant::{Quantization, QuantizationExt};
use super::tokenizer::{byte_level, gguf_metadata};

pub const NAME: &str = "sluice-tiny";
pub const BOS: &str = "<s>";
pub const EOS: &str = "</s>";
const SPECIALS: [&str; 5] = [BOS, EOS, "<|system|>", "<|user|>", "<|assistant|>"];
const VOCAB: usize = 512;
const SEED: u64 = 0x5151_1CE0;

/// The chat template written beside the tiny model and used when a model ships none
/// (Zephyr/TinyLlama-chat style).
pub const DEFAULT_CHAT_TEMPLATE: &str = "{% for message in messages %}<|{{ message.role }}|>\n{{ message.content }}{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}";

/// Text the tokenizer's merges are learnt from; any fixed text works, prose gives sensible merges.
const CORPUS: &str = include_str!("tiny_corpus.txt");

/// Shapes the generator can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TinyShape {
    /// 4 layers, hidden 256, vocab 512: about 2.6 M parameters.
    Tiny,
    /// TinyLlama-1.1B's shape (22 layers, hidden 2048, GQA 32/4, vocab 32000), random weights.
    Tinyllama,
}

pub fn hf_config(shape: TinyShape) -> HfConfig {
    let (vocab, hidden, inter, layers, heads, kv, ctx) = match shape {
        TinyShape::Tiny => (VOCAB, 256, 512, 4, 4, 2, 1024),
        TinyShape::Tinyllama => (32_000, 2048, 5632, 22, 32, 4, 2048),
    };
    HfConfig {
        architectures: vec!["LlamaForCausalLM".into()],
        model_type: Some("llama".into()),
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: inter,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: Some(kv),
        head_dim: None,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        max_position_embeddings: ctx,
        tie_word_embeddings: false,
        attention_bias: Some(false),
        bos_token_id: Some(0),
        eos_token_id: Some(TokenIds::One(1)),
        torch_dtype: Some("float32".into()),
    }
}

/// Trains the byte-level BPE tokenizer on the embedded corpus. Deterministic: same merges on
/// every run and machine.
pub fn tokenizer() -> Result<Tokenizer, String> {
    let mut tok = Tokenizer::new(BPE::default());
    byte_level(&mut tok);
    let specials: Vec<tokenizers::AddedToken> = SPECIALS
        .iter()
        .map(|s| tokenizers::AddedToken::from(*s, true))
        .collect();
    let alphabet = tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet()
        .into_iter()
        .collect();
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(VOCAB)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials)
        .initial_alphabet(alphabet)
        .build()
        .into();
    let lines: Vec<&str> = CORPUS.lines().filter(|l| !l.trim().is_empty()).collect();
    tok.train(&mut trainer, lines.into_iter())
        .map_err(|e| format!("failed to train the tiny tokenizer: {e}"))?;
    let bos = tok.token_to_id(BOS).ok_or("tiny tokenizer lost <s>")?;
    let post = TemplateProcessing::builder()
        .try_single(format!("{BOS} $A"))
        .map_err(|e| e.to_string())?
        .special_tokens(vec![(BOS, bos)])
        .build()
        .map_err(|e| e.to_string())?;
    tok.with_post_processor(Some(post));
    Ok(tok)
}

/// Deterministic random weights under Hugging Face names.
pub fn weights(shape: TinyShape) -> candle_core::Result<HashMap<String, Tensor>> {
    let cfg = hf_config(shape);
    let mut out = HashMap::new();
    for (name, dims) in tensor_shapes(&cfg) {
        out.insert(name.clone(), random_tensor(&name, &dims)?);
    }
    Ok(out)
}

fn tensor_shapes(cfg: &HfConfig) -> Vec<(String, Vec<usize>)> {
    let h = cfg.hidden_size;
    let hd = h / cfg.num_attention_heads;
    let kv = cfg.num_key_value_heads.unwrap_or(cfg.num_attention_heads) * hd;
    let mut v = vec![
        (
            "model.embed_tokens.weight".to_string(),
            vec![cfg.vocab_size, h],
        ),
        ("model.norm.weight".to_string(), vec![h]),
        ("lm_head.weight".to_string(), vec![cfg.vocab_size, h]),
    ];
    for i in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{i}");
        v.extend([
            (format!("{p}.input_layernorm.weight"), vec![h]),
            (format!("{p}.post_attention_layernorm.weight"), vec![h]),
            (format!("{p}.self_attn.q_proj.weight"), vec![h, h]),
            (format!("{p}.self_attn.k_proj.weight"), vec![kv, h]),
            (format!("{p}.self_attn.v_proj.weight"), vec![kv, h]),
            (format!("{p}.self_attn.o_proj.weight"), vec![h, h]),
            (
                format!("{p}.mlp.gate_proj.weight"),
                vec![cfg.intermediate_size, h],
            ),
            (
                format!("{p}.mlp.up_proj.weight"),
                vec![cfg.intermediate_size, h],
            ),
            (
                format!("{p}.mlp.down_proj.weight"),
                vec![h, cfg.intermediate_size],
            ),
        ]);
    }
    v
}

fn random_tensor(name: &str, dims: &[usize]) -> candle_core::Result<Tensor> {
    let n: usize = dims.iter().product();
    if dims.len() == 1 {
        // Norm gains start at one, as in a freshly initialised model.
        return Tensor::ones(dims, candle_core::DType::F32, &Device::Cpu);
    }
    // Seeded per tensor name so shapes can change without reshuffling every other tensor.
    let seed = name.bytes().fold(SEED ^ 0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let scale = if name.contains("embed") {
        1.0
    } else {
        2.0 / (dims[1] as f32).sqrt()
    };
    let data: Vec<f32> = (0..n)
        .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale)
        .collect();
    Tensor::from_vec(data, dims, &Device::Cpu)
}

/// Hugging Face name → GGUF name, and whether the rows need the rope permutation (q/k).
fn gguf_name(hf: &str) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (idx, tail) = rest.split_once('.')?;
    let mapped = match tail {
        "input_layernorm.weight" => "attn_norm.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        _ => return None,
    };
    Some(format!("blk.{idx}.{mapped}"))
}

/// The tensor type llama.cpp's `Q4_K_M` gives a Hugging Face tensor (`llama_tensor_get_type`):
/// Q6_K for the output projection, and for `attn_v` and `ffn_down` in the first and last eighth
/// of the layers and every third one between (its `use_more_bits`); Q4_K for everything else.
fn q4_k_m_type(hf: &str, layers: usize) -> GgmlDType {
    if hf == "lm_head.weight" {
        return GgmlDType::Q6K;
    }
    let more_bits = |i: usize| i < layers / 8 || i >= 7 * layers / 8 || (i - layers / 8) % 3 == 2;
    let layer = hf
        .strip_prefix("model.layers.")
        .and_then(|r| r.split_once('.'))
        .and_then(|(i, tail)| Some((i.parse::<usize>().ok()?, tail)));
    match layer {
        Some((i, "self_attn.v_proj.weight" | "mlp.down_proj.weight")) if more_bits(i) => {
            GgmlDType::Q6K
        }
        _ => GgmlDType::Q4K,
    }
}

/// What `export` should write.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub shape: TinyShape,
    /// Precision of the linear weights in the GGUF file; `None` skips the GGUF file.
    pub gguf: Option<Quantization>,
    pub safetensors: bool,
}

/// Writes the model to `dir`: `config.json`, `model.safetensors`, `tokenizer.json`,
/// `tokenizer_config.json` and `model.gguf` (as selected). Returns the files written.
pub fn export(dir: &Path, opts: &ExportOptions) -> Result<Vec<std::path::PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("failed to create {}: {e}", dir.display()))?;
    let cfg = hf_config(opts.shape);
    let tok = tokenizer()?;
    let mut written = Vec::new();
    let path = dir.join("config.json");
    let json = serde_json::to_string_pretty(&cfg).map_err(|e| e.to_string())?;
    std::fs::write(&path, json).map_err(|e| format!("failed to write {}: {e}", path.display()))?;
    written.push(path);
    let path = dir.join("tokenizer.json");
    tok.save(&path, true)
        .map_err(|e| format!("failed to write {}: {e}", path.display()))?;
    written.push(path);
    let path = dir.join("tokenizer_config.json");
    let tc = serde_json::json!({
        "bos_token": BOS, "eos_token": EOS, "chat_template": DEFAULT_CHAT_TEMPLATE,
    });
    std::fs::write(&path, tc.to_string())
        .map_err(|e| format!("failed to write {}: {e}", path.display()))?;
    written.push(path);
    let shapes = tensor_shapes(&cfg);
    if opts.safetensors {
        let tensors = weights(opts.shape).map_err(|e| e.to_string())?;
        let path = dir.join("model.safetensors");
        candle_core::safetensors::save(&tensors, &path)
            .map_err(|e| format!("failed to write {}: {e}", path.display()))?;
        written.push(path);
    }
    if let Some(q) = opts.gguf {
        let kind = match q {
            Quantization::F32 => GgmlDType::F32,
            Quantization::F16 => GgmlDType::F16,
            Quantization::Bf16 => GgmlDType::BF16,
            other => other.ggml().ok_or("unsupported GGUF quantization")?,
        };
        let heads = cfg.num_attention_heads;
        let kv_heads = cfg.num_key_value_heads.unwrap_or(heads);
        let mut qtensors = Vec::new();
        for (hf, dims) in &shapes {
            let name = gguf_name(hf).ok_or_else(|| format!("no GGUF name for {hf}"))?;
            let mut t = random_tensor(hf, dims).map_err(|e| e.to_string())?;
            if hf.ends_with("q_proj.weight") {
                t = permute_for_interleaved_rope(&t, heads).map_err(|e| e.to_string())?;
            } else if hf.ends_with("k_proj.weight") {
                t = permute_for_interleaved_rope(&t, kv_heads).map_err(|e| e.to_string())?;
            }
            // Norms stay f32, as llama.cpp stores them; matrices take the requested type (or,
            // for q4k, the type llama.cpp's Q4_K_M gives them).
            let kind = if q == Quantization::Q4K {
                q4_k_m_type(hf, cfg.num_hidden_layers)
            } else {
                kind
            };
            let this_kind = if dims.len() == 1 || dims[1] % kind.block_size() != 0 {
                GgmlDType::F32
            } else {
                kind
            };
            let qt = QTensor::quantize(&t, this_kind).map_err(|e| e.to_string())?;
            qtensors.push((name, qt));
        }
        let mut md: Vec<(String, Value)> = vec![
            ("general.architecture".into(), Value::String("llama".into())),
            ("general.name".into(), Value::String(NAME.into())),
            (
                "llama.context_length".into(),
                Value::U32(cfg.max_position_embeddings as u32),
            ),
            (
                "llama.embedding_length".into(),
                Value::U32(cfg.hidden_size as u32),
            ),
            (
                "llama.feed_forward_length".into(),
                Value::U32(cfg.intermediate_size as u32),
            ),
            (
                "llama.block_count".into(),
                Value::U32(cfg.num_hidden_layers as u32),
            ),
            (
                "llama.attention.head_count".into(),
                Value::U32(heads as u32),
            ),
            (
                "llama.attention.head_count_kv".into(),
                Value::U32(kv_heads as u32),
            ),
            (
                "llama.attention.layer_norm_rms_epsilon".into(),
                Value::F32(cfg.rms_norm_eps as f32),
            ),
            ("llama.rope.freq_base".into(), Value::F32(cfg.rope_theta)),
            (
                "llama.rope.dimension_count".into(),
                Value::U32((cfg.hidden_size / heads) as u32),
            ),
        ];
        md.extend(gguf_metadata(&tok, cfg.vocab_size)?);
        let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let t_refs: Vec<(&str, &QTensor)> = qtensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let path = dir.join("model.gguf");
        let file = std::fs::File::create(&path)
            .map_err(|e| format!("failed to create {}: {e}", path.display()))?;
        let mut w = std::io::BufWriter::new(file);
        gguf_file::write(&mut w, &md_refs, &t_refs)
            .map_err(|e| format!("failed to write {}: {e}", path.display()))?;
        std::io::Write::flush(&mut w).map_err(|e| e.to_string())?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_is_deterministic_and_round_trips() {
        let a = tokenizer().unwrap().to_string(false).unwrap();
        let b = tokenizer().unwrap().to_string(false).unwrap();
        assert_eq!(a, b, "training must be deterministic");
        let tok = tokenizer().unwrap();
        assert_eq!(tok.get_vocab_size(true), VOCAB);
        let enc = tok.encode("The queue is long.", true).unwrap();
        assert_eq!(enc.get_ids()[0], tok.token_to_id(BOS).unwrap());
        assert!(
            enc.get_ids().len() < "The queue is long.".len(),
            "merges must apply"
        );
        assert_eq!(
            tok.decode(enc.get_ids(), true).unwrap(),
            "The queue is long."
        );
    }

    #[test]
    fn q4k_export_follows_llama_cpp_q4_k_m() {
        // 22 layers (TinyLlama): the first 2, the last 3, and every third from layer 4.
        let v = |i: usize| q4_k_m_type(&format!("model.layers.{i}.self_attn.v_proj.weight"), 22);
        let q6: Vec<usize> = (0..22).filter(|&i| v(i) == GgmlDType::Q6K).collect();
        assert_eq!(q6, vec![0, 1, 4, 7, 10, 13, 16, 19, 20, 21]);
        assert_eq!(
            q4_k_m_type("model.layers.4.mlp.down_proj.weight", 22),
            GgmlDType::Q6K
        );
        assert_eq!(
            q4_k_m_type("model.layers.4.mlp.up_proj.weight", 22),
            GgmlDType::Q4K
        );
        assert_eq!(q4_k_m_type("lm_head.weight", 22), GgmlDType::Q6K);
        assert_eq!(q4_k_m_type("model.embed_tokens.weight", 22), GgmlDType::Q4K);
    }

    #[test]
    fn weights_are_deterministic() {
        let a = random_tensor("model.layers.0.mlp.up_proj.weight", &[4, 8]).unwrap();
        let b = random_tensor("model.layers.0.mlp.up_proj.weight", &[4, 8]).unwrap();
        let diff = (a - b).unwrap().abs().unwrap().sum_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }
}

//! Model configuration: the Hugging Face `config.json` shape, kept apart from the runtime
//! [`ModelConfig`] the forward pass reads, so that GGUF metadata and the built-in tiny model can
//! produce the same runtime config without pretending to be a JSON file.

use serde::{Deserialize, Serialize};

/// How rotary embeddings pair up dimensions.
///
/// Hugging Face llama checkpoints rotate the two halves of each head (`rotate_half`); llama.cpp's
/// converter permutes the q/k rows so that GGUF llama files rotate adjacent pairs instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Pairs `(i, i + d/2)`: Hugging Face safetensors, and qwen2 GGUF files.
    Half,
    /// Pairs `(2i, 2i + 1)`: llama-architecture GGUF files.
    Interleaved,
}

/// Runtime configuration of a llama-architecture decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub architecture: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f32,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Qwen2 puts a bias on the q/k/v projections; llama and mistral do not.
    pub attention_bias: bool,
    pub rope_style: RopeStyle,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

impl ModelConfig {
    /// Checks the invariants the forward pass relies on, so a bad file fails at load with a
    /// message instead of a shape error in the middle of a request.
    pub fn validate(&self) -> Result<(), String> {
        if self.num_attention_heads == 0 || self.num_key_value_heads == 0 {
            return Err("attention head counts must be positive".into());
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return Err(format!(
                "head_dim {} must be even and positive",
                self.head_dim
            ));
        }
        if self.vocab_size == 0 || self.hidden_size == 0 || self.num_hidden_layers == 0 {
            return Err("vocab_size, hidden_size and num_hidden_layers must be positive".into());
        }
        if self.max_position_embeddings == 0 {
            return Err("max_position_embeddings must be positive".into());
        }
        Ok(())
    }

    /// Elements of K and V one token occupies across all layers.
    pub fn kv_elements_per_token(&self) -> usize {
        2 * self.num_hidden_layers * self.num_key_value_heads * self.head_dim
    }
}

/// `eos_token_id` is a number in llama 2 configs and a list in llama 3 configs.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

/// The subset of a Hugging Face `config.json` that llama, mistral and qwen2 share.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct HfConfig {
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f32,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: Option<bool>,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    #[serde(default)]
    pub torch_dtype: Option<String>,
}

fn default_rms_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f32 {
    10_000.0
}
fn default_max_pos() -> usize {
    2048
}

impl HfConfig {
    pub fn into_runtime(self) -> Result<ModelConfig, String> {
        let model_type = self.model_type.clone().unwrap_or_else(|| "llama".into());
        let supported = ["llama", "mistral", "qwen2"];
        if !supported.contains(&model_type.as_str()) {
            return Err(format!(
                "model_type {model_type:?} is not supported (supported: {})",
                supported.join(", ")
            ));
        }
        let is_qwen = model_type == "qwen2";
        let head_dim = self
            .head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1));
        let cfg = ModelConfig {
            architecture: model_type,
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            num_key_value_heads: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            head_dim,
            rms_norm_eps: self.rms_norm_eps,
            rope_theta: self.rope_theta,
            max_position_embeddings: self.max_position_embeddings,
            tie_word_embeddings: self.tie_word_embeddings,
            attention_bias: self.attention_bias.unwrap_or(is_qwen),
            rope_style: RopeStyle::Half,
            bos_token_id: self.bos_token_id,
            eos_token_ids: self.eos_token_id.map(|e| e.to_vec()).unwrap_or_default(),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tinyllama_config_parses_with_gqa_and_defaults() {
        let json = r#"{"architectures":["LlamaForCausalLM"],"hidden_size":2048,
            "intermediate_size":5632,"num_attention_heads":32,"num_hidden_layers":22,
            "num_key_value_heads":4,"vocab_size":32000,"rms_norm_eps":1e-5,
            "bos_token_id":1,"eos_token_id":2,"model_type":"llama"}"#;
        let cfg = serde_json::from_str::<HfConfig>(json)
            .unwrap()
            .into_runtime()
            .unwrap();
        assert_eq!(cfg.head_dim, 64);
        assert_eq!(cfg.num_key_value_heads, 4);
        assert_eq!(cfg.eos_token_ids, vec![2]);
        assert_eq!(cfg.rope_theta, 10_000.0);
        assert!(!cfg.attention_bias);
    }

    #[test]
    fn llama3_eos_list_and_qwen_bias() {
        let json = r#"{"hidden_size":64,"intermediate_size":128,"num_attention_heads":4,
            "num_hidden_layers":1,"vocab_size":10,"eos_token_id":[7,8],"model_type":"qwen2"}"#;
        let cfg = serde_json::from_str::<HfConfig>(json)
            .unwrap()
            .into_runtime()
            .unwrap();
        assert_eq!(cfg.eos_token_ids, vec![7, 8]);
        assert!(cfg.attention_bias);
    }

    #[test]
    fn unsupported_architecture_and_bad_heads_are_rejected() {
        let json = r#"{"hidden_size":64,"intermediate_size":128,"num_attention_heads":4,
            "num_hidden_layers":1,"vocab_size":10,"model_type":"gpt2"}"#;
        let err = serde_json::from_str::<HfConfig>(json)
            .unwrap()
            .into_runtime()
            .unwrap_err();
        assert!(err.contains("gpt2"), "{err}");
        let json = r#"{"hidden_size":64,"intermediate_size":128,"num_attention_heads":4,
            "num_key_value_heads":3,"num_hidden_layers":1,"vocab_size":10}"#;
        let err = serde_json::from_str::<HfConfig>(json)
            .unwrap()
            .into_runtime()
            .unwrap_err();
        assert!(err.contains("multiple"), "{err}");
    }
}

//! Models: where weights come from, how they are loaded, and the llama forward pass.

pub mod attention;
pub mod chat;
pub mod config;
pub mod linear;
pub mod llama;
pub mod qmm;
pub mod quant;
pub mod tiny;
pub mod tokenizer;
pub mod weights;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device};
use sluice_contract::server::KvCacheDtype;
use sluice_contract::{Builtin, ModelRef};
use tokenizers::Tokenizer;

use chat::ChatTemplate;
use config::{HfConfig, ModelConfig};
use llama::Llama;
use quant::{Quantization, QuantizationFlag};
use tiny::TinyShape;

/// Failures while resolving or loading a model; each carries the path involved.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("failed to read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("failed to load {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("failed to load {path}: {source}")]
    Tensor {
        path: String,
        source: candle_core::Error,
    },
    #[error("failed to resolve model {spec:?}: {message}")]
    Resolve { spec: String, message: String },
}

impl ModelError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
    pub fn invalid(path: &Path, message: impl fmt::Display) -> Self {
        Self::Invalid {
            path: path.display().to_string(),
            message: message.to_string(),
        }
    }
    pub fn load(path: impl Into<String>, source: candle_core::Error) -> Self {
        Self::Tensor {
            path: path.into(),
            source,
        }
    }
}

/// Where a model comes from, as written on the command line or in `/model/load`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// `builtin:tiny` (or `builtin:tinyllama`, a 1.1B-shaped random model for benchmarks).
    Builtin(TinyShape),
    /// A directory with `config.json`, `*.safetensors` and `tokenizer.json`.
    Directory(PathBuf),
    /// A `.gguf` file.
    Gguf(PathBuf),
    /// `hf:ORG/NAME[@REVISION]`, read from the local Hugging Face cache; never downloaded.
    HfCache { repo: String, revision: String },
}

impl From<ModelRef> for ModelSource {
    fn from(r: ModelRef) -> Self {
        match r {
            ModelRef::Builtin(Builtin::Tiny) => Self::Builtin(TinyShape::Tiny),
            ModelRef::Builtin(Builtin::Tinyllama) => Self::Builtin(TinyShape::Tinyllama),
            ModelRef::Path(path)
                if path
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("gguf")) =>
            {
                Self::Gguf(path)
            }
            ModelRef::Path(path) => Self::Directory(path),
            ModelRef::HuggingFace { repo, revision } => Self::HfCache { repo, revision },
        }
    }
}

impl FromStr for ModelSource {
    type Err = String;

    /// The contract's grammar ([`ModelRef`]), with a path told apart by its extension.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<ModelRef>().map(Self::from)
    }
}

impl ModelSource {
    /// The reference in the contract's grammar (what `--model` takes).
    pub fn to_ref(&self) -> ModelRef {
        match self {
            Self::Builtin(TinyShape::Tiny) => ModelRef::Builtin(Builtin::Tiny),
            Self::Builtin(TinyShape::Tinyllama) => ModelRef::Builtin(Builtin::Tinyllama),
            Self::Directory(p) | Self::Gguf(p) => ModelRef::Path(p.clone()),
            Self::HfCache { repo, revision } => ModelRef::HuggingFace {
                repo: repo.clone(),
                revision: revision.clone(),
            },
        }
    }
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_ref().fmt(f)
    }
}

/// Finds a snapshot in the Hugging Face cache layout (`hub/models--ORG--NAME/snapshots/SHA`),
/// where a revision is either a commit hash or a ref name recorded under `refs/`.
pub fn resolve_hf_cache(hf_home: &Path, repo: &str, revision: &str) -> Result<PathBuf, ModelError> {
    let spec = format!("hf:{repo}@{revision}");
    let repo_dir = hf_home
        .join("hub")
        .join(format!("models--{}", repo.replace('/', "--")));
    if !repo_dir.is_dir() {
        return Err(ModelError::Resolve {
            spec,
            message: format!(
                "{} does not exist; the server never downloads, mount a populated cache",
                repo_dir.display()
            ),
        });
    }
    let sha = match std::fs::read_to_string(repo_dir.join("refs").join(revision)) {
        Ok(sha) => sha.trim().to_string(),
        Err(_) => revision.to_string(),
    };
    let snapshot = repo_dir.join("snapshots").join(&sha);
    if snapshot.is_dir() {
        Ok(snapshot)
    } else {
        Err(ModelError::Resolve {
            spec,
            message: format!("snapshot {} is not in the cache", snapshot.display()),
        })
    }
}

/// Facts about the loaded model, reported by `/v1/models` and metrics.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// The name clients use in the OpenAI API.
    pub served_name: String,
    pub source: String,
    /// The effective precision of the linear weights.
    pub quantization: String,
    pub device: String,
    pub context_length: usize,
    pub weight_bytes: usize,
    pub kv_bytes_per_token: usize,
    pub load_seconds: f64,
    pub eos_token_ids: Vec<u32>,
}

/// A model ready to serve.
pub struct LoadedModel {
    pub model: Llama,
    pub tokenizer: Arc<Tokenizer>,
    pub chat: Arc<ChatTemplate>,
    pub info: ModelInfo,
}

/// What to load.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub source: ModelSource,
    pub quantization: QuantizationFlag,
    pub device: Device,
    pub served_name: Option<String>,
    pub hf_home: Option<PathBuf>,
    /// Precision of the KV caches the model creates.
    pub kv_cache: KvCacheDtype,
}

/// Loads weights, tokenizer and chat template. Blocking: run it off the async runtime.
pub fn load(spec: &LoadSpec) -> Result<LoadedModel, ModelError> {
    let _span =
        tracing::info_span!("model_load", model = %spec.source, quantization = %spec.quantization)
            .entered();
    let started = Instant::now();
    let device = &spec.device;
    let auto_full = if device.is_cpu() {
        Quantization::F32
    } else {
        Quantization::F16
    };
    let (model, tokenizer, chat, quantization, default_name) = match &spec.source {
        ModelSource::Builtin(shape) => {
            let cfg = tiny::hf_config(*shape)
                .into_runtime()
                .map_err(|e| ModelError::invalid(Path::new("builtin"), e))?;
            let tensors = tiny::weights(*shape).map_err(|e| ModelError::load("builtin", e))?;
            let q = spec.quantization.level().unwrap_or(auto_full);
            let model = weights::load_hf(cfg, &tensors, q, device)
                .map_err(|e| ModelError::load("builtin", e))?;
            let tok =
                tiny::tokenizer().map_err(|e| ModelError::invalid(Path::new("builtin"), e))?;
            let chat = ChatTemplate::default_template(tiny::BOS, tiny::EOS);
            (model, tok, chat, q.to_string(), tiny::NAME.to_string())
        }
        ModelSource::Directory(dir) => load_dir(dir, spec, auto_full)?,
        ModelSource::Gguf(path) => load_gguf(path, spec)?,
        ModelSource::HfCache { repo, revision } => {
            let home = spec.hf_home.clone().ok_or_else(|| ModelError::Resolve {
                spec: spec.source.to_string(),
                message: "no Hugging Face cache configured (--hf-home or HF_HOME)".into(),
            })?;
            let dir = resolve_hf_cache(&home, repo, revision)?;
            let (m, t, c, q, _) = load_dir(&dir, spec, auto_full)?;
            (m, t, c, q, repo.clone())
        }
    };
    let model = model
        .with_kv_dtype(match spec.kv_cache {
            KvCacheDtype::F16 => DType::F16,
            KvCacheDtype::F32 => DType::F32,
        })
        .map_err(|e| ModelError::load(spec.source.to_string(), e))?;
    let cfg = model.config().clone();
    let mut eos = cfg.eos_token_ids.clone();
    for special in [
        tiny::EOS,
        "<|eot_id|>",
        "<|end_of_text|>",
        "<|im_end|>",
        "<|endoftext|>",
    ] {
        if let Some(id) = tokenizer.token_to_id(special)
            && !eos.contains(&id)
        {
            eos.push(id);
        }
    }
    let info = ModelInfo {
        served_name: spec.served_name.clone().unwrap_or(default_name),
        source: spec.source.to_string(),
        quantization,
        device: device_name(device),
        context_length: cfg.max_position_embeddings,
        weight_bytes: model.weight_bytes(),
        kv_bytes_per_token: model.kv_bytes_per_token(),
        load_seconds: started.elapsed().as_secs_f64(),
        eos_token_ids: eos,
    };
    tracing::info!(model = %info.source, quantization = %info.quantization, weight_mb = info.weight_bytes / (1 << 20), seconds = info.load_seconds, "model loaded");
    Ok(LoadedModel {
        model,
        tokenizer: Arc::new(tokenizer),
        chat: Arc::new(chat),
        info,
    })
}

type Parts = (Llama, Tokenizer, ChatTemplate, String, String);

fn load_dir(dir: &Path, spec: &LoadSpec, auto_full: Quantization) -> Result<Parts, ModelError> {
    if !dir.is_dir() {
        return Err(ModelError::invalid(dir, "not a directory or .gguf file"));
    }
    let has_safetensors = weights::safetensors_files(dir).is_ok();
    if !has_safetensors {
        // A directory holding one GGUF file (a PVC mount, say) is served as that file.
        let ggufs: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| ModelError::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
            .collect();
        return match ggufs.as_slice() {
            [one] => load_gguf(one, spec),
            [] => Err(ModelError::invalid(dir, "no *.safetensors or *.gguf files")),
            _ => Err(ModelError::invalid(dir, "several .gguf files; name one")),
        };
    }
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| ModelError::io(&cfg_path, e))?;
    let hf: HfConfig =
        serde_json::from_str(&text).map_err(|e| ModelError::invalid(&cfg_path, e))?;
    let cfg = hf
        .into_runtime()
        .map_err(|e| ModelError::invalid(&cfg_path, e))?;
    let files = weights::safetensors_files(dir)?;
    let st = weights::Safetensors::open(&files)?;
    let q = spec.quantization.level().unwrap_or(auto_full);
    let model = weights::load_hf(cfg, &st, q, &spec.device)
        .map_err(|e| ModelError::load(dir.display().to_string(), e))?;
    let tok = tokenizer::load_file(&dir.join("tokenizer.json"))?;
    let chat = chat_for(dir, &tok, None, model.config())?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "model".into());
    Ok((model, tok, chat, q.to_string(), name))
}

fn load_gguf(path: &Path, spec: &LoadSpec) -> Result<Parts, ModelError> {
    let mut gguf = weights::Gguf::open(path)?;
    let cfg = gguf.config()?;
    let stored = gguf.stored_quantization();
    let model = gguf
        .load(cfg, spec.quantization, &spec.device)
        .map_err(|e| ModelError::load(path.display().to_string(), e))?;
    let beside = path.with_file_name("tokenizer.json");
    let tok = if beside.exists() {
        tokenizer::load_file(&beside)?
    } else {
        let mut tok = tokenizer::from_gguf(&gguf.content, path)?;
        // llama.cpp's rule: as the file says, else BOS for a SentencePiece (`llama`) vocabulary
        // and for Llama 3's byte-level one, none for other byte-level (`gpt2`) ones.
        let md = &gguf.content.metadata;
        let text = |key: &str| md.get(key).and_then(|v| v.to_string().ok()).cloned();
        let add_bos = md
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or_else(|| {
                text("tokenizer.ggml.model").as_deref() == Some("llama")
                    || matches!(
                        text("tokenizer.ggml.pre").as_deref(),
                        Some("llama3" | "llama-bpe")
                    )
            });
        if let Some(bos) = model.config().bos_token_id.filter(|_| add_bos) {
            let bos_str = tok.id_to_token(bos).unwrap_or_default();
            let post = tokenizers::processors::template::TemplateProcessing::builder()
                .try_single(format!("{bos_str} $A"))
                .and_then(|b| {
                    b.special_tokens(vec![(bos_str.clone(), bos)])
                        .build()
                        .map_err(|e| e.to_string())
                })
                .map_err(|e| ModelError::invalid(path, e))?;
            tok.with_post_processor(Some(post));
        }
        tok
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    // The template most GGUF files carry, as llama.cpp and Ollama use it.
    let embedded = gguf
        .content
        .metadata
        .get("tokenizer.chat_template")
        .and_then(|v| v.to_string().ok())
        .map(|src| {
            (
                src.clone(),
                format!("{} (tokenizer.chat_template)", path.display()),
            )
        });
    let chat = chat_for(dir, &tok, embedded, model.config())?;
    let q = match spec.quantization.level() {
        None => stored,
        Some(level) => level.to_string(),
    };
    let name = path
        .file_stem()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "model".into());
    Ok((model, tok, chat, q, name))
}

/// The chat template: a `tokenizer_config.json` beside the model wins, then a template
/// embedded in the model file (`embedded`: source and origin), then the default. The BOS/EOS
/// strings templates refer to come from the model's configured ids.
fn chat_for(
    dir: &Path,
    tok: &Tokenizer,
    embedded: Option<(String, String)>,
    cfg: &ModelConfig,
) -> Result<ChatTemplate, ModelError> {
    let tc = dir.join("tokenizer_config.json");
    if tc.exists()
        && let Some(t) =
            ChatTemplate::from_tokenizer_config(&tc).map_err(|e| ModelError::invalid(&tc, e))?
    {
        return Ok(t);
    }
    let bos = tok
        .id_to_token(cfg.bos_token_id.unwrap_or(0))
        .unwrap_or_default();
    let eos = tok
        .id_to_token(cfg.eos_token_ids.first().copied().unwrap_or(1))
        .unwrap_or_default();
    if let Some((source, origin)) = embedded {
        return ChatTemplate::new(&source, &bos, &eos, &origin)
            .map_err(|e| ModelError::invalid(dir, e));
    }
    Ok(ChatTemplate::default_template(&bos, &eos))
}

pub fn device_name(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => "cuda".into(),
        Device::Metal(_) => "metal".into(),
    }
}

#[cfg(test)]
mod load_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_sources_parse() {
        assert_eq!(
            "builtin:tiny".parse::<ModelSource>().unwrap(),
            ModelSource::Builtin(TinyShape::Tiny)
        );
        assert_eq!(
            "hf:TinyLlama/TinyLlama-1.1B-Chat-v1.0@abc"
                .parse::<ModelSource>()
                .unwrap(),
            ModelSource::HfCache {
                repo: "TinyLlama/TinyLlama-1.1B-Chat-v1.0".into(),
                revision: "abc".into()
            }
        );
        assert_eq!(
            "/m/x.gguf".parse::<ModelSource>().unwrap(),
            ModelSource::Gguf("/m/x.gguf".into())
        );
        assert_eq!(
            "/models/llama".parse::<ModelSource>().unwrap(),
            ModelSource::Directory("/models/llama".into())
        );
        assert!("builtin:huge".parse::<ModelSource>().is_err());
        assert!("hf:noslash".parse::<ModelSource>().is_err());
        assert!("hf:a/../b".parse::<ModelSource>().is_err());
        // The revision grammar is the contract's, the same the CRD admits.
        for &(revision, ok) in sluice_contract::model::HF_REVISION_SAMPLES {
            let parsed = format!("hf:org/name@{revision}").parse::<ModelSource>();
            assert_eq!(parsed.is_ok(), ok, "{revision:?}: {parsed:?}");
        }
    }

    #[test]
    fn hf_cache_resolves_refs_and_reports_missing() {
        let home = tempfile::tempdir().unwrap();
        let repo = home.path().join("hub/models--org--m");
        std::fs::create_dir_all(repo.join("snapshots/abc123")).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "abc123\n").unwrap();
        assert_eq!(
            resolve_hf_cache(home.path(), "org/m", "main").unwrap(),
            repo.join("snapshots/abc123")
        );
        assert_eq!(
            resolve_hf_cache(home.path(), "org/m", "abc123").unwrap(),
            repo.join("snapshots/abc123")
        );
        let err = resolve_hf_cache(home.path(), "org/other", "main")
            .unwrap_err()
            .to_string();
        assert!(err.contains("never downloads"), "{err}");
    }
}

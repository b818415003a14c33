//! Arguments of `sluice profile`.

use std::path::PathBuf;

use clap::Args;
use reqwest::Url;
use sluice_contract::Quantization;

/// Arguments of `sluice profile`.
#[derive(Debug, Clone, Args)]
pub struct ProfileArgs {
    /// A running server to measure (else one is started with --model).
    #[arg(long, env = "SLUICE_PROFILE_URL")]
    pub url: Option<Url>,

    /// Its admin API, when on its own port (`--admin-port`); default: --url.
    #[arg(long, env = "SLUICE_PROFILE_ADMIN_URL", requires = "url")]
    pub admin_url: Option<Url>,

    /// Bearer token of the server.
    #[arg(long, env = "SLUICE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Model of the server to start (`builtin:tiny`, a `.gguf`, a checkpoint directory).
    #[arg(long, env = "SLUICE_PROFILE_MODEL", default_value = "builtin:tiny")]
    pub model: sluice_contract::ModelRef,

    /// The sluice-server binary to start (default: next to this one, then PATH).
    #[arg(long, env = "SLUICE_SERVER_BIN")]
    pub server_bin: Option<PathBuf>,

    /// CPU threads of the started server (default: its own choice).
    #[arg(long, env = "SLUICE_PROFILE_THREADS")]
    pub threads: Option<usize>,

    /// `--max-batch-size` of the started server.
    #[arg(long, env = "SLUICE_PROFILE_MAX_BATCH_SIZE", default_value_t = 16)]
    pub max_batch_size: usize,

    /// `--max-concurrent-requests` of the started server.
    #[arg(long, env = "SLUICE_PROFILE_MAX_CONCURRENT", default_value_t = 64)]
    pub max_concurrent_requests: usize,

    /// `--memory-budget-mb` of the started server.
    #[arg(long, env = "SLUICE_PROFILE_MEMORY_BUDGET_MB")]
    pub memory_budget_mb: Option<u64>,

    /// Quantizations to measure, in ladder order (default: the one loaded).
    #[arg(long, env = "SLUICE_PROFILE_QUANTIZATIONS", value_delimiter = ',')]
    pub quantizations: Vec<Quantization>,

    /// Prompt lengths (tokens) to time prefill at.
    #[arg(
        long,
        env = "SLUICE_PROFILE_PROMPTS",
        value_delimiter = ',',
        default_value = "16,64,256,512"
    )]
    pub prompt_lengths: Vec<u32>,

    /// Batch sizes to time a decode step at (capped at the server's batch limit).
    #[arg(
        long,
        env = "SLUICE_PROFILE_BATCHES",
        value_delimiter = ',',
        default_value = "1,2,4,8,16"
    )]
    pub batch_sizes: Vec<u32>,

    /// Prompt tokens of each sequence in the decode measurements: decode steps read the whole
    /// context, so measure at the workload's typical prompt length.
    #[arg(long, env = "SLUICE_PROFILE_DECODE_PROMPT_TOKENS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub decode_prompt_tokens: u32,

    /// Tokens each decode measurement generates.
    #[arg(long, env = "SLUICE_PROFILE_DECODE_TOKENS", default_value_t = 32)]
    pub decode_tokens: u32,

    /// Measurements per point (the median is kept).
    #[arg(long, env = "SLUICE_PROFILE_REPEATS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeats: u32,

    /// Seconds from pod creation to Ready to record (default: measured when this command starts
    /// the server; 0 for --url). On Kubernetes add image pull and scheduling.
    #[arg(long, env = "SLUICE_PROFILE_START_SECONDS")]
    pub start_seconds: Option<f64>,

    /// Profile name (default: the served model's).
    #[arg(long, env = "SLUICE_PROFILE_NAME")]
    pub name: Option<String>,

    /// Write the profile here (default: stdout).
    #[arg(long, env = "SLUICE_PROFILE_OUT")]
    pub out: Option<PathBuf>,
}

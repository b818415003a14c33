//! `sluice-server`'s command line, defined once: the server flattens [`ServerArgs`] into its clap
//! CLI (feature `clap`), and the operator and the demo build the same struct and render it with
//! [`ServerArgs::to_args`], so a flag renamed here is renamed everywhere.

use std::path::PathBuf;
use std::time::Duration;

use crate::model::{Builtin, ModelRef};
use crate::quantization::QuantizationFlag;

/// Environment variable of the inference API key (`--api-key`).
pub const API_KEY_ENV: &str = "SLUICE_API_KEY";
/// Environment variable of the admin key (`--admin-key`).
pub const ADMIN_KEY_ENV: &str = "SLUICE_ADMIN_KEY";

/// The port the server listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 8000;
/// Name of the inference port on the operator's pods (`kubectl sluice bench` forwards to it).
pub const HTTP_PORT_NAME: &str = "http";

/// Compute device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, strum::IntoStaticStr)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[strum(serialize_all = "lowercase")]
pub enum DeviceKind {
    #[default]
    Cpu,
    Cuda,
    Metal,
}

/// Precision the KV cache stores keys and values in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, strum::IntoStaticStr)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[strum(serialize_all = "lowercase")]
pub enum KvCacheDtype {
    /// Half the memory per token of f32 (llama.cpp's default too); attention still computes in
    /// f32, each key and value widened as it is read.
    #[default]
    F16,
    /// Exact keys and values, twice the memory.
    F32,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, strum::IntoStaticStr)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[strum(serialize_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[cfg(feature = "clap")]
fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// How `sluice-server` serves: every flag of its `serve` mode, each also an environment variable.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct ServerArgs {
    /// Model to serve: `builtin:tiny`, a checkpoint directory, a `.gguf` file, or
    /// `hf:ORG/NAME[@REVISION]` from the local Hugging Face cache.
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "SLUICE_MODEL", default_value = "builtin:tiny")
    )]
    pub model: ModelRef,
    /// Address to listen on.
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "SLUICE_HOST", default_value = "0.0.0.0")
    )]
    pub host: String,
    /// Port to listen on.
    #[cfg_attr(feature = "clap", arg(long, env = "SLUICE_PORT", default_value_t = DEFAULT_PORT))]
    pub port: u16,
    /// Serve the admin API (`/admin/*`, `/model/*`) on this port only, apart from inference:
    /// the main port then answers 404 for it, so a Service exposing the main port never exposes
    /// limits or model loading. Without it, both share the main port.
    #[cfg_attr(feature = "clap", arg(long, env = "SLUICE_ADMIN_PORT"))]
    pub admin_port: Option<u16>,
    /// CPU threads the model computes on. Default: the CPU quota this process may use (its
    /// cgroup limit in a container, else its logical CPUs), so a pod limited to 2 CPUs on a
    /// 64-core node runs 2 threads, not 64. Without the flag, `RAYON_NUM_THREADS` and
    /// `CANDLE_NUM_THREADS` are honoured when set.
    #[cfg_attr(feature = "clap", arg(long, env = "SLUICE_THREADS"))]
    pub threads: Option<usize>,
    /// Weight precision: auto, f32, f16, bf16, q8_0, q4_0 or q4k.
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "SLUICE_QUANTIZATION", default_value = "auto")
    )]
    pub quantization: QuantizationFlag,
    /// Server-wide cap on generated tokens per request (changeable at run time).
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "SLUICE_MAX_TOKENS", default_value_t = 256)
    )]
    pub max_tokens: usize,
    /// JSON file of run-time settings (`{"maxTokens": 256, "quantization": "q8_0"}`, the
    /// `admin::RuntimeSettings` contract): read at start in place of --max-tokens and
    /// --quantization, then re-read every second, a new cap applying at once and a new precision
    /// by loading the new weights while the old ones serve. The operator mounts it from a
    /// ConfigMap, so its knobs never restart a pod. A missing or malformed file at start is an
    /// error; later, one leaves the running settings alone.
    #[cfg_attr(feature = "clap", arg(long, env = "SLUICE_SETTINGS_FILE"))]
    pub settings_file: Option<PathBuf>,
    /// Bearer token required on every endpoint except /health, /ready and /metrics.
    #[cfg_attr(
        feature = "clap",
        arg(long, env = API_KEY_ENV, hide_env_values = true)
    )]
    pub api_key: Option<String>,
    /// Bearer token the admin API (`/admin/*`, `/model/*`) requires instead of the API key, so
    /// an inference client can never change limits or models. The operator gives every service
    /// its own, in [`ADMIN_KEY_ENV`]. Unset: the admin API takes the API
    /// key.
    #[cfg_attr(
        feature = "clap",
        arg(long, env = ADMIN_KEY_ENV, hide_env_values = true)
    )]
    pub admin_key: Option<String>,
    /// PEM certificate chain the admin port serves TLS with (with --admin-tls-key-file; needs
    /// --admin-port). Re-read when the file changes, so a rotated certificate (a renewed
    /// Secret) takes effect without a restart. The operator gives every service its own.
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "SLUICE_ADMIN_TLS_CERT_FILE", requires_all = ["admin_tls_key_file", "admin_port"])
    )]
    pub admin_tls_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1; RSA, ECDSA or Ed25519) of
    /// --admin-tls-cert-file.
    #[cfg_attr(
        feature = "clap",
        arg(
            long,
            env = "SLUICE_ADMIN_TLS_KEY_FILE",
            requires = "admin_tls_cert_file"
        )
    )]
    pub admin_tls_key_file: Option<PathBuf>,
    /// Requests admitted at once (queued + running); more get 429 (changeable at run time).
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "SLUICE_MAX_CONCURRENT_REQUESTS", default_value_t = 64)
    )]
    pub max_concurrent_requests: usize,
    /// Sequences batched into one forward step; 1 disables batching (changeable at run time).
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "SLUICE_MAX_BATCH_SIZE", default_value_t = 16)
    )]
    pub max_batch_size: usize,
    /// Prompt tokens prefilled per forward step, across all new requests: a longer prompt is
    /// prefilled in chunks over several steps, so running streams keep getting a token every
    /// step while a burst of new prompts is read in. Default: 64 on CPU, 512 on a GPU (about
    /// what each prefills in well under a second).
    #[cfg_attr(feature = "clap", arg(long, env = "SLUICE_MAX_PREFILL_TOKENS"))]
    pub max_prefill_tokens: Option<usize>,
    /// Precision of the KV cache: f16 holds twice the tokens (so twice the sequences) in the
    /// same memory as f32, at a rounding of keys and values to 11 significant bits.
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "SLUICE_KV_CACHE_DTYPE", value_enum, default_value = "f16")
    )]
    pub kv_cache_dtype: KvCacheDtype,
    /// Memory the model and KV cache may use, in MB; default: the cgroup limit, else RAM.
    #[cfg_attr(feature = "clap", arg(long, env = "SLUICE_MEMORY_BUDGET_MB"))]
    pub memory_budget_mb: Option<u64>,
    /// Deadline for one request, queueing included (e.g. `60s`, `2m`).
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "SLUICE_REQUEST_TIMEOUT", default_value = "60s", value_parser = parse_duration)
    )]
    pub request_timeout: Duration,
    /// After SIGTERM, how long the server keeps accepting requests while `/ready` answers 503,
    /// so that clients routed here before the endpoint update still get answers.
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "SLUICE_DRAIN_DELAY", default_value = "5s", value_parser = parse_duration)
    )]
    pub drain_delay: Duration,
    /// Then, how long it waits for in-flight requests before exiting.
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "SLUICE_DRAIN_TIMEOUT", default_value = "30s", value_parser = parse_duration)
    )]
    pub drain_timeout: Duration,
    /// A client must send a request's headers within this time (a kept-alive connection, its
    /// next request's); slower connections are closed.
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "SLUICE_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)
    )]
    pub header_read_timeout: Duration,
    /// A client must send a request's body within this time; a slower one gets 408.
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "SLUICE_BODY_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)
    )]
    pub body_read_timeout: Duration,
    /// Connections open at once; more wait in the accept backlog.
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "SLUICE_MAX_CONNECTIONS", default_value_t = 1024)
    )]
    pub max_connections: usize,
    /// Model name clients use in the OpenAI API; default derived from the model source.
    #[cfg_attr(feature = "clap", arg(long, env = "SLUICE_SERVED_MODEL_NAME"))]
    pub served_model_name: Option<String>,
    /// Compute device; cuda and metal need the matching cargo feature.
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "SLUICE_DEVICE", value_enum, default_value = "cpu")
    )]
    pub device: DeviceKind,
    /// The only directory `POST /model/load` may load files from (`builtin:` and `hf:` models
    /// stay allowed). A path outside it is refused without being looked at, so the admin API
    /// cannot probe the filesystem. Unset: any path.
    #[cfg_attr(feature = "clap", arg(long, env = "SLUICE_MODEL_ROOT"))]
    pub model_root: Option<PathBuf>,
    /// Hugging Face cache root for `hf:` models (read only; nothing is downloaded).
    #[cfg_attr(feature = "clap", arg(long, env = "HF_HOME"))]
    pub hf_home: Option<PathBuf>,
    /// Log line format.
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "SLUICE_LOG_FORMAT", value_enum, default_value = "text")
    )]
    pub log_format: LogFormat,
}

impl Default for ServerArgs {
    /// The same values as the flags' defaults (a test parses an empty command line to check).
    fn default() -> Self {
        Self {
            model: ModelRef::Builtin(Builtin::Tiny),
            host: "0.0.0.0".into(),
            port: DEFAULT_PORT,
            admin_port: None,
            threads: None,
            quantization: QuantizationFlag::Auto,
            max_tokens: 256,
            settings_file: None,
            api_key: None,
            admin_key: None,
            admin_tls_cert_file: None,
            admin_tls_key_file: None,
            max_concurrent_requests: 64,
            max_batch_size: 16,
            max_prefill_tokens: None,
            kv_cache_dtype: KvCacheDtype::F16,
            memory_budget_mb: None,
            request_timeout: Duration::from_secs(60),
            drain_delay: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 1024,
            served_model_name: None,
            device: DeviceKind::Cpu,
            model_root: None,
            hf_home: None,
            log_format: LogFormat::Text,
        }
    }
}

/// Renders a duration as the server parses it: whole seconds as `Ns`, else milliseconds.
fn duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

impl ServerArgs {
    /// The command line that makes the server run with exactly these settings: every flag, in
    /// declaration order, so a pod spec never depends on the defaults of whichever server
    /// version it runs. Options are rendered when set; the keys never are (they travel in
    /// `SLUICE_API_KEY` and `SLUICE_ADMIN_KEY`, out of process listings).
    pub fn to_args(&self) -> Vec<String> {
        let ServerArgs {
            model,
            host,
            port,
            admin_port,
            threads,
            quantization,
            max_tokens,
            settings_file,
            api_key: _,
            admin_key: _,
            admin_tls_cert_file,
            admin_tls_key_file,
            max_concurrent_requests,
            max_batch_size,
            max_prefill_tokens,
            kv_cache_dtype,
            memory_budget_mb,
            request_timeout,
            drain_delay,
            drain_timeout,
            header_read_timeout,
            body_read_timeout,
            max_connections,
            served_model_name,
            device,
            model_root,
            hf_home,
            log_format,
        } = self;
        // With a settings file, the file alone says the cap and the precision: the command line
        // carries no stale copy of them (and a pod template no value that moves at run time).
        let unless_file = |v: String| settings_file.is_none().then_some(v);
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let flags: [(&str, Option<String>); 26] = [
            ("model", Some(model.to_string())),
            ("host", Some(host.clone())),
            ("port", Some(port.to_string())),
            ("admin-port", admin_port.map(|p| p.to_string())),
            ("threads", threads.map(|n| n.to_string())),
            ("quantization", unless_file(quantization.to_string())),
            ("max-tokens", unless_file(max_tokens.to_string())),
            ("settings-file", path(settings_file)),
            ("admin-tls-cert-file", path(admin_tls_cert_file)),
            ("admin-tls-key-file", path(admin_tls_key_file)),
            (
                "max-concurrent-requests",
                Some(max_concurrent_requests.to_string()),
            ),
            ("max-batch-size", Some(max_batch_size.to_string())),
            (
                "max-prefill-tokens",
                max_prefill_tokens.map(|n| n.to_string()),
            ),
            (
                "kv-cache-dtype",
                Some(<&str>::from(*kv_cache_dtype).to_owned()),
            ),
            ("memory-budget-mb", memory_budget_mb.map(|n| n.to_string())),
            ("request-timeout", Some(duration(*request_timeout))),
            ("drain-delay", Some(duration(*drain_delay))),
            ("drain-timeout", Some(duration(*drain_timeout))),
            ("header-read-timeout", Some(duration(*header_read_timeout))),
            ("body-read-timeout", Some(duration(*body_read_timeout))),
            ("max-connections", Some(max_connections.to_string())),
            ("served-model-name", served_model_name.clone()),
            ("device", Some(<&str>::from(*device).to_owned())),
            ("model-root", path(model_root)),
            ("hf-home", path(hf_home)),
            ("log-format", Some(<&str>::from(*log_format).to_owned())),
        ];
        flags
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| [format!("--{name}"), v]))
            .flatten()
            .collect()
    }
}

#[cfg(all(test, feature = "clap"))]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServerArgs,
    }

    fn parse(args: &[String]) -> ServerArgs {
        Cli::try_parse_from(std::iter::once("sluice-server".to_owned()).chain(args.iter().cloned()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .args
    }

    #[test]
    fn the_flag_defaults_are_the_default_struct() {
        assert_eq!(parse(&[]), ServerArgs::default());
    }

    #[test]
    fn rendered_arguments_parse_back_to_the_same_settings() {
        let all = ServerArgs {
            model: "hf:org/name@main".parse().unwrap(),
            host: "127.0.0.1".into(),
            port: 9000,
            admin_port: Some(9001),
            threads: Some(3),
            quantization: crate::Quantization::Q4_0.into(),
            max_tokens: 77,
            settings_file: None,
            api_key: None,
            admin_key: None,
            admin_tls_cert_file: Some("/tls/tls.crt".into()),
            admin_tls_key_file: Some("/tls/tls.key".into()),
            max_concurrent_requests: 5,
            max_batch_size: 2,
            max_prefill_tokens: Some(64),
            kv_cache_dtype: KvCacheDtype::F32,
            memory_budget_mb: Some(2048),
            request_timeout: Duration::from_secs(120),
            drain_delay: Duration::from_millis(1500),
            drain_timeout: Duration::from_secs(45),
            header_read_timeout: Duration::from_secs(3),
            body_read_timeout: Duration::from_secs(7),
            max_connections: 10,
            served_model_name: Some("m".into()),
            device: DeviceKind::Cuda,
            model_root: Some("/models".into()),
            hf_home: Some("/models/hf".into()),
            log_format: LogFormat::Json,
        };
        assert_eq!(parse(&all.to_args()), all);
        assert_eq!(
            parse(&ServerArgs::default().to_args()),
            ServerArgs::default()
        );
    }

    #[test]
    fn admin_tls_needs_both_files_and_the_admin_port() {
        let refused = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("sluice-server").chain(args.iter().copied()))
                .is_err()
        };
        assert!(refused(&[
            "--admin-tls-cert-file",
            "c",
            "--admin-tls-key-file",
            "k"
        ]));
        assert!(refused(&[
            "--admin-port",
            "1",
            "--admin-tls-cert-file",
            "c"
        ]));
        assert!(refused(&["--admin-port", "1", "--admin-tls-key-file", "k"]));
        assert!(!refused(&[
            "--admin-port",
            "1",
            "--admin-tls-cert-file",
            "c",
            "--admin-tls-key-file",
            "k"
        ]));
    }

    #[test]
    fn a_settings_file_replaces_the_cap_and_precision_flags() {
        let with_file = ServerArgs {
            settings_file: Some("/etc/sluice/settings.json".into()),
            quantization: crate::Quantization::Q4_0.into(),
            max_tokens: 77,
            ..ServerArgs::default()
        };
        let args = with_file.to_args();
        assert!(
            !args
                .iter()
                .any(|a| a == "--quantization" || a == "--max-tokens"),
            "{args:?}"
        );
        let parsed = parse(&args);
        assert_eq!(parsed.settings_file, with_file.settings_file);
        assert_eq!(parsed.max_tokens, ServerArgs::default().max_tokens);
    }
}

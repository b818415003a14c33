//! Command line and process wiring: flags (each also an environment variable), logging, model
//! load at start, the HTTP server, and draining on SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use sluice_contract::server::{DeviceKind, LogFormat, ServerArgs};

use crate::engine::{
    DEFAULT_CPU_PREFILL_TOKENS, DEFAULT_MAX_PREFILL_TOKENS, Engine, EngineModel, Limits,
};
use crate::http::listen::{self, ListenConfig};
use crate::http::tls::{self, TlsFiles};
use crate::http::{AppState, HttpConfig, router, routers};
use crate::metrics::Metrics;
use crate::model::quant::Quantization;
use crate::model::tiny::{self, ExportOptions, TinyShape};
use crate::model::{LoadSpec, ModelSource};
use crate::settings::{self, SettingsControl};
use sluice_contract::QuantizationFlag;

/// The Sluice inference server: llama-architecture models on candle, continuous batching,
/// OpenAI-compatible API, Prometheus metrics.
#[derive(Debug, Parser)]
#[command(
    name = "sluice-server",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the built-in tiny model to disk as safetensors + config + tokenizer and as GGUF.
    ExportTiny(ExportArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Directory to write into (created if missing).
    #[arg(long, env = "SLUICE_EXPORT_OUT")]
    pub out: PathBuf,
    /// Model shape: the tiny test model, or TinyLlama-1.1B's shape for benchmarks.
    #[arg(long, env = "SLUICE_EXPORT_SHAPE", value_enum, default_value = "tiny")]
    pub shape: TinyShape,
    /// Precision of the GGUF file's matrices (f32, f16, q8_0, q4_0, q4k). q4k writes
    /// llama.cpp's Q4_K_M mix: Q4_K, with Q6_K for the output and for attn_v/ffn_down in the
    /// layers llama.cpp gives more bits.
    #[arg(long, env = "SLUICE_EXPORT_GGUF_QUANTIZATION", default_value = "f32")]
    pub gguf_quantization: Quantization,
    /// Skip the safetensors file (the 1.1B shape is 4.4 GB in f32).
    #[arg(long, env = "SLUICE_EXPORT_NO_SAFETENSORS")]
    pub no_safetensors: bool,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.command.is_none() {
        // SAFETY: nothing has started a thread yet — clap only parsed the arguments.
        #[allow(unsafe_code)]
        unsafe {
            set_compute_threads(cli.serve.threads)
        };
    }
    let result = match cli.command {
        Some(Command::ExportTiny(args)) => export(args),
        None => serve(cli.serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Fixes the size of candle's worker pools (they read `RAYON_NUM_THREADS`, and
/// `CANDLE_NUM_THREADS` first for the pool the model runs on). Without it candle counts physical
/// cores — ignoring a container's CPU limit — and, where all cores look alike, re-reads
/// `/proc/cpuinfo` on every operation to do so.
///
/// An explicit `threads` sets both variables. Otherwise a `RAYON_NUM_THREADS` already set is
/// kept, else it becomes the CPU quota this process may use (logical CPUs, cgroup-limited); a
/// `CANDLE_NUM_THREADS` already set is left alone either way.
///
/// # Safety
/// Must run before any other thread starts: it sets environment variables.
#[allow(unsafe_code)]
pub unsafe fn set_compute_threads(threads: Option<usize>) {
    let set = |name: &str, n: usize| {
        // SAFETY: the caller guarantees no other thread exists, so nothing reads the
        // environment concurrently.
        unsafe { std::env::set_var(name, n.to_string()) }
    };
    match threads {
        Some(n) if n > 0 => {
            set("RAYON_NUM_THREADS", n);
            set("CANDLE_NUM_THREADS", n);
        }
        _ if std::env::var_os("RAYON_NUM_THREADS").is_some() => {}
        _ => set(
            "RAYON_NUM_THREADS",
            std::thread::available_parallelism().map_or(1, usize::from),
        ),
    }
}

fn export(args: ExportArgs) -> anyhow::Result<()> {
    let opts = ExportOptions {
        shape: args.shape,
        gguf: Some(args.gguf_quantization),
        safetensors: !args.no_safetensors,
    };
    let files = tiny::export(&args.out, &opts).map_err(anyhow::Error::msg)?;
    for f in files {
        println!("{}", f.display());
    }
    Ok(())
}

fn device(kind: DeviceKind) -> anyhow::Result<candle_core::Device> {
    Ok(match kind {
        DeviceKind::Cpu => candle_core::Device::Cpu,
        DeviceKind::Cuda => candle_core::Device::new_cuda(0)
            .context("failed to open CUDA device 0 (built with --features cuda?)")?,
        DeviceKind::Metal => candle_core::Device::new_metal(0)
            .context("failed to open Metal device 0 (built with --features metal?)")?,
    })
}

fn serve(mut args: ServerArgs) -> anyhow::Result<()> {
    let _telemetry =
        sluice_telemetry::init("sluice-server", matches!(args.log_format, LogFormat::Json));
    if let Some(path) = &args.settings_file {
        let s = settings::read_file(path).map_err(anyhow::Error::msg)?;
        args.max_tokens = s.max_tokens;
        args.quantization = s.quantization.into();
    }
    if args.max_tokens == 0
        || args.max_concurrent_requests == 0
        || args.max_batch_size == 0
        || args.max_prefill_tokens == Some(0)
    {
        anyhow::bail!(
            "--max-tokens, --max-concurrent-requests, --max-batch-size and --max-prefill-tokens must be at least 1"
        );
    }
    let source = ModelSource::from(args.model.clone());
    let addr: SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .with_context(|| format!("failed to parse listen address {}:{}", args.host, args.port))?;
    let device = device(args.device)?;
    let spec = LoadSpec {
        source,
        quantization: args.quantization,
        device: device.clone(),
        served_name: args.served_model_name.clone(),
        hf_home: args.hf_home.clone(),
        kv_cache: args.kv_cache_dtype,
    };
    let loaded = crate::model::load(&spec).context("failed to load the model")?;
    let running_quantization = match args.quantization {
        QuantizationFlag::Level(q) => Some(q),
        QuantizationFlag::Auto => loaded.info.quantization.parse().ok(),
    };
    let budget = args
        .memory_budget_mb
        .map(|mb| mb * 1024 * 1024)
        .unwrap_or_else(crate::memory::default_budget_bytes);
    let metrics = Metrics::new();
    let limits = Limits::new(
        args.max_tokens,
        args.max_concurrent_requests,
        args.max_batch_size,
    )
    .with_max_prefill_tokens(args.max_prefill_tokens.unwrap_or(
        // What each prefills in well under a second: on 2 CPU cores a 1.1B model reads about
        // 90 prompt tokens/s (docs/benchmarks.md), a GPU thousands.
        if device.is_cpu() {
            DEFAULT_CPU_PREFILL_TOKENS
        } else {
            DEFAULT_MAX_PREFILL_TOKENS
        },
    ));
    let engine = Engine::start(Some(EngineModel::serve(loaded)), limits, metrics, budget);
    let mut state = AppState::new(
        engine,
        HttpConfig {
            api_key: args.api_key.filter(|k| !k.is_empty()),
            admin_key: args.admin_key.filter(|k| !k.is_empty()),
            request_timeout: args.request_timeout,
            body_read_timeout: args.body_read_timeout,
            device,
            hf_home: args.hf_home,
            model_root: args.model_root,
            default_quantization: args.quantization,
            kv_cache: args.kv_cache_dtype,
        },
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    // Precision switches reload the model the server started with; a model whose precision
    // has no name here (an `auto` pick outside the ladder) only takes cap changes.
    if let Some(q) = running_quantization {
        let control = SettingsControl::new(
            state.engine.clone(),
            spec,
            q,
            args.max_tokens,
            state.loading.clone(),
        );
        if let Some(path) = args.settings_file.clone() {
            runtime.spawn(settings::watch_file(
                control.clone(),
                path,
                settings::FILE_POLL,
            ));
        }
        state = state.with_settings(control);
    }
    let listen = ListenConfig {
        header_read_timeout: args.header_read_timeout,
        max_connections: args.max_connections,
        drain_delay: args.drain_delay,
        drain_timeout: args.drain_timeout,
    };
    let admin_tls = match (args.admin_tls_cert_file, args.admin_tls_key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => anyhow::bail!("--admin-tls-cert-file and --admin-tls-key-file go together"),
    };
    if admin_tls.is_some() && args.admin_port.is_none() {
        anyhow::bail!("--admin-tls-cert-file needs --admin-port: TLS is served on the admin port");
    }
    runtime.block_on(run_http(state, addr, args.admin_port, admin_tls, listen))
}

async fn run_http(
    state: AppState,
    addr: SocketAddr,
    admin_port: Option<u16>,
    admin_tls: Option<TlsFiles>,
    listen: ListenConfig,
) -> anyhow::Result<()> {
    let admin_tls = admin_tls
        .map(|files| tls::acceptor(files, tls::TLS_FILE_POLL))
        .transpose()?;
    let bind = |addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("failed to listen on {addr}"))
    };
    let listener = bind(addr).await?;
    tracing::info!(%addr, "listening");
    // One signal, observed by every listener.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let admission = state.admission.clone();
    let on_shutdown = move || {
        tracing::info!(
            in_flight = admission.in_flight(),
            "shutdown signal: draining"
        );
        admission.start_draining();
    };
    let Some(port) = admin_port else {
        listen::serve(
            listener,
            router(state),
            &listen,
            None,
            stopped(stop_rx),
            on_shutdown,
        )
        .await;
        tracing::info!("stopped");
        return Ok(());
    };
    let admin_addr = SocketAddr::new(addr.ip(), port);
    let admin_listener = bind(admin_addr).await?;
    tracing::info!(%admin_addr, tls = admin_tls.is_some(), "admin API listening");
    let (inference, admin) = routers(state);
    // The admin port has nobody to drain for: it stops with the delay's end like the rest.
    tokio::join!(
        listen::serve(
            listener,
            inference,
            &listen,
            None,
            stopped(stop_rx.clone()),
            on_shutdown
        ),
        listen::serve(
            admin_listener,
            admin,
            &listen,
            admin_tls,
            stopped(stop_rx),
            || {}
        ),
    );
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "failed to install the SIGTERM handler");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

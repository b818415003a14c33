//! Aggregate decode throughput of the engine at 1, 4 and 16 concurrent streams, with continuous
//! batching on (batch limit 16) and forced off (batch limit 1), on the tiny model and on
//! TinyLlama-1.1B-shaped random weights in q8_0 and q4_0. Prints a markdown table; the ratio
//! column is tokens/s relative to one stream of the same model and mode, measured in this run.
//!
//! `cargo bench -p sluice-server --bench throughput -- [--models tiny,tinyllama-q8_0,tinyllama-q4_0] [--tokens 32] [--streams 1,4,16] [--modes on,off] [--device cpu|cuda]`
//!
//! `--device cuda` needs `--features cuda` and a GPU (scripts/gpu-check.sh runs it).
//!
//! The 1.1B-shaped GGUF files are generated on first use under `target/bench-models/` (never
//! committed, never downloaded).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_server::engine::{Engine, EngineModel, Event, GenerationParams, Limits, ValidRequest};
use sluice_server::metrics::Metrics;
use sluice_server::model::quant::{Quantization, QuantizationFlag};
use sluice_server::model::tiny::{self, ExportOptions, TinyShape};
use sluice_server::model::{LoadSpec, ModelSource, load};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The device of `--device`: `cpu` (default) or `cuda` (GPU 0).
fn device() -> candle_core::Device {
    match arg("--device").as_deref() {
        None | Some("cpu") => candle_core::Device::Cpu,
        Some("cuda") => candle_core::Device::new_cuda(0)
            .expect("--device cuda needs --features cuda and a CUDA GPU"),
        Some(other) => panic!("unknown --device {other} (cpu or cuda)"),
    }
}

fn model_source(name: &str) -> (ModelSource, QuantizationFlag) {
    match name {
        "tiny" => (
            ModelSource::Builtin(TinyShape::Tiny),
            QuantizationFlag::Auto,
        ),
        "tiny-q8_0" => (
            ModelSource::Builtin(TinyShape::Tiny),
            Quantization::Q8_0.into(),
        ),
        "tiny-q4_0" => (
            ModelSource::Builtin(TinyShape::Tiny),
            Quantization::Q4_0.into(),
        ),
        other => {
            let q: Quantization = other
                .strip_prefix("tinyllama-")
                .unwrap_or_else(|| panic!("unknown model {other}"))
                .parse()
                .unwrap();
            let target = std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
            let dir = target.join("bench-models").join(format!("tinyllama-{q}"));
            let file = dir.join("model.gguf");
            if !file.exists() {
                eprintln!(
                    "generating {} (TinyLlama-1.1B shape, random weights, {q})",
                    file.display()
                );
                tiny::export(
                    &dir,
                    &ExportOptions {
                        shape: TinyShape::Tinyllama,
                        gguf: Some(q),
                        safetensors: false,
                    },
                )
                .unwrap();
                // The tiny tokenizer goes with it; its vocabulary is smaller than the model's,
                // which does not matter for throughput.
            }
            (ModelSource::Gguf(file), QuantizationFlag::Auto)
        }
    }
}

/// Runs `streams` concurrent generations of `tokens` tokens each; returns aggregate tokens/s.
fn run(engine: &Engine, streams: usize, tokens: usize) -> f64 {
    let view = engine.model().unwrap();
    let prompt = view
        .tokenizer
        .encode("The operator reads the queue and", true)
        .unwrap()
        .get_ids()
        .to_vec();
    let started = Instant::now();
    let rxs: Vec<_> = (0..streams)
        .map(|i| {
            let now = Instant::now();
            let req = ValidRequest {
                prompt_ids: prompt.clone(),
                params: GenerationParams {
                    max_tokens: tokens,
                    temperature: 0.0,
                    top_p: None,
                    top_k: None,
                    seed: i as u64,
                    stop: vec![],
                    ignore_eos: true,
                },
                arrived: now,
                deadline: now + Duration::from_secs(3600),
                model_epoch: view.epoch,
            };
            engine.submit(req, tracing::Span::none())
        })
        .collect();
    let mut total = 0;
    for mut rx in rxs {
        while let Some(ev) = rx.blocking_recv() {
            match ev {
                Event::Token { .. } => total += 1,
                Event::Done { .. } => break,
                Event::Error(e) => panic!("generation failed: {e}"),
            }
        }
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--bench" || a == "--test")
        && arg("--models").is_none()
        && std::env::var("SLUICE_BENCH").is_err()
        && std::env::args().any(|a| a == "--test")
    {
        return; // `cargo test --benches` compiles and runs benches as tests; skip the long run.
    }
    // SAFETY: first thing in `main`; no other thread exists yet.
    #[allow(unsafe_code)]
    unsafe {
        sluice_server::cli::set_compute_threads(None)
    };
    let models = arg("--models").unwrap_or_else(|| "tiny,tinyllama-q8_0,tinyllama-q4_0".into());
    let tokens: usize = arg("--tokens").and_then(|t| t.parse().ok()).unwrap_or(32);
    let streams: Vec<usize> = arg("--streams")
        .unwrap_or_else(|| "1,4,16".into())
        .split(',')
        .map(|s| s.parse().expect("--streams takes numbers"))
        .collect();
    let modes = arg("--modes").unwrap_or_else(|| "on,off".into());
    println!("| model | batching | streams | tokens/s | vs 1 stream |");
    println!("|---|---|---:|---:|---:|");
    for name in models.split(',') {
        let (source, quantization) = model_source(name);
        let loaded = load(&LoadSpec {
            source,
            quantization,
            device: device(),
            served_name: None,
            hf_home: None,
        })
        .unwrap();
        let runner = Arc::new(std::sync::Mutex::new(Some(loaded)));
        for (mode, batch) in [("on", 16usize), ("off", 1usize)] {
            if !modes.split(',').any(|m| m == mode) {
                continue;
            }
            let loaded = load_again(&runner, name);
            let served = EngineModel::serve(loaded);
            let info = served.1.clone();
            let engine = Engine::start(
                Some(served),
                Limits::new(tokens, 1024, batch),
                Metrics::new(),
                u64::MAX,
            );
            run(&engine, 1, 4); // warm-up
            let mut base = 0.0;
            for &streams in &streams {
                let tps = run(&engine, streams, tokens);
                if base == 0.0 {
                    base = tps;
                }
                println!(
                    "| {name} ({}, {}) | {mode} | {streams} | {tps:.1} | {:.2}x |",
                    info.quantization,
                    info.device,
                    tps / base
                );
            }
        }
    }
}

/// The first mode reuses the loaded model; the second loads it again (an engine owns its model).
fn load_again(
    slot: &Arc<std::sync::Mutex<Option<sluice_server::model::LoadedModel>>>,
    name: &str,
) -> sluice_server::model::LoadedModel {
    if let Some(m) = slot.lock().unwrap().take() {
        return m;
    }
    let (source, quantization) = model_source(name);
    load(&LoadSpec {
        source,
        quantization,
        device: device(),
        served_name: None,
        hf_home: None,
    })
    .unwrap()
}

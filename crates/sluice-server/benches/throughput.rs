//! Aggregate decode throughput of the engine at 1, 4 and 16 concurrent streams, with continuous
//! batching on (batch limit 16) and forced off (batch limit 1), on the tiny model and on
//! TinyLlama-1.1B-shaped random weights in q8_0 and q4_0. Prints a markdown table; the ratio
//! column is tokens/s relative to one stream of the same model and mode, measured in this run.
//!
//! `cargo bench -p sluice-server --bench throughput -- [--models tiny,tinyllama-q8_0,tinyllama-q4_0] [--tokens 32] [--streams 1,4,16] [--modes on,off] [--device cpu|cuda]`
//!
//! `--device cuda` needs `--features cuda` and a GPU (scripts/gpu-check.sh runs it).
//! `--burst P [--budgets 512,1000000]` instead measures, per prefill budget, how long a burst
//! of four P-token prompts stalls four running streams (their longest gap between tokens) and
//! the burst's slowest time to first token.
//! `--attention CONTEXTS [--streams 16]` instead measures steady decode with prompts of each
//! context length, per KV cache precision (f32, f16) and attention path (candle's matmuls per
//! sequence, or the batched CPU kernel).
//! `--prefill-tokens P` also times one P-token prompt's prefill; `--json` prints one JSON object
//! per measurement instead of the table (scripts/bench-vs-llama-cpp.sh reads it).
//!
//! The 1.1B-shaped GGUF files are generated on first use under `target/bench-models/` (never
//! committed, never downloaded).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_contract::server::KvCacheDtype;
use sluice_server::engine::{Engine, EngineModel, Event, GenerationParams, Limits, ValidRequest};
use sluice_server::metrics::Metrics;
use sluice_server::model::attention::Isa;
use sluice_server::model::quant::{Quantization, QuantizationFlag};
use sluice_server::model::tiny::{self, ExportOptions, TinyShape};
use sluice_server::model::{LoadSpec, LoadedModel, ModelSource, load};

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

/// A greedy request for `max_tokens` tokens, generated to the end (no EOS stop), arriving now.
fn greedy_request(prompt: Vec<u32>, max_tokens: usize, seed: u64, epoch: u64) -> ValidRequest {
    let now = Instant::now();
    ValidRequest {
        prompt_ids: prompt,
        params: GenerationParams {
            max_tokens,
            temperature: 0.0,
            top_p: None,
            top_k: None,
            seed,
            stop: vec![],
            ignore_eos: true,
        },
        arrived: now,
        deadline: now + Duration::from_secs(3600),
        model_epoch: epoch,
    }
}

/// One measured run: aggregate generated tokens/s (first submit to last token) and each
/// stream's time to its first token.
struct Measured {
    tokens_per_second: f64,
    ttft_seconds: Vec<f64>,
}

/// Runs `streams` concurrent generations of `tokens` tokens each from `prompt`.
fn run_prompt(engine: &Engine, prompt: &[u32], streams: usize, tokens: usize) -> Measured {
    let view = engine.model().unwrap();
    let started = Instant::now();
    let rxs: Vec<_> = (0..streams)
        .map(|i| {
            let req = greedy_request(prompt.to_vec(), tokens, i as u64, view.epoch);
            engine.submit(req, tracing::Span::none())
        })
        .collect();
    let mut total = 0;
    let mut ttft_seconds = Vec::new();
    for mut rx in rxs {
        let mut first = true;
        while let Some(ev) = rx.blocking_recv() {
            match ev {
                Event::Token { .. } => {
                    total += 1;
                    if first {
                        ttft_seconds.push(started.elapsed().as_secs_f64());
                        first = false;
                    }
                }
                Event::Done { timings, .. } => {
                    // The engine's own first-token time, from the request's arrival.
                    if let Some(t) = ttft_seconds.last_mut() {
                        *t = timings.ttft_seconds;
                    }
                    break;
                }
                Event::Error(e) => panic!("generation failed: {e}"),
            }
        }
    }
    Measured {
        tokens_per_second: total as f64 / started.elapsed().as_secs_f64(),
        ttft_seconds,
    }
}

/// The bench's short prompt, as the model tokenizes it.
fn short_prompt(engine: &Engine) -> Vec<u32> {
    engine
        .model()
        .unwrap()
        .tokenizer
        .encode("The operator reads the queue and", true)
        .unwrap()
        .get_ids()
        .to_vec()
}

/// Runs `streams` concurrent generations of `tokens` tokens each; returns aggregate tokens/s.
fn run(engine: &Engine, streams: usize, tokens: usize) -> Measured {
    run_prompt(engine, &short_prompt(engine), streams, tokens)
}

/// A `tokens`-long prompt: the short prompt repeated (its BOS only at the start).
fn repeated_prompt(short: &[u32], tokens: usize) -> Vec<u32> {
    let mut ids = Vec::new();
    while ids.len() < tokens {
        let skip = usize::from(!ids.is_empty());
        ids.extend_from_slice(&short[skip..]);
    }
    ids.truncate(tokens);
    ids
}

/// Seconds to prefill one `tokens`-long prompt: the time to the first generated token of a
/// one-token generation.
fn prefill(engine: &Engine, tokens: usize) -> f64 {
    let ids = repeated_prompt(&short_prompt(engine), tokens);
    run_prompt(engine, &ids, 1, 1).ttft_seconds[0]
}

/// Steady decode rate of `streams` streams with `prompt`: generated tokens/s from the moment
/// every stream has its first token (prefill done) to the last token.
fn decode_rate(engine: &Engine, prompt: &[u32], streams: usize, tokens: usize) -> f64 {
    let epoch = engine.model().unwrap().epoch;
    let receivers: Vec<_> = (0..streams)
        .map(|i| {
            let req = greedy_request(prompt.to_vec(), tokens, i as u64, epoch);
            let mut rx = engine.submit(req, tracing::Span::none());
            std::thread::spawn(move || {
                let mut stamps = Vec::new();
                while let Some(ev) = rx.blocking_recv() {
                    match ev {
                        Event::Token { .. } => stamps.push(Instant::now()),
                        Event::Done { .. } => break,
                        Event::Error(e) => panic!("generation failed: {e}"),
                    }
                }
                stamps
            })
        })
        .collect();
    let stamps: Vec<Vec<Instant>> = receivers.into_iter().map(|h| h.join().unwrap()).collect();
    let all_started = stamps.iter().map(|s| s[0]).max().unwrap();
    let last = stamps.iter().flatten().max().unwrap();
    let after = stamps
        .iter()
        .flatten()
        .filter(|&&t| t > all_started)
        .count();
    after as f64 / (*last - all_started).as_secs_f64()
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
    if let Some(p) = arg("--burst").and_then(|p| p.parse::<usize>().ok()) {
        let budgets: Vec<usize> = arg("--budgets")
            .unwrap_or_else(|| "512,1000000".into())
            .split(',')
            .map(|b| b.parse().expect("--budgets takes numbers"))
            .collect();
        return burst(&models, p, &budgets);
    }
    if let Some(contexts) = arg("--attention") {
        let contexts: Vec<usize> = contexts
            .split(',')
            .map(|c| c.parse().expect("--attention takes context lengths"))
            .collect();
        let streams: Vec<usize> = arg("--streams")
            .unwrap_or_else(|| "16".into())
            .split(',')
            .map(|s| s.parse().expect("--streams takes numbers"))
            .collect();
        let tokens: usize = arg("--tokens").and_then(|t| t.parse().ok()).unwrap_or(32);
        return attention(&models, &contexts, &streams, tokens);
    }
    let tokens: usize = arg("--tokens").and_then(|t| t.parse().ok()).unwrap_or(32);
    let streams: Vec<usize> = arg("--streams")
        .unwrap_or_else(|| "1,4,16".into())
        .split(',')
        .map(|s| s.parse().expect("--streams takes numbers"))
        .collect();
    let modes = arg("--modes").unwrap_or_else(|| "on,off".into());
    let prefill_tokens: Option<usize> = arg("--prefill-tokens").and_then(|t| t.parse().ok());
    let json = std::env::args().any(|a| a == "--json");
    if !json {
        println!("| model | batching | streams | tokens/s | vs 1 stream | slowest TTFT s |");
        println!("|---|---|---:|---:|---:|---:|");
    }
    for name in models.split(',') {
        let loaded = load_model(name, KvCacheDtype::default());
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
                let m = run(&engine, streams, tokens);
                let tps = m.tokens_per_second;
                if base == 0.0 {
                    base = tps;
                }
                let slowest = m.ttft_seconds.iter().copied().fold(0.0, f64::max);
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"model": name, "mode": mode, "streams": streams,
                            "tokens_per_second": tps, "ttft_seconds": m.ttft_seconds})
                    );
                } else {
                    println!(
                        "| {name} ({}, {}) | {mode} | {streams} | {tps:.1} | {:.2}x | {slowest:.3} |",
                        info.quantization,
                        info.device,
                        tps / base
                    );
                }
            }
            if let Some(p) = prefill_tokens {
                let seconds = prefill(&engine, p);
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"model": name, "prefill_tokens": p, "seconds": seconds})
                    );
                } else {
                    println!(
                        "| {name} prefill of {p} tokens | {mode} | 1 | {:.1} prompt tokens/s | | {seconds:.3} |",
                        p as f64 / seconds
                    );
                }
            }
        }
    }
}

/// A burst of long prompts into running streams, per prefill budget: 4 streams decode 96
/// tokens each; once each has 8, 4 requests with `prompt_tokens`-token prompts arrive. Prints
/// the running streams' longest wait between two tokens (what a burst stalls them by) and the
/// newcomers' slowest time to first token.
fn burst(models: &str, prompt_tokens: usize, budgets: &[usize]) {
    println!(
        "| model | prefill budget | burst | running streams' longest gap (s) | burst's slowest TTFT (s) |"
    );
    println!("|---|---:|---|---:|---:|");
    for name in models.split(',') {
        for &budget in budgets {
            let served = EngineModel::serve(load_model(name, KvCacheDtype::default()));
            let engine = Engine::start(
                Some(served),
                Limits::new(128, 1024, 16).with_max_prefill_tokens(budget),
                Metrics::new(),
                u64::MAX,
            );
            run(&engine, 1, 4); // warm-up
            let short = short_prompt(&engine);
            let epoch = engine.model().unwrap().epoch;
            let request =
                |prompt: Vec<u32>, max_tokens: usize| greedy_request(prompt, max_tokens, 1, epoch);
            // Each running stream's receiver on its own thread, stamping tokens as they come.
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let running: Vec<_> = (0..4)
                .map(|_| {
                    let mut rx = engine.submit(request(short.clone(), 96), tracing::Span::none());
                    let ready = ready_tx.clone();
                    std::thread::spawn(move || {
                        let mut stamps = Vec::new();
                        while let Some(ev) = rx.blocking_recv() {
                            match ev {
                                Event::Token { .. } => {
                                    stamps.push(Instant::now());
                                    if stamps.len() == 8 {
                                        let _ = ready.send(());
                                    }
                                }
                                Event::Done { .. } => break,
                                Event::Error(e) => panic!("generation failed: {e}"),
                            }
                        }
                        stamps
                    })
                })
                .collect();
            for _ in 0..4 {
                ready_rx.recv().unwrap();
            }
            let burst_at = Instant::now();
            let long = repeated_prompt(&short, prompt_tokens);
            let newcomers: Vec<_> = (0..4)
                .map(|_| engine.submit(request(long.clone(), 1), tracing::Span::none()))
                .collect();
            let mut slowest_ttft = 0f64;
            for mut rx in newcomers {
                while let Some(ev) = rx.blocking_recv() {
                    match ev {
                        Event::Done { timings, .. } => {
                            slowest_ttft = slowest_ttft.max(timings.ttft_seconds);
                            break;
                        }
                        Event::Error(e) => panic!("generation failed: {e}"),
                        Event::Token { .. } => {}
                    }
                }
            }
            let mut longest_gap = 0f64;
            for handle in running {
                let stamps = handle.join().unwrap();
                for pair in stamps.windows(2).filter(|w| w[1] > burst_at) {
                    longest_gap = longest_gap.max((pair[1] - pair[0]).as_secs_f64());
                }
            }
            println!(
                "| {name} | {budget} | 4 × {prompt_tokens} tokens | {longest_gap:.2} | {slowest_ttft:.2} |"
            );
        }
    }
}

/// Decode at a given context length, per KV cache precision and attention path (candle's
/// matmuls per sequence, or the batched CPU kernel), relative to candle's on an f32 cache.
fn attention(models: &str, contexts: &[usize], streams: &[usize], tokens: usize) {
    println!(
        "| model | context | streams | KV cache | attention | decode tok/s | vs candle, f32 cache |"
    );
    println!("|---|---:|---:|---|---|---:|---:|");
    let variants = [
        (KvCacheDtype::F32, None),
        (KvCacheDtype::F32, Some(Isa::detect())),
        (KvCacheDtype::F16, None),
        (KvCacheDtype::F16, Some(Isa::detect())),
    ];
    for name in models.split(',') {
        for &context in contexts {
            for &n in streams {
                let mut base = None;
                for (kv, path) in variants {
                    let mut loaded = load_model(name, kv);
                    loaded.model = loaded.model.with_attention(path);
                    let engine = Engine::start(
                        Some(EngineModel::serve(loaded)),
                        Limits::new(tokens, 1024, 16),
                        Metrics::new(),
                        u64::MAX,
                    );
                    run(&engine, 1, 4); // warm-up
                    let prompt = repeated_prompt(&short_prompt(&engine), context);
                    let rate = decode_rate(&engine, &prompt, n, tokens);
                    let base = *base.get_or_insert(rate);
                    let kv: &str = kv.into();
                    let path = match path {
                        None => "candle".to_string(),
                        Some(isa) => format!("kernel ({isa:?})"),
                    };
                    println!(
                        "| {name} | {context} | {n} | {kv} | {path} | {rate:.1} | {:.2}x |",
                        rate / base
                    );
                }
            }
        }
    }
}

/// The first mode reuses the loaded model; the second loads it again (an engine owns its model).
fn load_again(slot: &Arc<std::sync::Mutex<Option<LoadedModel>>>, name: &str) -> LoadedModel {
    if let Some(m) = slot.lock().unwrap().take() {
        return m;
    }
    load_model(name, KvCacheDtype::default())
}

/// Loads the bench model `name` (see [`model_source`]) on `--device` with a `kv` cache.
fn load_model(name: &str, kv: KvCacheDtype) -> LoadedModel {
    let (source, quantization) = model_source(name);
    load(&LoadSpec {
        source,
        quantization,
        device: device(),
        served_name: None,
        hf_home: None,
        kv_cache: kv,
    })
    .unwrap()
}

//! `sluice profile`: measures one `sluice-server` (a running one at `--url`, or one it starts)
//! and writes the [`Profile`] the simulator replays: prefill time by prompt length, decode step
//! time by batch size, weights and KV bytes per token, the memory budget, admission and batch
//! limits, time from start to Ready, and all of it again per quantization (switched by the
//! server's hot swap, whose duration is measured too).
//!
//! Prefill is the server's own TTFT minus its queue time for one request alone with
//! `max_tokens: 1`; a decode step is the server's TPOT of `B` requests started together with
//! `ignore_eos`, so each step decodes all `B`. Each point is the median of `--repeats`.

pub mod args;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use reqwest::Url;
use serde::Deserialize;
use sluice_contract::admin::{self, Limits, ModelList, RuntimeSettings, SettingsReport};
use sluice_contract::metrics::{MEMORY_CAPACITY_MEGABYTES, MemoryType};
use sluice_contract::server::ServerArgs;
use sluice_contract::{Quantization, QuantizationFlag};
use sluice_sim::Profile;
use sluice_sim::profile::{Point, Variant};

pub use args::ProfileArgs;

use crate::bench::workload::RequestSpec;
use crate::demo::server::{self, LocalServer};

/// The parts of `/generate`'s answer a profile reads.
#[derive(Debug, Deserialize)]
struct Generated {
    prompt_tokens: usize,
    generated_tokens: usize,
    timings: Timings,
}

#[derive(Debug, Deserialize)]
struct Timings {
    queue_seconds: f64,
    ttft_seconds: f64,
    tpot_seconds: f64,
}

/// A server being measured.
struct Target {
    client: reqwest::Client,
    url: Url,
    admin: Url,
    key: Option<String>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    v[v.len() / 2]
}

impl Target {
    fn req(&self, method: reqwest::Method, base: &Url, path: &str) -> reqwest::RequestBuilder {
        let mut r = self
            .client
            .request(method, base.join(path).expect("path joins"))
            .timeout(Duration::from_secs(600));
        if let Some(k) = &self.key {
            r = r.bearer_auth(k);
        }
        r
    }

    async fn generate(&self, prompt: &str, max_tokens: u32) -> anyhow::Result<Generated> {
        let body = serde_json::json!({
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "ignore_eos": true,
        });
        let resp = self
            .req(reqwest::Method::POST, &self.url, "/generate")
            .json(&body)
            .send()
            .await
            .context("failed to send a profiling request")?;
        let status = resp.status();
        if !status.is_success() {
            bail!(
                "failed to profile: /generate answered {status}: {}",
                resp.text().await.unwrap_or_default()
            );
        }
        resp.json()
            .await
            .context("failed to read /generate's answer")
    }

    async fn card(&self) -> anyhow::Result<admin::ModelCard> {
        let list: ModelList = self
            .req(reqwest::Method::GET, &self.url, admin::MODELS_PATH)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
            .context("failed to read /v1/models")?;
        list.data
            .into_iter()
            .next()
            .context("failed to profile: /v1/models lists no model")
    }

    async fn limits(&self) -> anyhow::Result<Limits> {
        Ok(self
            .req(reqwest::Method::GET, &self.admin, admin::LIMITS_PATH)
            .send()
            .await?
            .error_for_status()
            .context("failed to read the admin limits (is --admin-url right?)")?
            .json()
            .await?)
    }

    async fn budget_bytes(&self) -> anyhow::Result<u64> {
        let text = self
            .req(reqwest::Method::GET, &self.url, "/metrics")
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .context("failed to parse /metrics")?;
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == MEMORY_CAPACITY_MEGABYTES
                    && s.labels.get("memory_type") == Some(MemoryType::Vram.as_str())
            })
            .and_then(|s| match s.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => {
                    Some((v * f64::from(1u32 << 20)) as u64)
                }
                _ => None,
            })
            .context("failed to profile: /metrics has no vram capacity")
    }

    /// Switches to `q` and returns how long the hot swap took.
    async fn switch(&self, q: Quantization, max_tokens: usize) -> anyhow::Result<f64> {
        let start = Instant::now();
        self.req(reqwest::Method::PUT, &self.admin, admin::SETTINGS_PATH)
            .json(&RuntimeSettings {
                max_tokens,
                quantization: q,
            })
            .send()
            .await?
            .error_for_status()
            .with_context(|| format!("failed to ask for quantization {q}"))?;
        loop {
            let r: SettingsReport = self
                .req(reqwest::Method::GET, &self.admin, admin::SETTINGS_PATH)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            if r.settled() {
                return Ok(start.elapsed().as_secs_f64());
            }
            if let Some(p) = r.pending.as_deref()
                && p.contains("refused")
            {
                bail!("failed to switch to {q}: {p}");
            }
            if start.elapsed() > Duration::from_secs(900) {
                bail!("failed to switch to {q}: not settled after 900 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A prompt of about `tokens` tokens, corrected once by what the server counted.
/// A prompt of about `tokens` tokens of the served model, `words_per_token` as calibrated.
fn prompt_of(rng: &mut ChaCha8Rng, tokens: u32, words_per_token: f64) -> String {
    let words = (f64::from(tokens) * words_per_token).round().max(1.0) as u32;
    RequestSpec::synthetic(rng, words, 1).prompt
}

async fn measure(
    t: &Target,
    args: &ProfileArgs,
    q: Quantization,
    context: usize,
    max_batch: usize,
    swap_seconds: f64,
) -> anyhow::Result<Variant> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let card = t.card().await?;
    // Prompt lengths are the model's tokens: calibrate words per token once (bench's probes).
    let words_per_token = crate::bench::calibrate::Probe {
        client: &t.client,
        base: &t.url,
        endpoint: crate::cli::Endpoint::Generate,
        model: None,
        api_key: t.key.as_deref(),
    }
    .words_per_token()
    .await
    .map_err(|e| anyhow::anyhow!("failed to calibrate prompts: {e}"))?;
    let mut prefill = Vec::new();
    for &len in &args.prompt_lengths {
        // Random words vary in tokens: keep a tenth of the context spare.
        let len = len.min((context * 9 / 10).saturating_sub(2) as u32).max(1);
        let prompt = prompt_of(&mut rng, len, words_per_token);
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        for _ in 0..args.repeats {
            let g = t.generate(&prompt, 1).await?;
            xs.push(g.prompt_tokens as f64);
            ys.push((g.timings.ttft_seconds - g.timings.queue_seconds).max(0.0));
        }
        let x = median(xs);
        if prefill.last().is_none_or(|p: &Point| x > p.x) {
            prefill.push(Point {
                x,
                seconds: median(ys),
            });
        }
        eprintln!(
            "  {q} prefill {x:.0} tokens: {:.4} s",
            prefill.last().map_or(0.0, |p| p.seconds)
        );
    }
    let mut decode = Vec::new();
    let decode_prompt = args
        .decode_prompt_tokens
        .min(context.saturating_sub(args.decode_tokens as usize + 2) as u32)
        .max(1);
    let short = prompt_of(&mut rng, decode_prompt, words_per_token);
    for &b in &args.batch_sizes {
        let b = (b as usize).clamp(1, max_batch);
        if decode.last().is_some_and(|p: &Point| p.x >= b as f64) {
            continue;
        }
        let mut ys = Vec::new();
        for _ in 0..args.repeats {
            let all =
                futures::future::join_all((0..b).map(|_| t.generate(&short, args.decode_tokens)))
                    .await;
            let mut tpots = Vec::new();
            for g in all {
                let g = g?;
                if g.generated_tokens > 1 {
                    tpots.push(g.timings.tpot_seconds);
                }
            }
            ys.push(tpots.iter().sum::<f64>() / tpots.len().max(1) as f64);
        }
        decode.push(Point {
            x: b as f64,
            seconds: median(ys),
        });
        eprintln!(
            "  {q} decode step at batch {b}: {:.4} s",
            decode.last().map_or(0.0, |p| p.seconds)
        );
    }
    Ok(Variant {
        quantization: q,
        prefill,
        decode_step: decode,
        weight_bytes: card.weight_bytes,
        kv_bytes_per_token: card.kv_bytes_per_token.max(1),
        swap_seconds,
    })
}

/// Runs `sluice profile`.
pub async fn run(args: &ProfileArgs) -> anyhow::Result<ExitCode> {
    let mut started = None;
    let mut start_seconds = args.start_seconds.unwrap_or(0.0);
    let (url, admin_url) = match &args.url {
        Some(u) => (
            u.clone(),
            args.admin_url.clone().unwrap_or_else(|| u.clone()),
        ),
        None => {
            let bin = server::locate(args.server_bin.as_deref())?;
            let port = server::free_port()?;
            let admin_port = server::free_port()?;
            let first = args.quantizations.first().copied();
            let settings = ServerArgs {
                model: args.model.clone(),
                host: "127.0.0.1".into(),
                port,
                admin_port: Some(admin_port),
                threads: args.threads,
                quantization: first.map_or(QuantizationFlag::Auto, QuantizationFlag::Level),
                max_tokens: args.decode_tokens.max(1) as usize,
                max_concurrent_requests: args.max_concurrent_requests,
                max_batch_size: args.max_batch_size,
                memory_budget_mb: args.memory_budget_mb,
                drain_delay: Duration::ZERO,
                ..ServerArgs::default()
            };
            eprintln!("starting {} ({})", bin.display(), args.model);
            let t0 = Instant::now();
            let s = LocalServer::start(&bin, &settings, Duration::from_secs(900)).await?;
            if args.start_seconds.is_none() {
                start_seconds = t0.elapsed().as_secs_f64();
            }
            let u = Url::parse(&s.url())?;
            let a = Url::parse(&format!("http://127.0.0.1:{admin_port}"))?;
            started = Some(s);
            (u, a)
        }
    };
    let t = Target {
        client: reqwest::Client::new(),
        url,
        admin: admin_url,
        key: args.api_key.clone(),
    };
    let result = profile(&t, args, start_seconds).await;
    if let Some(s) = started {
        s.stop().await;
    }
    let p = result?;
    let text = serde_json::to_string_pretty(&p)? + "\n";
    match &args.out {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("failed to write profile {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn profile(t: &Target, args: &ProfileArgs, start_seconds: f64) -> anyhow::Result<Profile> {
    let card = t.card().await?;
    let limits = t.limits().await?;
    let budget = t.budget_bytes().await?;
    let max_batch = limits.max_batch_size.unwrap_or(16).max(1);
    let cap = limits.max_tokens.unwrap_or(card.max_tokens);
    let current: Quantization = card.quantization.parse().unwrap_or(
        args.quantizations
            .first()
            .copied()
            .unwrap_or(Quantization::F32),
    );
    let levels = if args.quantizations.is_empty() {
        vec![current]
    } else {
        args.quantizations.clone()
    };
    let mut variants = Vec::new();
    for (i, &q) in levels.iter().enumerate() {
        let swap = if i == 0 && q == current {
            0.0
        } else {
            eprintln!("switching to {q}");
            t.switch(q, cap.max(args.decode_tokens as usize)).await?
        };
        variants.push(measure(t, args, q, card.context_length, max_batch, swap).await?);
    }
    // The first level's swap was not measured when it was already loaded: use the next one's.
    if variants.len() > 1 && variants[0].swap_seconds == 0.0 {
        variants[0].swap_seconds = variants[1].swap_seconds;
    }
    let p = Profile {
        name: args.name.clone().unwrap_or_else(|| card.id.clone()),
        source: format!(
            "sluice profile of {} ({}, {}), {} repeats per point",
            card.source, card.device, args.model, args.repeats
        ),
        start_seconds,
        max_concurrent_requests: limits.max_concurrent_requests.unwrap_or(64) as u32,
        max_batch_size: max_batch as u32,
        memory_budget_bytes: budget,
        context_length: card.context_length as u32,
        gpu: card.device.starts_with("cuda"),
        variants,
    };
    p.validate()?;
    Ok(p)
}

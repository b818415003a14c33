//! `sluice bench`: checks the target is reachable, generates load with one of the load models,
//! stops on the deadline or Ctrl-C, and turns the samples into a [`BenchReport`].

pub mod calibrate;
pub mod client;
pub mod driver;
pub mod output;
pub mod recorder;
pub mod resources;
pub mod sample;
pub mod stream;
pub mod workload;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use thiserror::Error;
use tokio::time::Instant;

use self::client::{Target, join};
use self::driver::{LoadPlan, RunContext, drive};
use self::recorder::Recorder;
use self::resources::ResourceUsage;
use crate::cli::BenchArgs;
use crate::report::{BenchReport, LoadDescription};
use crate::stats::Summary;
use crate::trace::{TraceError, TraceOptions, load_trace};
use sluice_slo::error_chain;

/// Run length when `--run-time` is not given (trace replay defaults to the whole trace).
pub const DEFAULT_RUN_TIME: Duration = Duration::from_secs(60);

#[derive(Debug, Error)]
pub enum BenchError {
    #[error(
        "failed to reach {url}: {reason} (is the server running? start one with `sluice-server --model builtin:tiny`)"
    )]
    Unreachable { url: String, reason: String },
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error("failed to build the HTTP client: {0}")]
    Client(String),
    #[error("no server to bench: give --url, or an InferenceService name")]
    NoTarget,
}

impl BenchError {
    /// Stable category, e.g. for scripts that parse `--json` errors.
    pub fn category(&self) -> &'static str {
        match self {
            BenchError::Unreachable { .. } => "unreachable",
            BenchError::Trace(_) => "trace",
            BenchError::Client(_) => "client",
            BenchError::NoTarget => "usage",
        }
    }
}

/// Runs a whole bench. `interactive` allows the progress bar (still only on a terminal).
pub async fn run(args: &BenchArgs, interactive: bool) -> Result<BenchReport, BenchError> {
    let (plan, load) = plan_load(args)?;
    // A named service was resolved to a URL before this point (lib.rs dispatch).
    let base = args.url.as_ref().ok_or(BenchError::NoTarget)?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .connect_timeout(args.timeout.min(Duration::from_secs(10)))
        .tcp_nodelay(true)
        .build()
        .map_err(|e| BenchError::Client(error_chain(&e)))?;
    let model = preflight(&client, base, args).await?;
    let mut plan = plan;
    if let LoadPlan::Trace {
        words_per_token, ..
    } = &mut plan
        && !args.no_prompt_calibration
    {
        let probe = calibrate::Probe {
            client: &client,
            base,
            endpoint: args.endpoint,
            model: model.as_deref(),
            api_key: args.api_key.as_deref(),
        };
        match probe.words_per_token().await {
            Ok(w) => {
                eprintln!(
                    "prompts calibrated: {:.2} tokens per word on this model",
                    1.0 / w
                );
                *words_per_token = w;
            }
            Err(e) => eprintln!(
                "warning: failed to calibrate prompts ({e}); writing one word per trace token"
            ),
        }
    }
    let target = Arc::new(Target::new(
        client.clone(),
        base,
        args.endpoint,
        model,
        args.api_key.clone(),
        workload::Sampling {
            temperature: args.temperature,
            ignore_eos: args.ignore_eos,
        },
        args.timeout,
    ));

    let usage = Arc::new(Mutex::new(ResourceUsage::default()));
    let metrics_url = args
        .metrics_url
        .clone()
        .unwrap_or_else(|| join(base, "/metrics"));
    let sampler = tokio::spawn(resources::sample_periodically(
        client.clone(),
        metrics_url.clone(),
        Duration::from_secs(1),
        usage.clone(),
    ));

    let recorder = Arc::new(Recorder::new());
    let stopping = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let run_time = load.run_time();
    let deadline = match &load {
        LoadDescription::Trace { .. } if args.run_time.is_none() => None,
        _ => Some(start + run_time),
    };
    let seed = args.seed.unwrap_or_else(rand::random);
    let ctx = RunContext {
        target,
        recorder: recorder.clone(),
        stopping: stopping.clone(),
        start,
        deadline,
        seed,
    };
    let progress = (interactive && !args.no_progress && std::io::stderr().is_terminal())
        .then(|| spawn_progress(recorder.clone(), run_time, start));

    let mut driver = tokio::spawn(drive(plan, ctx));
    let until_deadline = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    let mut finished = false;
    let mut interrupted = false;
    tokio::select! {
        _ = &mut driver => finished = true,
        _ = until_deadline => {}
        _ = tokio::signal::ctrl_c() => interrupted = true,
    }
    stopping.store(true, Ordering::Relaxed);
    if !finished && !interrupted {
        // Locust's --stop-timeout: let running requests finish for a while, then cancel them.
        if tokio::time::timeout(args.stop_timeout, &mut driver)
            .await
            .is_err()
        {
            driver.abort();
        }
    } else if interrupted {
        driver.abort();
    }
    let sealed = recorder.seal();
    let elapsed = start.elapsed();
    if let Some((bar, task)) = progress {
        task.abort();
        bar.finish_and_clear();
    }
    sampler.abort();
    // One last look: memory often peaks at the end of a run.
    resources::scrape_into(&client, &metrics_url, &usage).await;

    // Rates are per second of the run: the load phase, extended to the last completion when
    // requests were allowed to drain, never past the wall time actually spent.
    let last_end = sealed
        .samples
        .iter()
        .map(|s| s.start_s + s.latency.as_secs_f64())
        .fold(0.0, f64::max);
    let measured = match deadline {
        Some(_) if !interrupted => run_time.max(Duration::from_secs_f64(last_end)).min(elapsed),
        _ => elapsed,
    };
    let summary = Summary::from_samples(&sealed.samples, measured, sealed.cancelled);
    let mut error_examples = BTreeMap::new();
    for s in &sealed.samples {
        if let (Some(kind), Some(detail)) = (s.error, &s.error_detail) {
            error_examples
                .entry(kind.label())
                .or_insert_with(|| detail.clone());
        }
    }
    let resources = usage.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(BenchReport {
        date: chrono::Local::now().format("%Y-%m-%d").to_string(),
        url: base.to_string(),
        endpoint: args.endpoint,
        load,
        summary,
        resources,
        interrupted,
        error_examples,
        samples: sealed.samples,
    })
}

/// Chooses the load model from the flags and describes it for the report.
fn plan_load(args: &BenchArgs) -> Result<(LoadPlan, LoadDescription), BenchError> {
    if let Some(path) = &args.trace {
        let opts = TraceOptions {
            time_scale: args.time_scale,
            skip: args.trace_offset,
            limit: args.max_requests,
            max_prompt_tokens: args.max_prompt_tokens,
            max_tokens: args.max_tokens,
        };
        let requests = load_trace(path, &opts)?;
        let span = requests.last().map_or(Duration::ZERO, |r| r.at);
        let in_window = match args.run_time {
            Some(rt) => requests.iter().filter(|r| r.at < rt).count(),
            None => requests.len(),
        };
        let load = LoadDescription::Trace {
            file: path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            requests: in_window,
            time_scale: args.time_scale,
            run_time_s: args.run_time.map_or(span, |rt| rt.min(span)).as_secs_f64(),
        };
        let plan = LoadPlan::Trace {
            requests: Arc::new(requests),
            max_in_flight: args.max_in_flight,
            words_per_token: 1.0,
        };
        return Ok((plan, load));
    }
    let run_time = args.run_time.unwrap_or(DEFAULT_RUN_TIME);
    Ok(match args.rate {
        Some(rate) => (
            LoadPlan::Poisson {
                rate,
                prompt_tokens: args.prompt_tokens,
                max_tokens: args.max_tokens,
                max_in_flight: args.max_in_flight,
            },
            LoadDescription::Poisson {
                rate,
                run_time_s: run_time.as_secs_f64(),
            },
        ),
        None => (
            LoadPlan::Closed {
                users: args.users,
                spawn_rate: args.spawn_rate,
                wait: args.wait_time,
                prompt_tokens: args.prompt_tokens,
                max_tokens: args.max_tokens,
            },
            LoadDescription::Closed {
                users: args.users,
                spawn_rate: args.spawn_rate,
                run_time_s: run_time.as_secs_f64(),
            },
        ),
    })
}

/// Fails fast when nothing listens at the URL, and finds the model name for `/v1/*`.
async fn preflight(
    client: &reqwest::Client,
    base: &reqwest::Url,
    args: &BenchArgs,
) -> Result<Option<String>, BenchError> {
    let probe = if args.endpoint.is_openai() {
        "/v1/models"
    } else {
        "/health"
    };
    let url = join(base, probe);
    let mut req = client.get(url.clone()).timeout(Duration::from_secs(10));
    if let Some(key) = &args.api_key {
        req = req.bearer_auth(key);
    }
    // Any HTTP answer (even 404 from a server without /health) proves the server is there.
    let resp = req.send().await.map_err(|e| BenchError::Unreachable {
        url: base.to_string(),
        reason: error_chain(&e),
    })?;
    if !args.endpoint.is_openai() || args.model.is_some() {
        return Ok(args.model.clone());
    }
    let model = match resp.json::<serde_json::Value>().await {
        Ok(v) => v["data"][0]["id"].as_str().map(str::to_string),
        Err(_) => None,
    };
    if model.is_none() {
        eprintln!(
            "warning: could not read a model name from {url}; sending requests without `model` (set --model)"
        );
    }
    Ok(model)
}

fn spawn_progress(
    recorder: Arc<Recorder>,
    run_time: Duration,
    start: Instant,
) -> (ProgressBar, tokio::task::JoinHandle<()>) {
    let bar = ProgressBar::new(run_time.as_millis().max(1) as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let b = bar.clone();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            let p = recorder.progress();
            let secs = start.elapsed().as_secs_f64().max(1e-3);
            b.set_position(start.elapsed().as_millis() as u64);
            b.set_message(format!(
                "ok {} | failed {} | in flight {} | {:.1} req/s | {:.0} tok/s",
                p.ok,
                p.failed,
                p.in_flight,
                p.ok as f64 / secs,
                p.tokens as f64 / secs
            ));
        }
    });
    (bar, task)
}

//! `sluice demo`: the whole method on one machine. Starts a tiny-model `sluice-server`, runs a
//! gentle baseline and then an overload with `sluice bench`, reads the SLIs of each phase (from
//! the server's own `/metrics` through `sluice-slo`'s direct-scrape source, or from Prometheus),
//! and prints the baseline report, the SLI table, each phase's classification and the remedy the
//! operator would apply. Then it closes the loop ([`closed_loop`]): scenarios on a fleet of
//! local server processes under the operator's own control loop, which acts for real. Every
//! server is killed on exit, on error and on Ctrl-C/SIGTERM.

pub mod closed_loop;
pub mod fleet;
pub mod server;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sluice_contract::server::ServerArgs;
use sluice_contract::{AppliedSettings, BottleneckClass, Builtin, Mode, ModelRef, Quantization};
use sluice_slo::{
    Knobs, MetricsSource, PrometheusSource, ScrapeSource, Selector, Settings, Sli, SloSpec,
    SloTargets, Tuning, Window,
};

use self::server::LocalServer;
use crate::cli::{Cli, Command, DemoArgs};
use crate::report::{BenchReport, markdown::baseline_markdown};
use crate::{bench, render};

/// Admission and batch limits of the demo server: small, so an overload is cheap to create.
const MAX_CONCURRENT: usize = 8;
const MAX_BATCH: usize = 4;
const MAX_TOKENS: u32 = 64;
/// Time between SLI snapshots within a phase.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(5);

/// The demo's objectives: loose enough for the baseline on a slow 2-core machine, and the error
/// objective is what an overload that turns requests away violates.
pub fn demo_targets() -> SloTargets {
    SloTargets {
        ttft_p95_seconds: Some(1.0),
        tpot_seconds: Some(0.25),
        error_ratio: Some(0.01),
        ..SloTargets::default()
    }
}

/// What the operator would be allowed to do for the demo service.
pub fn demo_spec() -> SloSpec {
    SloSpec {
        mode: Mode::Auto,
        targets: demo_targets(),
        knobs: Knobs {
            min_replicas: 1,
            max_replicas: 4,
            quantization_ladder: vec![Quantization::F32, Quantization::Q8_0, Quantization::Q4_0],
            max_tokens: MAX_TOKENS,
            max_tokens_floor: 16,
        },
        tuning: Tuning::default(),
        thresholds: Default::default(),
        capacity: None,
    }
}

/// One phase's load and what was read during it.
struct Phase {
    report: BenchReport,
    /// SLI snapshots, oldest first; the last covers the end of the phase.
    slis: Vec<Sli>,
}

pub async fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let bin = server::locate(args.server_bin.as_deref())?;
    let port = match args.port {
        Some(p) => p,
        None => server::free_port()?,
    };
    eprintln!(
        "starting {} on 127.0.0.1:{port} (tiny model, admission {MAX_CONCURRENT}, batch {MAX_BATCH})",
        bin.display()
    );
    let settings = ServerArgs {
        model: ModelRef::Builtin(Builtin::Tiny),
        host: "127.0.0.1".into(),
        port,
        max_concurrent_requests: MAX_CONCURRENT,
        max_batch_size: MAX_BATCH,
        max_tokens: MAX_TOKENS as usize,
        // The demo stops its server itself; nobody routes to it.
        drain_delay: Duration::ZERO,
        ..ServerArgs::default()
    };
    let server = LocalServer::start(&bin, &settings, Duration::from_secs(120)).await?;
    let outcome = tokio::select! {
        r = phases(&server, args) => r,
        (name, code) = shutdown_signal() => {
            eprintln!("interrupted by {name}; stopping the demo server");
            Ok(ExitCode::from(code))
        }
    };
    server.stop().await;
    outcome
}

async fn phases(server: &LocalServer, args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let url = server.url();
    let baseline_args = bench_args(&url, 2, 2.0, args.baseline, "0s", 32, 32)?;
    eprintln!(
        "baseline: 2 users for {}",
        humantime::format_duration(args.baseline)
    );
    let baseline = run_phase(server, args, &baseline_args).await?;

    // Many closed-loop users against an admission limit of 8: requests queue and get 429s.
    // The think time keeps turned-away users from spinning on a 2-core machine.
    let overload_args = bench_args(&url, 32, 32.0, args.overload, "50ms..150ms", 32, 32)?;
    eprintln!(
        "overload: 32 users for {}",
        humantime::format_duration(args.overload)
    );
    let overload = run_phase(server, args, &overload_args).await?;

    let spec = demo_spec();
    let (b_sli, o_sli) = match (baseline.slis.last(), overload.slis.last()) {
        (Some(b), Some(o)) => (b, o),
        _ => anyhow::bail!("failed to read SLIs: no snapshot was taken"),
    };
    let b_hist = &baseline.slis[..baseline.slis.len() - 1];
    let o_hist = &overload.slis[..overload.slis.len() - 1];
    let b_class = sluice_slo::classify(b_sli, b_hist, &spec.targets, &spec.thresholds);
    let o_class = sluice_slo::classify(o_sli, o_hist, &spec.targets, &spec.thresholds);
    let settings = Settings {
        applied: AppliedSettings {
            replicas: 1,
            quantization: Quantization::F32,
            max_tokens: MAX_TOKENS,
        },
        ready_replicas: 1,
        rollout_complete: true,
    };
    let now = o_sli.at;
    let plan = sluice_slo::plan(&spec, &overload.slis, &settings, &[], now);

    println!("{}", baseline_markdown(&baseline.report));
    println!(
        "{}",
        baseline_markdown(&overload.report).replacen(
            crate::report::markdown::TITLE,
            "# Overload Load Test",
            1
        )
    );
    println!("## SLIs (source: {})\n", source_name(args));
    print!(
        "{}",
        render::sli_table(&[("baseline", b_sli), ("overload", o_sli)], &spec.targets)
    );
    println!("\n## Classification\n");
    print!("baseline: {}", render::classification(&b_class));
    print!("overload: {}", render::classification(&o_class));
    println!("\n## Remedy the operator would apply\n");
    print!("{}", render::remedy(&plan));

    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
        bench::output::write_report(&dir.join("baseline.md"), &baseline.report)?;
        crate::report::plot::write_plots(&dir.join("baseline-plots"), &baseline.report)?;
        crate::report::plot::write_plots(&dir.join("overload-plots"), &overload.report)?;
        eprintln!("wrote {}", dir.display());
    }

    let expected =
        b_class.class == BottleneckClass::Healthy && o_class.class == BottleneckClass::QueueBound;
    if !expected {
        eprintln!(
            "error: expected baseline Healthy and overload QueueBound, got {} and {}",
            b_class.class, o_class.class
        );
        return Ok(ExitCode::FAILURE);
    }
    closed(args).await
}

/// The closed-loop scenarios named by `--scenarios`.
async fn closed(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let all = closed_loop::scenarios();
    for n in &args.scenarios {
        if n != "none" && !all.iter().any(|s| s.name == n) {
            anyhow::bail!(
                "failed to run the demo: unknown scenario {n:?} (expected queue, memory, compute or none)"
            );
        }
    }
    let chosen: Vec<_> = all
        .iter()
        .filter(|s| args.scenarios.iter().any(|n| n == s.name))
        .collect();
    if chosen.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    println!("\n## Closing the loop: the operator's control loop on local server processes");
    let bin = server::locate(args.server_bin.as_deref())?;
    let mut ok = true;
    for sc in chosen {
        let out = closed_loop::run(&bin, sc).await?;
        if let Err(why) = closed_loop::check(&out) {
            eprintln!("error: scenario {}: {why}", out.name);
            ok = false;
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Bench flags for a phase, parsed like the command line so defaults stay in one place.
fn bench_args(
    url: &str,
    users: u32,
    spawn_rate: f64,
    run_time: Duration,
    wait: &str,
    prompt_tokens: u32,
    max_tokens: u32,
) -> anyhow::Result<crate::cli::BenchArgs> {
    let run_time = format!("{}ms", run_time.as_millis());
    let cli = Cli::try_parse_from([
        "sluice",
        "bench",
        "--url",
        url,
        "--users",
        &users.to_string(),
        "--spawn-rate",
        &spawn_rate.to_string(),
        "--run-time",
        &run_time,
        "--wait-time",
        wait,
        "--max-tokens",
        &max_tokens.to_string(),
        "--prompt-tokens",
        &prompt_tokens.to_string(),
        "--stop-timeout",
        "30s",
        "--timeout",
        "30s",
        "--seed",
        "1",
    ])
    .context("failed to build the bench arguments")?;
    match cli.command {
        Command::Bench(b) => Ok(*b),
        _ => unreachable!("parsed a bench command"),
    }
}

fn source_name(args: &DemoArgs) -> String {
    match &args.prometheus {
        Some(p) => format!("Prometheus {p}"),
        None => "direct scrape of the server's /metrics".into(),
    }
}

/// The SLI source for one phase; a fresh one per phase so no window spans two phases.
fn make_source(
    server: &LocalServer,
    args: &DemoArgs,
    window: Window,
) -> anyhow::Result<Arc<dyn MetricsSource>> {
    Ok(match &args.prometheus {
        Some(prom) => {
            let sel = Selector::new().eq("instance", format!("127.0.0.1:{}", server.port))?;
            Arc::new(PrometheusSource::new(
                prom.as_str(),
                &sel,
                None,
                window,
                0.95,
            )?)
        }
        None => Arc::new(ScrapeSource::new(
            vec![format!("{}/metrics", server.url())],
            window,
            0.95,
        )),
    })
}

pub(crate) fn unix_now() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

/// Runs the bench while taking an SLI snapshot every [`SNAPSHOT_EVERY`] and one at the end.
async fn run_phase(
    server: &LocalServer,
    args: &DemoArgs,
    bench_args: &crate::cli::BenchArgs,
) -> anyhow::Result<Phase> {
    let run_time = bench_args.run_time.unwrap_or(bench::DEFAULT_RUN_TIME);
    let window = Window::seconds(SNAPSHOT_EVERY.as_secs() * 2);
    let source = make_source(server, args, window)?;
    // The first read only primes the scrape history (its rates have no earlier scrape).
    let _ = source.read(unix_now()).await;
    let snapshots = {
        let source = source.clone();
        tokio::spawn(async move {
            let mut slis = Vec::new();
            let mut tick = tokio::time::interval(SNAPSHOT_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                slis.push(source.read(unix_now()).await);
                if slis.len() as u64 * SNAPSHOT_EVERY.as_secs() >= run_time.as_secs() {
                    break;
                }
            }
            slis
        })
    };
    let report = bench::run(bench_args, true).await?;
    let mut slis = snapshots.await.context("failed to collect SLI snapshots")?;
    if slis.is_empty() {
        slis.push(source.read(unix_now()).await);
    }
    if report.summary.succeeded == 0 {
        anyhow::bail!(
            "failed to run the phase: no request succeeded ({:?})",
            report.error_examples
        );
    }
    Ok(Phase { report, slis })
}

/// Resolves on Ctrl-C (and SIGTERM on Unix) with the signal's name and the conventional exit
/// status (128 + signal number).
async fn shutdown_signal() -> (&'static str, u8) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => ("Ctrl-C", 130),
                _ = term.recv() => ("SIGTERM", 143),
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                ("Ctrl-C", 130)
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        ("Ctrl-C", 130)
    }
}

//! `sluice`: load generator, baseline report, bottleneck analysis and local demo for LLM
//! inference services run by the Sluice operator. The binaries (`sluice`, `kubectl-sluice`)
//! only call [`main_entry`].

pub mod analyze;
pub mod bench;
pub mod cli;
pub mod cluster;
pub mod demo;
pub mod profile;
pub mod render;
pub mod report;
pub mod simulate;
pub mod stats;
pub mod trace;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// Parses arguments, runs the subcommand and maps every failure to a message and exit status
/// (2 for usage errors, from clap; 1 for runtime failures).
pub fn main_entry() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Bench(mut args) => {
            // Held for the whole run: dropping it closes the port-forward.
            let _forward = match &args.service {
                Some(name) => {
                    let (url, forward) =
                        cluster::bench_target(name, &args.kube, args.in_cluster).await?;
                    args.url = Some(url);
                    forward
                }
                None => None,
            };
            let report = bench::run(&args, true).await?;
            Ok(bench::output::emit(&report, &args)?)
        }
        Command::Status(args) => {
            cluster::run_status(&args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain(args) => {
            cluster::run_explain(&args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Analyze(args) => analyze::run(&args).await,
        Command::Demo(args) => demo::run(&args).await,
        Command::Simulate(args) => simulate::run(&args),
        Command::Profile(args) => profile::run(&args).await,
    }
}

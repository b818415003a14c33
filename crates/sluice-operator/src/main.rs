//! `sluice-operator` binary: parses flags and hands over to the library.

use clap::Parser;
use sluice_operator::cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", sluice_api::crd_yaml()?);
            Ok(())
        }
        Command::Dashboard => {
            print!("{}", sluice_operator::dashboard::json());
            Ok(())
        }
        Command::Rules(args) => {
            print!("{}", sluice_operator::rules::print(&args)?);
            Ok(())
        }
        Command::Run(args) => {
            let _telemetry = sluice_operator::run::init_tracing(args.log_json);
            sluice_operator::run::run(*args).await
        }
    }
}

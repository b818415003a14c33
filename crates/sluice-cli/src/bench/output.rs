//! Emits a finished bench: the table or JSON on stdout, the markdown report and plots on disk,
//! and the exit status that tells scripts whether the run was clean.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use thiserror::Error;

use crate::cli::BenchArgs;
use crate::report::plot::{PlotError, write_plots};
use crate::report::{BenchReport, markdown::baseline_markdown, table};

#[derive(Debug, Error)]
pub enum OutputError {
    #[error("failed to write report {path}: {source}")]
    Report {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Plot(#[from] PlotError),
    #[error("failed to serialize the summary: {0}")]
    Json(#[from] serde_json::Error),
}

/// Writes every requested output; returns the exit status.
pub fn emit(report: &BenchReport, args: &BenchArgs) -> Result<ExitCode, OutputError> {
    if args.json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", table::render(report));
    }
    if let Some(path) = &args.report {
        write_report(path, report)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(dir) = &args.plots {
        for p in write_plots(dir, report)? {
            eprintln!("wrote {}", p.display());
        }
    }
    Ok(exit_status(report, args.fail_on_error))
}

pub fn write_report(path: &Path, report: &BenchReport) -> Result<(), OutputError> {
    std::fs::write(path, baseline_markdown(report)).map_err(|source| OutputError::Report {
        path: path.to_path_buf(),
        source,
    })
}

/// 130 after Ctrl-C, 1 when nothing succeeded or (with `--fail-on-error`) anything failed.
pub fn exit_status(report: &BenchReport, fail_on_error: bool) -> ExitCode {
    let s = &report.summary;
    if report.interrupted {
        return ExitCode::from(130);
    }
    if s.succeeded == 0 {
        eprintln!(
            "error: no request succeeded ({} sent, {} failed)",
            s.requests, s.failed
        );
        return ExitCode::FAILURE;
    }
    if fail_on_error && s.failed > 0 {
        eprintln!(
            "error: {} of {} requests failed (--fail-on-error)",
            s.failed, s.requests
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

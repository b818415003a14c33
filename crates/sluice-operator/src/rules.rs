//! `sluice-operator rules`: the alerting rules the operator ships, printed for people who run
//! Prometheus without the Prometheus Operator (a rules file), for review and promtool, and for
//! the chart's copy of the operator's own alerts (`charts/sluice/files/operator-alerts.yaml`,
//! kept equal by a drift test).

use std::path::Path;

use sluice_api::InferenceService;
use sluice_slo::promql::alerts::{RuleGroup, operator_rules};
use thiserror::Error;

use crate::build::build_prometheus_rule;
use crate::validate::validate;

/// How the rules are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RulesFormat {
    /// A Prometheus rules file (`groups:`), as `rule_files` and promtool read it.
    RulesFile,
    /// A `monitoring.coreos.com/v1` PrometheusRule to `kubectl apply`.
    PrometheusRule,
}

#[derive(Debug, Error)]
pub enum RulesError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("failed to parse {path} as an InferenceService: {source}")]
    Parse {
        path: String,
        source: serde_yaml::Error,
    },
    #[error("failed to validate {path}: {source}")]
    Invalid {
        path: String,
        source: crate::error::ValidationError,
    },
    #[error("failed to render the rules as YAML: {0}")]
    Render(#[from] serde_yaml::Error),
}

/// What `sluice-operator rules` prints.
pub fn print(args: &crate::cli::RulesArgs) -> Result<String, RulesError> {
    match &args.file {
        Some(path) if !args.operator => service_rules(path, &args.namespace, args.format),
        _ => operator_rules_file(),
    }
}

/// The operator's own alerts as a rules file: the chart's `files/operator-alerts.yaml`.
pub fn operator_rules_file() -> Result<String, RulesError> {
    rules_file(&[operator_rules()])
}

fn rules_file(groups: &[RuleGroup]) -> Result<String, RulesError> {
    #[derive(serde::Serialize)]
    struct File<'a> {
        groups: &'a [RuleGroup],
    }
    Ok(serde_yaml::to_string(&File { groups })?)
}

/// The SLO alerts of the InferenceService in `path` (namespace `namespace` when the manifest
/// names none), exactly as the operator would create them.
pub fn service_rules(
    path: &Path,
    namespace: &str,
    format: RulesFormat,
) -> Result<String, RulesError> {
    let label = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
        path: label.clone(),
        source,
    })?;
    let mut isvc: InferenceService =
        serde_yaml::from_str(&text).map_err(|source| RulesError::Parse {
            path: label.clone(),
            source,
        })?;
    let meta = &mut isvc.metadata;
    meta.namespace.get_or_insert_with(|| namespace.to_string());
    // A manifest has no uid yet; it only feeds owner references, which are dropped below.
    meta.uid.get_or_insert_with(|| "manifest".to_string());
    let v = validate(&isvc).map_err(|source| RulesError::Invalid {
        path: label,
        source,
    })?;
    let mut rule = build_prometheus_rule(&v, &Default::default());
    rule.metadata.owner_references = None;
    match format {
        RulesFormat::PrometheusRule => Ok(serde_yaml::to_string(&rule)?),
        // The object holds the groups as JSON already; print them as a rules file.
        RulesFormat::RulesFile => Ok(serde_yaml::to_string(
            &serde_json::json!({ "groups": rule.data["spec"]["groups"] }),
        )?),
    }
}

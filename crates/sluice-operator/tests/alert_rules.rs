//! The alerting rules the operator ships: the chart's copy of the operator's own alerts equals
//! what the code generates, and Prometheus's own `promtool` accepts every rule and fires exactly
//! the expected alerts on synthetic series (live tier: promtool comes with Debian's prometheus).
//!
//! Regenerate the chart's copy with
//! `SLUICE_UPDATE_RULES=1 cargo test -p sluice-operator --test alert_rules`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use sluice_operator::rules::{RulesFormat, operator_rules_file, service_rules};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const CHART_RULES: &str = "charts/sluice/files/operator-alerts.yaml";

#[test]
fn chart_operator_alerts_match_the_generated_rules() {
    let path = repo_root().join(CHART_RULES);
    let generated = operator_rules_file().unwrap();
    if std::env::var_os("SLUICE_UPDATE_RULES").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("failed to read {}: {e}", path.display()));
    assert!(
        committed == generated,
        "{CHART_RULES} drifted from the rules in code; regenerate with \
         `SLUICE_UPDATE_RULES=1 cargo test -p sluice-operator --test alert_rules`"
    );
}

#[test]
fn a_manifest_prints_as_a_prometheus_rule_and_as_a_rules_file() {
    let fixture = repo_root().join("crates/sluice-operator/tests/fixtures/tiny-cpu.yaml");
    let rule: Value =
        serde_yaml::from_str(&service_rules(&fixture, "x", RulesFormat::PrometheusRule).unwrap())
            .unwrap();
    assert_eq!(rule["kind"], "PrometheusRule");
    assert_eq!(rule["metadata"]["namespace"], "demo");
    assert!(rule["metadata"].get("ownerReferences").is_none());
    let file: Value =
        serde_yaml::from_str(&service_rules(&fixture, "x", RulesFormat::RulesFile).unwrap())
            .unwrap();
    assert_eq!(file["groups"], rule["spec"]["groups"]);
    let err = service_rules(Path::new("/nonexistent.yaml"), "x", RulesFormat::RulesFile)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("failed to read /nonexistent.yaml"), "{err}");
}

/// Every rule of the groups in `files`, by alert name.
fn rules_by_alert(files: &[&Path]) -> Vec<Value> {
    files
        .iter()
        .flat_map(|f| {
            let v: Value = serde_yaml::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
            v["groups"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|g| g["rules"].as_array().unwrap().clone())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The alert promtool should see: the rule's labels plus `extra` (labels the expression keeps),
/// and its annotations with `{{ $labels.x }}` expanded.
fn expected(rules: &[Value], alert: &str, pick: &[(&str, &str)], extra: &[(&str, &str)]) -> Value {
    let rule = rules
        .iter()
        .find(|r| {
            r["alert"] == alert
                && pick
                    .iter()
                    .all(|(k, v)| r["labels"][*k].as_str() == Some(v))
        })
        .unwrap_or_else(|| panic!("no {alert} rule with {pick:?}"));
    let mut labels: BTreeMap<String, String> =
        serde_json::from_value(rule["labels"].clone()).unwrap();
    labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let annotations: BTreeMap<String, String> =
        serde_json::from_value::<BTreeMap<String, String>>(rule["annotations"].clone())
            .unwrap()
            .into_iter()
            .map(|(k, mut v)| {
                for (l, val) in &labels {
                    v = v.replace(&format!("{{{{ $labels.{l} }}}}"), val);
                }
                (k, v)
            })
            .collect();
    json!({ "exp_labels": labels, "exp_annotations": annotations })
}

const POD: &str = r#"namespace="demo",pod="tiny-6d4f9c8b7-x2k4q""#;

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("failed to run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
#[ignore = "live tier: needs promtool (Debian's prometheus package); scripts/test.sh runs it"]
fn promtool_accepts_the_rules_and_they_fire_exactly_when_the_budget_burns() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = repo_root().join("crates/sluice-operator/tests/fixtures/tiny-cpu.yaml");
    let service = dir.path().join("service.yaml");
    let operator = dir.path().join("operator.yaml");
    std::fs::write(
        &service,
        service_rules(&fixture, "demo", RulesFormat::RulesFile).unwrap(),
    )
    .unwrap();
    std::fs::write(&operator, operator_rules_file().unwrap()).unwrap();
    let check = run(Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&service)
        .arg(&operator));
    assert!(check.contains("SUCCESS: 10 rules found"), "{check}");
    assert!(check.contains("SUCCESS: 2 rules found"), "{check}");

    // tiny-cpu.yaml keeps the defaults: error ratio 0.001, TTFT P95 1 s, TPOT 50 ms, memory 0.85.
    let rules = rules_by_alert(&[&service, &operator]);
    let burn = |alert: &str, long: &str| expected(&rules, alert, &[("long_window", long)], &[]);
    let series = |name: &str, labels: &str, values: &str| json!({ "series": format!("{name}{{{POD}{labels}}}"), "values": values });
    let tests = json!({
        "rule_files": ["service.yaml", "operator.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                // 5 % errors burns a 0.1 % budget 50x: every window fires.
                "interval": "1m",
                "input_series": [
                    series("llm_requests_total", r#",status="success""#, "0+95x120"),
                    series("llm_requests_total", r#",status="error""#, "0+5x120"),
                ],
                "alert_rule_test": [{
                    "eval_time": "90m",
                    "alertname": "SluiceErrorBudgetBurn",
                    "exp_alerts": [burn("SluiceErrorBudgetBurn", "1h"), burn("SluiceErrorBudgetBurn", "6h"),
                                   burn("SluiceErrorBudgetBurn", "1d"), burn("SluiceErrorBudgetBurn", "3d")],
                }],
            },
            {
                // 0.4 % errors: 4x the budget, above the ticket burn rates (3x, 1x) only.
                "interval": "1m",
                "input_series": [
                    series("llm_requests_total", r#",status="success""#, "0+996x120"),
                    series("llm_requests_total", r#",status="timeout""#, "0+4x120"),
                ],
                "alert_rule_test": [{
                    "eval_time": "90m",
                    "alertname": "SluiceErrorBudgetBurn",
                    "exp_alerts": [burn("SluiceErrorBudgetBurn", "1d"), burn("SluiceErrorBudgetBurn", "3d")],
                }],
            },
            {
                // No errors and fast first tokens: nothing fires.
                "interval": "1m",
                "input_series": [
                    series("llm_requests_total", r#",status="success""#, "0+100x120"),
                    series("llm_ttft_seconds_bucket", r#",le="1""#, "0+100x120"),
                    series("llm_ttft_seconds_count", "", "0+100x120"),
                ],
                "alert_rule_test": [
                    {"eval_time": "90m", "alertname": "SluiceErrorBudgetBurn", "exp_alerts": []},
                    {"eval_time": "90m", "alertname": "SluiceTtftBudgetBurn", "exp_alerts": []},
                ],
            },
            {
                // 20 % of first tokens slower than 1 s: 4x the P95's 5 % budget.
                "interval": "1m",
                "input_series": [
                    series("llm_ttft_seconds_bucket", r#",le="1""#, "0+80x120"),
                    series("llm_ttft_seconds_count", "", "0+100x120"),
                ],
                "alert_rule_test": [{
                    "eval_time": "90m",
                    "alertname": "SluiceTtftBudgetBurn",
                    "exp_alerts": [burn("SluiceTtftBudgetBurn", "1d"), burn("SluiceTtftBudgetBurn", "3d")],
                }],
            },
            {
                // Mean TPOT 100 ms against 50 ms; one pod's VRAM at 95 % for 20 minutes.
                "interval": "1m",
                "input_series": [
                    series("llm_tpot_seconds_sum", "", "0+6x120"),
                    series("llm_tpot_seconds_count", "", "0+60x120"),
                    series("llm_memory_usage_megabytes", r#",memory_type="vram""#, "950x30"),
                    series("llm_memory_capacity_megabytes", r#",memory_type="vram""#, "1000x30"),
                    series("llm_memory_usage_megabytes", r#",memory_type="ram""#, "990x30"),
                    series("llm_memory_capacity_megabytes", r#",memory_type="ram""#, "1000x30"),
                ],
                "alert_rule_test": [
                    {"eval_time": "90m", "alertname": "SluiceTpotAboveObjective",
                     "exp_alerts": [expected(&rules, "SluiceTpotAboveObjective", &[], &[])]},
                    {"eval_time": "10m", "alertname": "SluiceMemoryAboveObjective", "exp_alerts": []},
                    {"eval_time": "20m", "alertname": "SluiceMemoryAboveObjective",
                     "exp_alerts": [expected(&rules, "SluiceMemoryAboveObjective", &[], &[("memory_type", "vram")])]},
                ],
            },
            {
                // The operator: no usable SLIs for 12 minutes, and a breach no knob can fix.
                "interval": "1m",
                "input_series": [
                    {"series": r#"sluice_operator_slo_state{namespace="demo",name="tiny",state="Unknown"}"#, "values": "1x30"},
                    {"series": r#"sluice_operator_slo_state{namespace="demo",name="ok",state="Unknown"}"#, "values": "0x30"},
                    {"series": r#"sluice_operator_slo_degraded{namespace="demo",name="tiny"}"#, "values": "0x5 1x25"},
                ],
                "alert_rule_test": [
                    {"eval_time": "5m", "alertname": "SluiceSlisUnavailable", "exp_alerts": []},
                    {"eval_time": "12m", "alertname": "SluiceSlisUnavailable",
                     "exp_alerts": [expected(&rules, "SluiceSlisUnavailable", &[], &[("namespace", "demo"), ("name", "tiny")])]},
                    {"eval_time": "15m", "alertname": "SluiceRemediationExhausted", "exp_alerts": []},
                    {"eval_time": "25m", "alertname": "SluiceRemediationExhausted",
                     "exp_alerts": [expected(&rules, "SluiceRemediationExhausted", &[], &[("namespace", "demo"), ("name", "tiny")])]},
                ],
            },
        ],
    });
    let test_file = dir.path().join("tests.yaml");
    std::fs::write(&test_file, serde_yaml::to_string(&tests).unwrap()).unwrap();
    let out = run(Command::new("promtool")
        .current_dir(dir.path())
        .arg("test")
        .arg("rules")
        .arg(&test_file));
    assert!(out.contains("SUCCESS"), "{out}");
}

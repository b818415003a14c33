//! `sluice simulate`: replays a trace or a synthetic pattern against a simulated fleet under
//! each compared policy (sluice, hpa, keda, static) and prints the comparison; optionally the
//! runs as JSON and replicas and TTFT P95 over time as one SVG.

pub mod args;
mod plot;

use std::process::ExitCode;

use anyhow::Context;
use sluice_contract::AppliedSettings;
use sluice_sim::{
    Arrival, Hpa, HpaMetric, Objectives, Policy, Profile, RunConfig, RunResult, ServiceKnobs,
    Sluice, Static, TokenMix, markdown, operator_spec, operator_window_seconds, workload,
};
use sluice_slo::CapacityModel;

pub use args::{HpaMetricName, PolicyName, SimulateArgs};

use crate::trace::{TraceOptions, load_trace};

/// Everything `sluice simulate` computed.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    /// Profile name.
    pub profile: String,
    /// Requests sent.
    pub requests: usize,
    /// Seconds simulated.
    pub duration_seconds: f64,
    /// Objectives judged.
    pub objectives: Objectives,
    /// The capacity model `sluice-model` ran with: what to declare as the InferenceService's
    /// `remediation.capacity` for the same sizing in the operator.
    pub capacity_model: CapacityModel,
    /// One run per policy.
    pub runs: Vec<RunResult>,
}

/// Reads the profile and workload and runs every policy.
pub fn compare(args: &SimulateArgs) -> anyhow::Result<Comparison> {
    let text = std::fs::read_to_string(&args.profile)
        .with_context(|| format!("failed to read profile {}", args.profile.display()))?;
    let profile = Profile::from_json(&text)?;
    let (arrivals, duration) = arrivals(args)?;
    let objectives = Objectives {
        ttft_p95_seconds: Some(args.ttft_p95.as_secs_f64()),
        tpot_seconds: Some(args.tpot.as_secs_f64()),
        error_ratio: Some(args.error_ratio),
    };
    let ladder = if args.quantization_ladder.is_empty() {
        profile.ladder()
    } else {
        args.quantization_ladder.clone()
    };
    let max_replicas = args.max_replicas.max(args.min_replicas.max(1));
    let knobs = ServiceKnobs {
        min_replicas: args.min_replicas.max(1),
        max_replicas,
        ladder: ladder.clone(),
        max_tokens: args.max_tokens.max(1),
        max_tokens_floor: args.max_tokens_floor.clamp(1, args.max_tokens.max(1)),
    };
    let window = args
        .window
        .map_or(operator_window_seconds(), |w| w.as_secs().max(1));
    let cfg = RunConfig {
        duration,
        interval: args.interval.as_secs_f64(),
        window: window as f64,
        report_window: 300.0,
        objectives,
        initial: AppliedSettings {
            replicas: args.replicas.clamp(knobs.min_replicas, max_replicas),
            quantization: ladder[0],
            max_tokens: knobs.max_tokens,
        },
    };
    let capacity = capacity_model(&profile, &arrivals, &knobs);
    let mut runs = Vec::new();
    for name in &args.policies {
        let mut policy: Box<dyn Policy> = match name {
            PolicyName::Sluice => Box::new(Sluice::new(operator_spec(&objectives, &knobs), window)),
            PolicyName::SluiceModel => {
                let mut spec = operator_spec(&objectives, &knobs);
                spec.capacity = Some(capacity);
                Box::new(Sluice::new(spec, window))
            }
            PolicyName::Hpa => Box::new(Hpa::new(
                match args.hpa_metric {
                    HpaMetricName::Concurrency => HpaMetric::Concurrency {
                        target: args.hpa_target,
                    },
                    HpaMetricName::Utilization => HpaMetric::Utilization {
                        target: args.hpa_target.min(1.0),
                    },
                },
                knobs.min_replicas,
                max_replicas,
                // metrics-server's resource window.
                60.0,
            )),
            PolicyName::Keda => Box::new(Hpa::new(
                HpaMetric::QueueLength {
                    target: args.keda_target,
                },
                knobs.min_replicas,
                max_replicas,
                60.0,
            )),
            PolicyName::Static => Box::new(Static),
        };
        runs.push(sluice_sim::run(&profile, &arrivals, policy.as_mut(), &cfg));
    }
    Ok(Comparison {
        profile: profile.name.clone(),
        requests: arrivals.len(),
        duration_seconds: duration,
        objectives,
        capacity_model: capacity,
        runs,
    })
}

/// The capacity model a user would declare from this profile: one replica's saturation rate at
/// the workload's mean prompt and output lengths, on the first rung and the spec's `max_tokens`.
fn capacity_model(profile: &Profile, arrivals: &[Arrival], knobs: &ServiceKnobs) -> CapacityModel {
    let n = arrivals.len().max(1) as f64;
    let prompt = arrivals
        .iter()
        .map(|a| f64::from(a.prompt_tokens))
        .sum::<f64>()
        / n;
    let output = arrivals
        .iter()
        .map(|a| f64::from(a.output_tokens))
        .sum::<f64>()
        / n;
    let c = profile.capacity(knobs.ladder[0], prompt, output, knobs.max_tokens);
    CapacityModel {
        requests_per_second_per_replica: c.requests_per_second,
    }
}

fn arrivals(args: &SimulateArgs) -> anyhow::Result<(Vec<Arrival>, f64)> {
    let base = if let Some(path) = &args.trace {
        let opts = TraceOptions {
            time_scale: 1.0,
            skip: args.skip,
            limit: args.limit,
            max_prompt_tokens: args.max_prompt_tokens,
            max_tokens: u32::MAX,
        };
        load_trace(path, &opts)?
            .into_iter()
            .map(|r| Arrival {
                at: r.at.as_secs_f64(),
                prompt_tokens: r.prompt_tokens,
                output_tokens: r.max_tokens,
            })
            .collect()
    } else if let Some(p) = &args.pattern {
        let d = args.duration.map_or(3600.0, |d| d.as_secs_f64());
        let mix = TokenMix {
            prompt_tokens: args.prompt_tokens.max(1),
            output_tokens: args.output_tokens.max(1),
            spread: 0.5,
        };
        // Time scaling applies to traces; a pattern is generated at its own clock.
        workload::synthetic(p, &mix, d / args.time_scale, args.seed)
    } else {
        anyhow::bail!("failed to build the workload: give --trace FILE or --pattern SHAPE");
    };
    let arrivals = workload::scale(&base, args.time_scale, args.rate_scale, args.seed);
    let span = arrivals.last().map_or(0.0, |a| a.at);
    let duration = args
        .duration
        .map_or(span.ceil().max(1.0), |d| d.as_secs_f64());
    Ok((arrivals, duration))
}

/// Runs `sluice simulate`: prints the table; exit 0.
pub fn run(args: &SimulateArgs) -> anyhow::Result<ExitCode> {
    let c = compare(args)?;
    let mut table = format!(
        "# Simulated fleet: profile {}, {} requests over {:.0} s\n\n",
        c.profile, c.requests, c.duration_seconds
    );
    table.push_str(&markdown(&c.runs, &c.objectives));
    table.push_str(&format!(
        "\nCapacity model (sluice-model, and what to declare for the operator): \
         remediation.capacity.requestsPerSecondPerReplica: {:.2}\n",
        c.capacity_model.requests_per_second_per_replica
    ));
    print!("{table}");
    if let Some(path) = &args.report {
        std::fs::write(path, &table)
            .with_context(|| format!("failed to write report {}", path.display()))?;
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&c)?;
        std::fs::write(path, text)
            .with_context(|| format!("failed to write JSON {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        let svg = plot::timeline_svg(&c.runs, c.objectives.ttft_p95_seconds, c.duration_seconds)?;
        std::fs::write(path, svg)
            .with_context(|| format!("failed to write plot {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

//! `sluice analyze`: the seed's analysis steps against a live service. Reads the SLIs from
//! Prometheus with `sluice-slo`'s source, compares them with the objectives, computes the seed's
//! correlations, breaks traced time down by operation (Jaeger), and asks `sluice-slo` for the
//! bottleneck class and the remedy — this command adds no rules of its own.

pub mod correlate;
pub mod jaeger;

use std::process::ExitCode;

use anyhow::Context;
use prometheus_http_query::Client;
use serde::Serialize;
use sluice_contract::{AppliedSettings, Mode};
use sluice_slo::{
    Classification, Knobs, MetricsSource, Plan, PrometheusSource, Selector, Settings, Sli, SloSpec,
    SloTargets, Tuning, Window,
};

use crate::cli::AnalyzeArgs;
use crate::render;

/// Everything `analyze` found, for `--json`.
#[derive(Debug, Serialize)]
struct Analysis {
    service: String,
    window_s: u64,
    sli: Sli,
    correlations: Vec<correlate::Correlation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    spans: Option<jaeger::Breakdown>,
    #[serde(skip_serializing_if = "Option::is_none")]
    spans_error: Option<String>,
    classification: Classification,
    plan: Plan,
}

fn selector(args: &AnalyzeArgs) -> anyhow::Result<Selector> {
    match &args.selector {
        Some(spec) => label_pairs(spec, "--selector"),
        None => Ok(Selector::deployment_pods(
            args.namespace.as_deref(),
            &args.service,
        )?),
    }
}

fn gpu_selector(args: &AnalyzeArgs) -> anyhow::Result<Option<Selector>> {
    args.gpu_selector
        .as_deref()
        .map(|spec| label_pairs(spec, "--gpu-selector"))
        .transpose()
}

/// `label=value[,label=value]` into an equality selector.
fn label_pairs(spec: &str, flag: &str) -> anyhow::Result<Selector> {
    let mut sel = Selector::new();
    for pair in spec.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = pair.split_once('=').with_context(|| {
            format!("invalid {flag} {spec:?}: expected label=value[,label=value]")
        })?;
        sel = sel
            .eq(k.trim(), v.trim().trim_matches('"'))
            .with_context(|| format!("invalid {flag} {spec:?}"))?;
    }
    if sel.matchers.is_empty() {
        anyhow::bail!("invalid {flag} {spec:?}: expected label=value[,label=value]");
    }
    Ok(sel)
}

pub async fn run(args: &AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let sel = selector(args)?;
    let gpu = gpu_selector(args)?;
    let window = Window::seconds(args.window.as_secs());
    let http = args
        .prometheus_connection
        .connection()
        .client_with_token(args.timeout)
        .context("failed to configure the Prometheus connection")?;
    let prom_url = args.prometheus.as_str().trim_end_matches('/').to_string();

    // Fail early and clearly when Prometheus is not there at all; the SLO source would report
    // every SLI as unknown instead, which hides a typo in the URL.
    let probe = crate::bench::client::join(&args.prometheus, "/-/ready");
    http.get(probe).send().await.map_err(|e| {
        anyhow::anyhow!(
            "failed to reach prometheus at {prom_url}: {}",
            sluice_slo::error_chain(&e)
        )
    })?;

    let source = PrometheusSource::with_http_client(
        http.clone(),
        &prom_url,
        &sel,
        gpu.as_ref(),
        window,
        0.95,
    )?;
    let now = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
    let sli = source.read(now).await;
    let client =
        Client::from(http.clone(), &prom_url).context("failed to build the prometheus client")?;
    let correlations =
        correlate::correlations(&client, &sel, gpu.as_ref(), window, args.window).await;
    let (spans, spans_error) = match &args.jaeger {
        Some(j) => {
            let service = args.jaeger_service.as_deref().unwrap_or(&args.service);
            // Its own client: Prometheus credentials are not Jaeger's to see.
            let client = args
                .jaeger_connection
                .connection()
                .client_with_token(args.timeout)
                .context("failed to build the jaeger client")?;
            match jaeger::fetch(&client, j, service, args.window, args.jaeger_limit).await {
                Ok(traces) => (Some(jaeger::breakdown(&traces)), None),
                Err(e) => (None, Some(e.to_string())),
            }
        }
        None => (None, None),
    };

    let spec = SloSpec {
        mode: Mode::Advise,
        targets: SloTargets {
            ttft_p95_seconds: Some(args.ttft_p95_ms / 1000.0),
            tpot_seconds: Some(args.tpot_ms / 1000.0),
            error_ratio: Some(args.error_rate),
            memory_ratio: args.memory_ratio,
        },
        knobs: Knobs {
            min_replicas: args.min_replicas,
            max_replicas: args.max_replicas,
            quantization_ladder: args.quantization_ladder.clone(),
            max_tokens: args.max_tokens,
            max_tokens_floor: args.max_tokens_floor,
        },
        tuning: Tuning {
            // One look is all analyze has: decide on this snapshot.
            trigger_snapshots: 1,
            ..Tuning::default()
        },
        thresholds: Default::default(),
        capacity: None,
    };
    spec.validate().context("invalid objectives or knobs")?;
    let classification = sluice_slo::classify(&sli, &[], &spec.targets, &spec.thresholds);
    let replicas = sli
        .reporting_pods
        .value()
        .map_or(args.min_replicas, |p| p.round().max(1.0) as u32);
    let settings = Settings {
        applied: AppliedSettings {
            replicas,
            quantization: args
                .quantization
                .or_else(|| args.quantization_ladder.first().copied())
                .unwrap_or_default(),
            max_tokens: args.max_tokens,
        },
        ready_replicas: replicas,
        rollout_complete: true,
    };
    let plan = sluice_slo::plan(&spec, std::slice::from_ref(&sli), &settings, &[], now);

    let analysis = Analysis {
        service: args.service.clone(),
        window_s: args.window.as_secs(),
        sli,
        correlations,
        spans,
        spans_error,
        classification,
        plan,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&analysis)?);
    } else {
        print!("{}", text(&analysis, &spec.targets, args.top_operations));
    }
    Ok(ExitCode::SUCCESS)
}

fn text(a: &Analysis, targets: &SloTargets, top: usize) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Analysis of {} over the last {}s\n",
        a.service, a.window_s
    );
    let _ = writeln!(out, "## Trace breakdown");
    match (&a.spans, &a.spans_error) {
        (Some(b), _) if !b.operations.is_empty() => {
            let _ = writeln!(
                out,
                "{} traces, {:.0} ms traced; slowest operations by own time:",
                b.traces, b.total_ms
            );
            for op in b.operations.iter().take(top) {
                let _ = writeln!(
                    out,
                    "- {}: {:.0}% of time ({} spans, mean {})",
                    op.operation,
                    op.share * 100.0,
                    op.spans,
                    crate::report::fmt_ms(op.mean_ms)
                );
            }
        }
        (Some(_), _) => out.push_str("no traces in the window\n"),
        (None, Some(e)) => {
            let _ = writeln!(out, "unavailable: {e}");
        }
        (None, None) => out.push_str("skipped (no --jaeger)\n"),
    }
    let _ = writeln!(out, "\n## SLIs against objectives");
    out.push_str(&render::sli_table(&[("value", &a.sli)], targets));
    let _ = writeln!(out, "\n## Correlations");
    for c in &a.correlations {
        match c.r {
            Some(r) => {
                let _ = writeln!(
                    out,
                    "- {} ({} vs {}): r = {r:.2} over {} points, {}",
                    c.name, c.y, c.x, c.points, c.reading
                );
            }
            None => {
                let _ = writeln!(out, "- {}: n/a ({})", c.name, c.reading);
            }
        }
    }
    let _ = writeln!(out, "\n## Bottleneck");
    out.push_str(&render::classification(&a.classification));
    let _ = writeln!(out, "\n## Recommended remedy");
    out.push_str(&render::remedy(&a.plan));
    out
}

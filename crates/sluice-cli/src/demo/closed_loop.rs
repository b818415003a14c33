//! The demo's closed loop: a fleet of local `sluice-server` processes under the operator's own
//! [`ControlLoop`], with load phases from `sluice bench` through the balancer. Every tick prints
//! one timeline line (settings, SLIs, class, what the loop did) and each scenario ends with what
//! happened: breach → action → objective met again, or why not.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use sluice_contract::server::{KvCacheDtype, ServerArgs};
use sluice_contract::{
    Action, AppliedSettings, BottleneckClass, Builtin, Mode, ModelRef, Quantization,
};
use sluice_slo::{ControlLoop, Knobs, SloSpec, SloTargets, TickReport, Tuning, Window};

use super::fleet::{Backends, LocalFleet, balancer};
use super::{bench_args, unix_now};
use crate::bench;

/// Seconds between two ticks of the demo's loop (the operator's default is 15 s).
const INTERVAL: Duration = Duration::from_secs(4);
/// SLI window of the demo's loop.
const WINDOW: u64 = 8;

/// One load phase.
#[derive(Debug, Clone)]
pub struct Load {
    /// Shown in the timeline.
    pub label: &'static str,
    /// Closed-loop users.
    pub users: u32,
    /// Length.
    pub duration: Duration,
    /// Think time between a user's requests.
    pub wait: &'static str,
    /// Prompt tokens per request.
    pub prompt_tokens: u32,
    /// Tokens asked for per request.
    pub max_tokens: u32,
}

/// A demo scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Short name (`--scenarios`).
    pub name: &'static str,
    /// One sentence of what it shows.
    pub about: &'static str,
    /// Server flags of every replica (ports are chosen per replica).
    pub server: ServerArgs,
    /// What the loop may do.
    pub spec: SloSpec,
    /// Knobs at the start.
    pub initial: AppliedSettings,
    /// Load, in order.
    pub loads: Vec<Load>,
}

/// Short cooldowns so a scenario plays out in about a minute; everything else is the
/// operator's planner with its defaults.
fn demo_tuning() -> Tuning {
    Tuning {
        trigger_snapshots: 2,
        scale_out_cooldown_seconds: 8,
        scale_in_cooldown_seconds: 60,
        quantization_cooldown_seconds: 20,
        max_tokens_cooldown_seconds: 12,
        reversal_cooldown_seconds: 60,
        settle_timeout_seconds: 60,
        step_back_after_windows: 100,
        record_repeat_seconds: 30,
        ..Tuning::default()
    }
}

fn server(max_concurrent: usize, max_batch: usize, budget_mb: Option<u64>) -> ServerArgs {
    ServerArgs {
        model: ModelRef::Builtin(Builtin::Tiny),
        host: "127.0.0.1".into(),
        // One thread each: two replicas on a 2-core machine are twice the compute.
        threads: Some(1),
        max_concurrent_requests: max_concurrent,
        max_batch_size: max_batch,
        memory_budget_mb: budget_mb,
        drain_delay: Duration::ZERO,
        drain_timeout: Duration::from_secs(10),
        ..ServerArgs::default()
    }
}

/// The demo's scenarios.
pub fn scenarios() -> Vec<Scenario> {
    let knobs = |max_replicas, ladder: Vec<Quantization>, max_tokens, floor| Knobs {
        min_replicas: 1,
        max_replicas,
        quantization_ladder: ladder,
        max_tokens,
        max_tokens_floor: floor,
    };
    let spec = |targets, knobs| SloSpec {
        mode: Mode::Auto,
        targets,
        knobs,
        tuning: demo_tuning(),
        thresholds: Default::default(),
        capacity: None,
    };
    let initial = |max_tokens| AppliedSettings {
        replicas: 1,
        quantization: Quantization::F32,
        max_tokens,
    };
    vec![
        Scenario {
            name: "queue",
            about: "an overload fills admission: the loop names it queue-bound and adds replicas",
            server: server(8, 4, None),
            spec: spec(
                SloTargets {
                    ttft_p95_seconds: Some(1.0),
                    tpot_seconds: Some(0.25),
                    error_ratio: Some(0.01),
                    ..SloTargets::default()
                },
                knobs(3, vec![Quantization::F32], 64, 64),
            ),
            initial: initial(64),
            loads: vec![
                Load {
                    label: "baseline",
                    users: 2,
                    duration: Duration::from_secs(12),
                    wait: "0s",
                    prompt_tokens: 32,
                    max_tokens: 32,
                },
                Load {
                    label: "overload",
                    users: 24,
                    duration: Duration::from_secs(48),
                    wait: "50ms..150ms",
                    prompt_tokens: 32,
                    max_tokens: 32,
                },
            ],
        },
        Scenario {
            name: "memory",
            about: "the f32 weights nearly fill a 14 MB budget: the loop names it memory-bound and \
                    fixes it with a lower precision (a hot swap), not replicas",
            // An f32 KV cache (4 KB a token on the tiny model) so that a few streams fill the
            // little room the weights leave; f16 would need twice the load for the same pressure.
            server: ServerArgs {
                kv_cache_dtype: KvCacheDtype::F32,
                ..server(16, 4, Some(14))
            },
            spec: spec(
                SloTargets {
                    ttft_p95_seconds: Some(2.0),
                    tpot_seconds: Some(0.25),
                    error_ratio: Some(0.05),
                    memory_ratio: 0.85,
                },
                knobs(3, vec![Quantization::F32, Quantization::Q8_0], 256, 32),
            ),
            initial: initial(256),
            loads: vec![Load {
                label: "steady",
                users: 4,
                duration: Duration::from_secs(36),
                wait: "0s",
                prompt_tokens: 64,
                max_tokens: 256,
            }],
        },
        Scenario {
            name: "compute",
            about: "TPOT objective below what one stream can do: no queue, one sequence per pod, \
                    so the loop refuses to scale",
            server: server(8, 4, None),
            spec: spec(
                SloTargets {
                    ttft_p95_seconds: Some(1.0),
                    tpot_seconds: Some(0.0001),
                    error_ratio: Some(0.01),
                    ..SloTargets::default()
                },
                knobs(3, vec![Quantization::F32], 32, 32),
            ),
            initial: initial(32),
            loads: vec![Load {
                label: "one user",
                users: 1,
                duration: Duration::from_secs(24),
                wait: "0s",
                prompt_tokens: 16,
                max_tokens: 32,
            }],
        },
    ]
}

/// What one scenario showed.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Scenario name.
    pub name: &'static str,
    /// The first breach: when and the class named.
    pub breach: Option<(f64, BottleneckClass)>,
    /// Changes made, with when.
    pub actions: Vec<(f64, Action)>,
    /// The class the loop named when it made its first change: what the scenario is judged
    /// on, since the first breach may be named differently while the pressure builds (a slow
    /// machine can queue before the memory fills).
    pub acted_on: Option<BottleneckClass>,
    /// When the objectives were met again after the first change.
    pub recovered_at: Option<f64>,
    /// The last hold's reason while in breach (why nothing more was done).
    pub last_hold: Option<String>,
}

fn line(t: f64, r: &TickReport) -> String {
    let s = &r.observed.settings;
    let sli = &r.observed.sli;
    let fmt = |v: Option<f64>, unit: &str, scale: f64| {
        v.map_or("–".to_string(), |v| format!("{:.3}{unit}", v * scale))
    };
    let mem = sli
        .memory_pressure()
        .map_or("–".into(), |(t, r)| format!("{t} {:.0}%", r * 100.0));
    let what = if r.plan.act {
        format!("→ {}", r.plan.action.describe())
    } else {
        "→ hold".to_string()
    };
    format!(
        "[{t:5.1}s] replicas {} ({} ready) {} maxTokens {} | TTFT P95 {} TPOT {} errors {} queue {} mem {} | {} ({}) {what}",
        s.applied.replicas,
        s.ready_replicas,
        s.applied.quantization,
        s.applied.max_tokens,
        fmt(sli.ttft_p95_seconds.value(), "s", 1.0),
        fmt(sli.tpot_seconds.value(), "s", 1.0),
        fmt(sli.error_ratio.value(), "%", 100.0),
        sli.queue_depth
            .value()
            .map_or("–".into(), |q| format!("{q:.0}")),
        mem,
        r.plan.classification.class,
        r.plan.classification.rule,
    )
}

fn violated(r: &TickReport) -> bool {
    r.plan
        .objectives
        .iter()
        .any(|o| o.state == sluice_contract::ObjectiveState::Violated)
}

/// Runs one scenario: starts its fleet, plays its loads while the loop ticks, stops the fleet.
pub async fn run(bin: &Path, sc: &Scenario) -> anyhow::Result<Outcome> {
    println!("\n### Scenario `{}`: {}\n", sc.name, sc.about);
    let backends = Backends::default();
    let addr = balancer(backends.clone()).await?;
    let window = Window::seconds(WINDOW);
    let mut fleet = LocalFleet::start(
        bin.to_path_buf(),
        sc.server.clone(),
        sc.initial,
        backends,
        window,
    )
    .await?;
    let result = drive(&mut fleet, sc, &format!("http://{addr}")).await;
    fleet.stop().await;
    let out = result?;
    match (&out.breach, out.actions.first(), out.recovered_at) {
        (None, _, _) => println!("\nno breach: the objectives held throughout"),
        (Some((t, class)), None, _) => println!(
            "\nbreach at {t:.0} s ({class}); the loop changed nothing: {}",
            out.last_hold.as_deref().unwrap_or("no reason recorded")
        ),
        (Some((t, class)), Some((ta, a)), Some(tr)) => println!(
            "\nbreach at {t:.0} s ({class}) → {} at {ta:.0} s → objectives met again at {tr:.0} s",
            a.describe()
        ),
        (Some((t, class)), Some((ta, a)), None) => println!(
            "\nbreach at {t:.0} s ({class}) → {} at {ta:.0} s → not met again before the load ended: {}",
            a.describe(),
            out.last_hold.as_deref().unwrap_or("no reason recorded")
        ),
    }
    Ok(out)
}

async fn drive(fleet: &mut LocalFleet, sc: &Scenario, url: &str) -> anyhow::Result<Outcome> {
    let mut lp = ControlLoop::new(sc.spec.clone(), WINDOW);
    let start = unix_now();
    fleet.prime(start).await;
    let mut out = Outcome {
        name: sc.name,
        breach: None,
        actions: Vec::new(),
        acted_on: None,
        recovered_at: None,
        last_hold: None,
    };
    for load in &sc.loads {
        println!(
            "--- {}: {} user(s) for {} s",
            load.label,
            load.users,
            load.duration.as_secs()
        );
        let args = bench_args(
            url,
            load.users,
            f64::from(load.users),
            load.duration,
            load.wait,
            load.prompt_tokens,
            load.max_tokens,
        )?;
        let bench = tokio::spawn(async move { bench::run(&args, false).await });
        let mut tick = tokio::time::interval(INTERVAL);
        tick.tick().await;
        while !bench.is_finished() {
            tokio::select! {
                _ = tick.tick() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
            }
            let now = unix_now();
            let t = now - start;
            let r = match lp.tick(fleet, now).await {
                Ok(r) => r,
                Err(e) => {
                    println!("[{t:5.1}s] failed to observe the fleet: {e}");
                    continue;
                }
            };
            println!("{}", line(t, &r));
            if let Some(e) = &r.apply_error {
                println!("         failed to apply: {e}");
            }
            let breach = violated(&r);
            if breach && out.breach.is_none() {
                out.breach = Some((t, r.plan.classification.class));
                println!(
                    "         breach detected: {}",
                    r.plan.classification.summary
                );
                for e in &r.plan.classification.evidence {
                    println!("           evidence: {e}");
                }
            }
            if r.plan.act {
                if out.actions.is_empty() {
                    out.acted_on = Some(r.plan.classification.class);
                }
                out.actions.push((t, r.plan.action.clone()));
                println!("         action: {}", r.plan.reason);
            } else if breach {
                out.last_hold = Some(r.plan.reason.clone());
            }
            if !breach && !out.actions.is_empty() && out.recovered_at.is_none() {
                out.recovered_at = Some(t);
                println!("         objectives met again");
            }
        }
        bench
            .await
            .context("failed to join the load")?
            .context("failed to run the load")?;
    }
    Ok(out)
}

/// Whether a scenario showed what it is for.
pub fn check(o: &Outcome) -> Result<(), String> {
    let scaled = o
        .actions
        .iter()
        .any(|(_, a)| matches!(a, Action::ScaleReplicas { from, to } if to > from));
    let class = o.acted_on.or(o.breach.map(|b| b.1));
    match o.name {
        "queue" if class != Some(BottleneckClass::QueueBound) || !scaled => {
            return Err(format!(
                "expected a queue-bound breach and a scale-out, got {class:?} and {:?}",
                o.actions
            ));
        }
        "memory" => {
            let fixed = o.actions.first().is_some_and(|(_, a)| {
                matches!(
                    a,
                    Action::SetQuantization { .. } | Action::SetMaxTokens { .. }
                )
            });
            if class != Some(BottleneckClass::MemoryBound) || scaled || !fixed {
                return Err(format!(
                    "expected a memory-bound breach fixed by quantization or maxTokens, got {class:?} and {:?}",
                    o.actions
                ));
            }
        }
        "compute" if class != Some(BottleneckClass::ComputeBound) || scaled => {
            return Err(format!(
                "expected a compute-bound breach and no scale-out, got {class:?} and {:?}",
                o.actions
            ));
        }
        _ => {}
    }
    Ok(())
}

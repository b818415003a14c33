//! The simulator checked against reality (data tier): one real tiny-model `sluice-server`
//! process is measured with `sluice profile`, then the same slice of the shared Azure trace is
//! replayed against it with `sluice bench` and against one simulated replica driven by the
//! measured profiles with `sluice simulate`. TTFT P95 and mean TPOT must agree within the
//! tolerances below.
//!
//! What makes the two comparable:
//! - the load is set from the profile, not from a constant: the slice's time scale offers
//!   [`UTILISATION`] of the profile's own capacity model (a prefill plus a share of the full
//!   batch's decode steps per request), on whatever machine and build the test runs;
//! - bench calibrates its prompts to the trace's token counts (the tiny model's BPE spends
//!   about 2.4 tokens per word), generates every row's tokens to the end (`--ignore-eos`), and
//!   reads TTFT and TPOT from the server's own timings (`--endpoint generate`), as the profile
//!   does;
//! - the server computes on one thread (`--threads 1`), so its matmuls have one core both
//!   while profiled alone and while replaying, and the other core serves HTTP and the load
//!   generator. With the default two threads the replay's prefills ran up to 2x slower than
//!   profiled, because only then did the client compete for the cores.
//!
//! The machine's speed drifts (a shared 2-core VM: ±25 % over a minute), and with a profile
//! taken only before the replay the check failed once when other work slowed the machine
//! during the replay. So the
//! server is profiled before *and after* the replay, the simulator runs with each profile, and
//! the real value is compared with the nearest simulated value between the two (itself when it
//! lies between them): a drift during the replay moves both sides together.
//!
//! Tolerances, and why. Measured over repeated runs on the 2-core CI machine class with one
//! profile: TTFT P95 simulated/real 0.43-1.29, TPOT 0.60-1.34.
//! - **TPOT within ±50 %.** A decode step is what the profile measures directly (the server's
//!   TPOT at each batch size, with prompts of the replay's length); the replay adds batch sizes
//!   between the measured points and prefills interleaved with decodes, which the simulator
//!   models step by step.
//! - **TTFT P95 within a factor of 2.5 (0.4x to 2.5x).** The 95th percentile of a queue moves a
//!   lot between two runs of the same real server; at 60 % utilisation it did (0.2 s to 0.96 s
//!   on one machine), so the test offers 40 %, where queueing is real but P95 is stable enough.
//!   A factor of 2.5 still tells apart the policies the simulator compares, whose TTFT P95
//!   differ by 10x and more (docs/benchmarks.md).
//!
//! Needs the shared trace (`sluice_testkit::azure_trace`) and `cargo build -p sluice-server`.

mod common;

use std::path::Path;
use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value;

/// Trace rows replayed (the first minute of the trace holds about 200).
const ROWS: usize = 400;
/// Prompts capped to this many tokens (the tiny model's context is small) …
const MAX_PROMPT_TOKENS: u32 = 96;
/// … and generations to this many, each generated to the end (`--ignore-eos`).
const MAX_TOKENS: u32 = 24;
/// The server's batch limit, as profiled and replayed.
const MAX_BATCH: u32 = 8;
/// Offered load as a share of the measured decode capacity.
const UTILISATION: f64 = 0.4;
const TPOT_TOLERANCE: f64 = 0.5;
const TTFT_FACTOR: f64 = 2.5;

fn sluice(args: &[&str]) -> String {
    let out = Command::cargo_bin("sluice")
        .unwrap()
        .args(args)
        .timeout(Duration::from_secs(900))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "sluice {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Seconds at `x` of a profile curve (`prefill` by prompt tokens, `decodeStep` by batch),
/// interpolated like the simulator does.
fn curve(variant: &Value, name: &str, x: f64) -> f64 {
    let points: Vec<(f64, f64)> = variant[name]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["x"].as_f64().unwrap(), p["seconds"].as_f64().unwrap()))
        .collect();
    let i = points
        .windows(2)
        .position(|w| x <= w[1].0)
        .unwrap_or(points.len() - 2);
    let ((x0, y0), (x1, y1)) = (points[i], points[i + 1]);
    y0 + (x - x0) / (x1 - x0) * (y1 - y0)
}

/// Mean prompt and output tokens of the slice after the caps, and its span in seconds.
fn slice_shape(trace: &Path) -> (f64, f64, f64) {
    let text = std::fs::read_to_string(trace).unwrap();
    let rows: Vec<(String, f64, f64)> = text
        .lines()
        .skip(1)
        .take(ROWS)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].to_string(),
                f[1].parse::<f64>()
                    .unwrap()
                    .min(f64::from(MAX_PROMPT_TOKENS)),
                f[2].parse::<f64>().unwrap().min(f64::from(MAX_TOKENS)),
            )
        })
        .collect();
    let seconds = |ts: &str| {
        let t = ts.split(' ').nth(1).unwrap();
        let p: Vec<f64> = t.split(':').map(|x| x.parse().unwrap()).collect();
        p[0] * 3600.0 + p[1] * 60.0 + p[2]
    };
    let span = seconds(&rows.last().unwrap().0) - seconds(&rows[0].0);
    let n = rows.len() as f64;
    (
        rows.iter().map(|r| r.1).sum::<f64>() / n,
        rows.iter().map(|r| r.2).sum::<f64>() / n,
        span,
    )
}

#[test]
#[ignore = "data tier: needs the shared Azure trace and real server processes; scripts/test.sh runs it"]
fn the_simulator_reproduces_a_real_server_on_a_trace_slice() {
    let trace = sluice_testkit::azure_trace().expect("the shared Azure trace");
    let trace_arg = trace.to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let batch = MAX_BATCH.to_string();
    // One compute thread: the engine's matmuls then run on one core whether it is profiled
    // alone or replays under load, and the other core is left to HTTP and the load generator
    // (which would otherwise steal from a multi-threaded prefill only during the replay).
    let server = common::Server::start(&[
        "--threads",
        "1",
        "--max-batch-size",
        &batch,
        "--max-concurrent-requests",
        "256",
        "--max-tokens",
        "64",
    ]);

    // 1. Measure the server as it runs.
    let profile_path = dir.path().join("profile-before.json");
    measure(&server.url(), &profile_path);
    let profile: Value =
        serde_json::from_str(&std::fs::read_to_string(&profile_path).unwrap()).unwrap();
    let variant = &profile["variants"][0];
    assert_eq!(profile["maxBatchSize"], MAX_BATCH, "{profile}");

    // 2. The load: a time scale that offers UTILISATION of the measured capacity (each request
    //    costs its prefill plus its share of the full batch's decode steps, as the profile's
    //    own performance model counts it).
    let (prompt, output, span) = slice_shape(&trace);
    let full = f64::from(MAX_BATCH);
    let per_request =
        curve(variant, "prefill", prompt) + output * curve(variant, "decodeStep", full) / full;
    let capacity = 1.0 / per_request;
    let offered = ROWS as f64 / span;
    let time_scale = (offered / (UTILISATION * capacity)).clamp(0.05, 20.0);
    let time_scale_arg = format!("{time_scale:.4}");
    // The simulated run lasts until the last request has had ample time to finish.
    let duration_arg = format!("{}s", (span * time_scale).ceil() as u64 + 300);
    eprintln!(
        "slice: {ROWS} rows over {span:.1} s, prompt {prompt:.0} / output {output:.1} tokens; \
         capacity {capacity:.2} req/s, time scale {time_scale:.3}"
    );
    let rows = ROWS.to_string();
    let prompt_cap = MAX_PROMPT_TOKENS.to_string();
    let output_cap = MAX_TOKENS.to_string();

    // 3. The real server.
    let bench = sluice(&[
        "bench",
        "--url",
        &server.url(),
        "--trace",
        &trace_arg,
        "--time-scale",
        &time_scale_arg,
        "--max-requests",
        &rows,
        "--max-prompt-tokens",
        &prompt_cap,
        "--max-tokens",
        &output_cap,
        "--ignore-eos",
        "--endpoint",
        "generate",
        "--timeout",
        "300s",
        "--stop-timeout",
        "300s",
        "--no-progress",
        "--json",
    ]);
    let real: Value = serde_json::from_str(&bench).expect("bench --json prints JSON");
    let summary = &real["summary"];
    assert_eq!(summary["failed"], 0, "{bench}");
    assert_eq!(summary["succeeded"], ROWS, "{bench}");
    let real_ttft = summary["ttft"]["p95_ms"].as_f64().unwrap() / 1000.0;
    let real_tpot = summary["tpot_avg_ms"].as_f64().unwrap() / 1000.0;

    // 4. Measure the server again, then simulate one static replica with each profile: the
    //    replay ran between the two, so the machine's speed during it is bracketed by theirs.
    let after_path = dir.path().join("profile-after.json");
    measure(&server.url(), &after_path);
    let args = SimArgs {
        trace: &trace_arg,
        time_scale: &time_scale_arg,
        duration: &duration_arg,
        dir: dir.path(),
    };
    let before = simulate(&args, &profile_path);
    let after = simulate(&args, &after_path);
    // The simulated value nearest the real one within the bracket.
    let nearest = |real: f64, a: f64, b: f64| real.clamp(a.min(b), a.max(b));
    let sim_ttft = nearest(real_ttft, before.0, after.0);
    let sim_tpot = nearest(real_tpot, before.1, after.1);
    eprintln!(
        "simulated with the profile before the replay: TTFT P95 {:.4} s, TPOT {:.2} ms; \
         after: {:.4} s, {:.2} ms",
        before.0,
        before.1 * 1e3,
        after.0,
        after.1 * 1e3
    );

    let report = format!(
        "TTFT P95 real {real_ttft:.4} s, nearest simulated {sim_ttft:.4} s (ratio {:.2}); \
         TPOT real {:.2} ms, nearest simulated {:.2} ms (ratio {:.2})",
        sim_ttft / real_ttft,
        real_tpot * 1e3,
        sim_tpot * 1e3,
        sim_tpot / real_tpot
    );
    eprintln!("{report}");
    assert!(
        (sim_tpot / real_tpot - 1.0).abs() <= TPOT_TOLERANCE,
        "TPOT outside ±{TPOT_TOLERANCE}: {report}"
    );
    let ratio = sim_ttft / real_ttft;
    assert!(
        (1.0 / TTFT_FACTOR..=TTFT_FACTOR).contains(&ratio),
        "TTFT P95 outside a factor of {TTFT_FACTOR}: {report}"
    );
}

/// `sluice profile` of the running server into `out`.
fn measure(url: &str, out: &Path) {
    sluice(&[
        "profile",
        "--url",
        url,
        "--prompt-lengths",
        "8,32,64,96",
        "--batch-sizes",
        "1,2,4,8",
        "--decode-tokens",
        "16",
        "--decode-prompt-tokens",
        "80",
        "--repeats",
        "5",
        "--start-seconds",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
}

/// What every simulated replay shares.
struct SimArgs<'a> {
    trace: &'a str,
    time_scale: &'a str,
    duration: &'a str,
    dir: &'a Path,
}

/// `sluice simulate` of one static replica with `profile`: (TTFT P95 s, mean TPOT s).
fn simulate(args: &SimArgs<'_>, profile: &Path) -> (f64, f64) {
    let rows = ROWS.to_string();
    let prompt_cap = MAX_PROMPT_TOKENS.to_string();
    let output_cap = MAX_TOKENS.to_string();
    let json = args
        .dir
        .join(profile.file_stem().unwrap())
        .with_extension("sim.json");
    sluice(&[
        "simulate",
        "--profile",
        profile.to_str().unwrap(),
        "--trace",
        args.trace,
        "--time-scale",
        args.time_scale,
        "--limit",
        &rows,
        "--duration",
        args.duration,
        "--max-prompt-tokens",
        &prompt_cap,
        "--max-tokens",
        &output_cap,
        "--max-tokens-floor",
        &output_cap,
        "--policies",
        "static",
        "--replicas",
        "1",
        "--max-replicas",
        "1",
        "--json",
        json.to_str().unwrap(),
    ]);
    let sim: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let run = &sim["runs"][0];
    assert_eq!(run["answered"], ROWS, "{run}");
    (
        run["ttftP95Seconds"].as_f64().unwrap(),
        run["tpotSeconds"].as_f64().unwrap(),
    )
}

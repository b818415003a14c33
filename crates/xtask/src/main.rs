//! `cargo xtask <task>`: the project's tasks in one place, with nothing to install (the alias
//! is in `.cargo/config.toml`). Each task is the exact command CI or a developer runs.

use std::process::{Command, ExitCode};

/// (name, what it does, the commands it runs in order).
const TASKS: &[(&str, &str, &[&[&str]])] = &[
    ("fmt", "format every crate", &[&["cargo", "fmt", "--all"]]),
    (
        "lint",
        "rustfmt check, clippy with warnings as errors, the pure engine built without I/O",
        &[
            &["cargo", "fmt", "--all", "--check"],
            &[
                "cargo",
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ],
            &[
                "cargo",
                "check",
                "-p",
                "sluice-slo",
                "--no-default-features",
                "--locked",
            ],
        ],
    ),
    (
        "test",
        "the pure, in-memory and local-process tiers (no installs needed)",
        &[&["cargo", "test", "--workspace", "--locked"]],
    ),
    // Cluster-tier tests are named `cluster_*` (CONTRIBUTING.md), so `--skip cluster` leaves
    // them to `e2e`: libtest filters by name, not by the ignore reason.
    (
        "test-live",
        "the live tier (a real Prometheus) and the data tier (the shared Azure trace)",
        &[&[
            "cargo",
            "test",
            "--workspace",
            "--locked",
            "--",
            "--ignored",
            "--skip",
            "cluster",
        ]],
    ),
    (
        "e2e",
        "the cluster tier: a real control plane per test binary (scripts/cluster.sh)",
        &[&[
            "cargo",
            "test",
            "-p",
            "sluice-operator",
            "--test",
            "cluster",
            "--test",
            "cluster_quiet",
            "--test",
            "cluster_helm",
            "--test",
            "cluster_faults",
            "--test",
            "cluster_knobs",
            "--test",
            "cluster_scale",
            "--",
            "--ignored",
        ]],
    ),
    (
        "generate",
        "regenerate the CRD YAML (crds/ and the chart's copy) from the Rust types",
        &[&["cargo", "test", "-p", "sluice-api", "--test", "crd_drift"]],
    ),
    (
        "bench",
        "the server's throughput and kernel benchmarks (docs/benchmarks.md)",
        &[
            &[
                "cargo",
                "bench",
                "-p",
                "sluice-server",
                "--bench",
                "qmatmul",
            ],
            &[
                "cargo",
                "bench",
                "-p",
                "sluice-server",
                "--bench",
                "throughput",
            ],
        ],
    ),
    (
        "ci",
        "everything CI runs, installs included (scripts/test.sh --install)",
        &[&["bash", "scripts/test.sh", "--install"]],
    ),
];

fn usage() -> String {
    let mut s = String::from("usage: cargo xtask <task>\n\ntasks:\n");
    for (name, what, _) in TASKS {
        s.push_str(&format!("  {name:<10} {what}\n"));
    }
    s
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [task] = args.as_slice() else {
        eprint!("{}", usage());
        return ExitCode::from(2);
    };
    let Some((name, _, commands)) = TASKS.iter().find(|(n, _, _)| n == task) else {
        eprint!("unknown task {task:?}\n\n{}", usage());
        return ExitCode::from(2);
    };
    for command in *commands {
        let mut cmd = Command::new(command[0]);
        cmd.args(&command[1..]);
        if *name == "generate" {
            cmd.env("SLUICE_UPDATE_CRDS", "1");
        }
        eprintln!("$ {}", command.join(" "));
        match cmd.status() {
            Ok(s) if s.success() => {}
            Ok(s) => {
                eprintln!("xtask {name}: `{}` failed: {s}", command.join(" "));
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("xtask {name}: failed to run `{}`: {e}", command[0]);
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

//! `sluice demo` end to end on the tiny model: baseline Healthy, overload QueueBound, server
//! gone afterwards. Needs `cargo build -p sluice-server` first.

mod common;

use assert_cmd::Command;

#[test]
fn demo_classifies_baseline_and_overload_and_cleans_up() {
    let server = common::server_bin();
    let port = common::free_port();
    let out = Command::cargo_bin("sluice")
        .unwrap()
        .args([
            "demo",
            "--baseline",
            "10s",
            "--overload",
            "10s",
            "--port",
            &port.to_string(),
            "--server-bin",
        ])
        .arg(&server)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("# Baseline Performance (Date: "),
        "{stdout}"
    );
    assert!(
        stdout.contains("- Users: 2\n- Spawn Rate: 2/s\n- Duration: 10s\n"),
        "{stdout}"
    );
    assert!(stdout.contains("baseline: Healthy (rule H"), "{stdout}");
    assert!(stdout.contains("overload: QueueBound (rule Q"), "{stdout}");
    assert!(
        stdout.contains("## Remedy the operator would apply\n\naction: "),
        "{stdout}"
    );
    // The demo server was stopped: nothing answers on its port any more.
    assert_eq!(common::http_get_status(port, "/health"), None);
}

//! Bad input gets a clear message and a non-zero exit, never a panic.

mod common;

use assert_cmd::Command;

fn sluice() -> Command {
    Command::cargo_bin("sluice").expect("sluice binary")
}

fn stderr_of(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!err.contains("panicked"), "panic: {err}");
    err
}

#[test]
fn unreachable_url_is_a_clear_error() {
    let port = common::free_port();
    let out = sluice()
        .args([
            "bench",
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "--run-time",
            "2s",
        ])
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("failed to reach http://127.0.0.1:"), "{err}");
    assert!(err.to_lowercase().contains("refused"), "{err}");
}

#[test]
fn invalid_durations_are_rejected() {
    for bad in ["0s", "five minutes", "-3m", ""] {
        let out = sluice()
            .args(["bench", "--url", "http://127.0.0.1:9", "--run-time", bad])
            .output()
            .unwrap();
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("invalid duration"), "{bad}: {err}");
    }
    let out = sluice()
        .args(["bench", "--url", "http://127.0.0.1:9", "--timeout", "0ms"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("greater than zero"));
}

#[test]
fn invalid_numbers_and_urls_are_rejected() {
    let cases: [&[&str]; 5] = [
        &["--url", "not a url"],
        &["--url", "ftp://127.0.0.1"],
        &["--url", "http://127.0.0.1:9", "--users", "0"],
        &["--url", "http://127.0.0.1:9", "--spawn-rate", "-1"],
        &["--url", "http://127.0.0.1:9", "--rate", "0"],
    ];
    for args in cases {
        let out = sluice().arg("bench").args(args).output().unwrap();
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("invalid"), "{args:?}: {err}");
    }
}

#[test]
fn malformed_trace_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.csv");
    std::fs::write(
        &path,
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,374,44\n2023-11-16 18:15:47,lots,1\n",
    )
    .unwrap();
    // The trace is read before anything is sent, so no server is needed.
    let out = sluice()
        .args(["bench", "--url", "http://127.0.0.1:9", "--trace"])
        .arg(&path)
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.csv line 3") && err.contains("ContextTokens"),
        "{err}"
    );

    let out = sluice()
        .args(["bench", "--url", "http://127.0.0.1:9", "--trace"])
        .arg(dir.path().join("missing.csv"))
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("failed to open trace") && err.contains("missing.csv"),
        "{err}"
    );
}

#[test]
fn rate_and_trace_are_exclusive() {
    let out = sluice()
        .args([
            "bench",
            "--url",
            "http://127.0.0.1:9",
            "--rate",
            "1",
            "--trace",
            "x.csv",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("cannot be used with"));
}

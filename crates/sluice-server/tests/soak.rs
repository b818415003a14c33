//! A bounded soak of the real binary: rounds of mixed load — normal and chat requests, streams
//! dropped after their first token, non-streaming requests abandoned mid-generation, bad input
//! and deliberate overload — after which memory and file descriptors must be back where they
//! were and no answer may have been a 5xx.
//!
//! CI runs 8 rounds (about 200 requests). A long soak, about ten minutes on two cores (400 rounds
//! took 65 s here):
//! `SLUICE_SOAK_ROUNDS=3600 cargo test -p sluice-server --test soak -- --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{client, metric, spawn};
use futures::StreamExt;
use serde_json::json;

/// Open file descriptors and resident memory (kB) of a process.
fn usage(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    (fds, rss)
}

/// One mixed round: returns the status of every answer that came back.
async fn round(url: &str, addr: &str, r: usize) -> Vec<u16> {
    let mut tasks = Vec::new();
    for i in 0..24 {
        let url = url.to_owned();
        let addr = addr.to_owned();
        tasks.push(tokio::spawn(async move {
            let c = client();
            match i % 6 {
                // Plain generation (some get 429: the admission limit is 8).
                0 | 1 => c
                    .post(format!("{url}/generate"))
                    .json(&json!({"prompt": format!("soak {r} {i}"), "max_tokens": 16,
                                  "temperature": 0.8, "stop": ["é", "\n\n"]}))
                    .send()
                    .await
                    .map(|resp| resp.status().as_u16())
                    .ok(),
                2 => c
                    .post(format!("{url}/v1/chat/completions"))
                    .json(&json!({"messages": [{"role": "user", "content": "hé"}], "max_tokens": 8}))
                    .send()
                    .await
                    .map(|resp| resp.status().as_u16())
                    .ok(),
                // A stream dropped after its first event.
                3 => {
                    let resp = c
                        .post(format!("{url}/generate/stream"))
                        .json(&json!({"prompt": "drop me", "max_tokens": 64, "ignore_eos": true}))
                        .send()
                        .await
                        .ok()?;
                    let status = resp.status().as_u16();
                    let mut body = resp.bytes_stream();
                    let _ = body.next().await;
                    Some(status)
                }
                // A non-streaming request abandoned before its answer.
                4 => {
                    let body = json!({"prompt": "abandon", "max_tokens": 64, "ignore_eos": true})
                        .to_string();
                    tokio::task::spawn_blocking(move || {
                        let mut s = TcpStream::connect(&addr).ok()?;
                        write!(
                            s,
                            "POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .ok()?;
                        std::thread::sleep(Duration::from_millis(20));
                        None::<u16>
                    })
                    .await
                    .ok()
                    .flatten()
                }
                // Bad input.
                _ => c
                    .post(format!("{url}/generate"))
                    .header("content-type", "application/json")
                    .body(format!("{{\"prompt\": {i}, \"top_p\": 1e-46"))
                    .send()
                    .await
                    .map(|resp| resp.status().as_u16())
                    .ok(),
            }
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        if let Some(s) = t.await.unwrap() {
            statuses.push(s);
        }
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_load_leaves_memory_and_descriptors_flat_and_never_answers_5xx() {
    let rounds: usize = std::env::var("SLUICE_SOAK_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let (proc, url) = spawn(
        &[
            "--max-concurrent-requests",
            "8",
            "--max-batch-size",
            "4",
            "--max-tokens",
            "64",
        ],
        &[],
    )
    .await;
    let pid = proc.0.id();
    let addr = url.trim_start_matches("http://").to_owned();
    let settle = || async {
        // Abandoned requests leave at the next token boundary; wait for the engine to be idle.
        let deadline = Instant::now() + Duration::from_secs(120);
        while metric(&url, "llm_in_flight_requests").await > 0.0 {
            assert!(Instant::now() < deadline, "requests stayed in flight");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    // Warm up every path once so allocator pools and lazily built state exist.
    round(&url, &addr, 0).await;
    settle().await;
    let (fds_before, rss_before) = usage(pid);

    let mut counts: BTreeMap<u16, usize> = BTreeMap::new();
    for r in 1..=rounds {
        for s in round(&url, &addr, r).await {
            *counts.entry(s).or_default() += 1;
        }
    }
    settle().await;
    let (fds_after, rss_after) = usage(pid);
    eprintln!(
        "soak: {rounds} rounds, statuses {counts:?}, fds {fds_before} -> {fds_after}, \
         RSS {rss_before} kB -> {rss_after} kB"
    );

    let server_errors: usize = counts.range(500..).map(|(_, n)| n).sum();
    assert_eq!(server_errors, 0, "5xx answers: {counts:?}");
    assert!(
        counts.get(&200).copied().unwrap_or(0) > rounds,
        "{counts:?}"
    );
    // Every connection a round opened is closed again (a few pooled keep-alives may linger).
    assert!(
        fds_after <= fds_before + 16,
        "file descriptors grew: {fds_before} -> {fds_after}"
    );
    // Generous: allocator caches move by megabytes; a leak per request would move by far more
    // over hundreds of requests of up to 64 tokens.
    assert!(
        rss_after <= rss_before + 96 * 1024,
        "resident memory grew: {rss_before} kB -> {rss_after} kB"
    );
    let health = client().get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        metric(&url, "llm_engine_failed_steps_total").await,
        0.0,
        "no engine step failed"
    );
}

//! Run-time settings on the real binary: the settings file is read at start and re-read while
//! running; a precision switch under steady load fails no request; a switch the memory budget
//! cannot hold is refused with the reason.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{client, spawn};
use serde_json::json;
use sluice_contract::Quantization;
use sluice_contract::admin::{RuntimeSettings, SETTINGS_PATH, SettingsReport};

/// Writes the file as a ConfigMap volume changes: a new file renamed into place.
fn write_settings(path: &Path, s: RuntimeSettings) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&s).unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn report(url: &str) -> SettingsReport {
    client()
        .get(format!("{url}{SETTINGS_PATH}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `PUT /admin/settings` with `body`; the status code.
async fn put_settings(url: &str, body: &serde_json::Value) -> u16 {
    client()
        .put(format!("{url}{SETTINGS_PATH}"))
        .json(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Polls the settings report until `done` holds (generous: a loaded CI machine).
async fn wait_for(url: &str, what: &str, done: impl Fn(&SettingsReport) -> bool) -> SettingsReport {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = report(url).await;
        if done(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Steady load: `workers` clients in a loop, each request a short completion; counts outcomes.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(url: &str, workers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let tasks = (0..workers)
            .map(|i| {
                let (url, stop, ok, failed) =
                    (url.to_owned(), stop.clone(), ok.clone(), failed.clone());
                tokio::spawn(async move {
                    let mut errors = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let r = client()
                            .post(format!("{url}/generate"))
                            .json(&json!({"prompt": format!("worker {i} says"), "max_tokens": 12}))
                            .send()
                            .await;
                        let error = match r {
                            Ok(r) if r.status() == 200 => {
                                ok.fetch_add(1, Ordering::SeqCst);
                                continue;
                            }
                            Ok(r) => {
                                format!("{}: {}", r.status(), r.text().await.unwrap_or_default())
                            }
                            Err(e) => e.to_string(),
                        };
                        failed.fetch_add(1, Ordering::SeqCst);
                        if errors.len() < 10 {
                            errors.push(error);
                        }
                    }
                    errors
                })
            })
            .collect();
        Self {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    /// Waits until `n` more requests succeeded than now.
    async fn wait_more(&self, n: u64) {
        let target = self.ok.load(Ordering::SeqCst) + n;
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.ok.load(Ordering::SeqCst) < target {
            assert!(
                Instant::now() < deadline,
                "load stalled at {} ok, {} failed",
                self.ok.load(Ordering::SeqCst),
                self.failed.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let mut errors = Vec::new();
        for t in self.tasks {
            errors.extend(t.await.unwrap());
        }
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
            errors,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precision_switches_under_steady_load_fail_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("settings.json");
    write_settings(
        &file,
        RuntimeSettings {
            max_tokens: 48,
            quantization: Quantization::F32,
        },
    );
    // The file wins over the flags at start.
    let (_proc, url) = spawn(
        &[
            "--settings-file",
            file.to_str().unwrap(),
            "--max-tokens",
            "999",
            "--quantization",
            "q4_0",
        ],
        &[],
    )
    .await;
    let r = report(&url).await;
    assert_eq!(
        r.running,
        RuntimeSettings {
            max_tokens: 48,
            quantization: Quantization::F32
        },
        "{r:?}"
    );

    let load = Load::start(&url, 4);
    // Capacity never dips: the pod's readiness, polled throughout, never fails.
    let probing = Arc::new(AtomicBool::new(true));
    let probe = {
        let (url, probing) = (url.clone(), probing.clone());
        tokio::spawn(async move {
            let (mut ok, mut not_ready) = (0u64, 0u64);
            while probing.load(Ordering::SeqCst) {
                match client().get(format!("{url}/ready")).send().await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    _ => not_ready += 1,
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            (ok, not_ready)
        })
    };
    load.wait_more(20).await;
    let started = Instant::now();
    // Through the file, as the operator's ConfigMap does it: a clamp and a new precision.
    let wanted = RuntimeSettings {
        max_tokens: 32,
        quantization: Quantization::Q8_0,
    };
    write_settings(&file, wanted);
    let r = wait_for(&url, "the q8_0 switch", |r| {
        r.settled() && r.wanted == wanted
    })
    .await;
    let first_switch = started.elapsed();
    assert_eq!(r.pending, None);
    load.wait_more(20).await;
    // Through the admin API, as the operator's push does it.
    let wanted = RuntimeSettings {
        max_tokens: 32,
        quantization: Quantization::Q4_0,
    };
    assert_eq!(put_settings(&url, &json!(wanted)).await, 200);
    wait_for(&url, "the q4_0 switch", |r| {
        r.settled() && r.wanted == wanted
    })
    .await;
    load.wait_more(20).await;
    let (ok, failed, errors) = load.stop().await;
    probing.store(false, Ordering::SeqCst);
    let (ready, not_ready) = probe.await.unwrap();
    eprintln!(
        "two precision switches under 4 concurrent clients: {ok} requests succeeded, {failed} \
         failed; /ready {ready} times 200, {not_ready} times not; the file-driven switch took \
         {first_switch:?}"
    );
    assert_eq!(failed, 0, "failed requests during the switches: {errors:?}");
    assert_eq!(not_ready, 0, "the server left readiness during a switch");
    assert!(ready > 0);
    assert!(ok >= 60);
    let text = common::metrics_text(&url).await;
    let info: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("llm_model_info{"))
        .collect();
    assert!(
        info.len() == 1 && info[0].contains(r#"quantization="q4_0""#),
        "the metrics name the new precision: {info:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_the_memory_budget_cannot_hold_is_refused_and_the_model_keeps_serving() {
    // About 10 MB of f32 weights: an f16 copy beside them would need 15 MB of a 12 MB budget.
    let (_proc, url) = spawn(&["--quantization", "f32", "--memory-budget-mb", "12"], &[]).await;
    let wanted = RuntimeSettings {
        max_tokens: 64,
        quantization: Quantization::F16,
    };
    assert_eq!(put_settings(&url, &json!(wanted)).await, 200);
    let r = wait_for(&url, "the refusal", |r| {
        r.pending
            .as_deref()
            .is_some_and(|p| p.starts_with("refused"))
    })
    .await;
    let why = r.pending.clone().unwrap();
    assert!(why.contains("memory budget is 12 MB"), "{why}");
    assert_eq!(r.running.quantization, Quantization::F32);
    assert_eq!(r.running.max_tokens, 64, "the cap applied anyway");
    let (code, _) = common::post(
        &format!("{url}/generate"),
        json!({"prompt": "still here", "max_tokens": 2}),
    )
    .await;
    assert_eq!(code, 200);
    // A malformed request is refused whole, changing nothing.
    let bad = json!({"maxTokens": 0, "quantization": "f32"});
    assert_eq!(put_settings(&url, &bad).await, 422);
    assert_eq!(report(&url).await.running.max_tokens, 64);
}

//! Regressions for input that used to take the engine down or answer 5xx: non-ASCII stop
//! sequences, an empty prompt on a tokenizer without BOS, extreme sampling values, and OpenAI
//! options the server cannot honour. Each runs beside healthy concurrent streams, which must
//! finish in full.

mod common;

use common::*;
use serde_json::{Value, json};
use sluice_server::model::ModelSource;
use sluice_server::model::tiny::{self, ExportOptions, TinyShape};

/// Starts `n` greedy streams of 48 tokens that must all finish in full, runs `hostile` while
/// they run, and returns the hostile request's answer.
async fn beside_healthy_streams(s: &Server, hostile: Value) -> (u16, Value) {
    let healthy: Vec<_> = (0..3)
        .map(|i| {
            let url = format!("{}/generate", s.url);
            tokio::spawn(async move {
                post(
                    &url,
                    json!({"prompt": format!("healthy stream {i}"), "max_tokens": 48,
                           "temperature": 0, "ignore_eos": true}),
                )
                .await
            })
        })
        .collect();
    let answer = post(&format!("{}/generate", s.url), hostile).await;
    for h in healthy {
        let (st, v) = h.await.unwrap();
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["generated_tokens"], 48, "a batch-mate was cut short: {v}");
    }
    answer
}

/// Regression: `"stop": ["é"]` panicked the engine thread; every request after it got 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn non_ascii_stop_sequences_never_crash_the_engine() {
    let s = start(Opts::default()).await;
    for stop in [
        json!(["é"]),
        json!("日本語"),
        json!(["😀", "\u{0301}", "a\u{0000}b"]),
    ] {
        let (st, v) = beside_healthy_streams(
            &s,
            json!({"prompt": "Once upon a time", "max_tokens": 32, "stop": stop,
                   "temperature": 0.9, "seed": 3}),
        )
        .await;
        assert_eq!(st, 200, "stop {stop}: {v}");
        assert_serving(&s, None).await;
    }
}

/// Regression: a `top_p` below ~1e-45 answered 500; so did a tiny temperature.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn extreme_sampling_values_answer_200() {
    let s = start(Opts::default()).await;
    for extreme in [
        json!({"top_p": 1e-46}),
        json!({"top_p": 5e-324}),
        json!({"temperature": 1e-300}),
        json!({"temperature": 1e-300, "top_p": 1e-300, "top_k": 1}),
        json!({"temperature": 100, "top_k": 1_000_000_000u64}),
    ] {
        let mut body = json!({"prompt": "The queue grows", "max_tokens": 8, "seed": 1});
        for (k, v) in extreme.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (st, v) = beside_healthy_streams(&s, body.clone()).await;
        assert_eq!(st, 200, "{body}: {v}");
    }
    assert_serving(&s, None).await;
}

/// Regression: an empty prompt on a tokenizer that adds no BOS reached the model as zero tokens
/// and failed every stream batched with it (3 of 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_empty_prompt_without_bos_fails_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ExportOptions {
        shape: TinyShape::Tiny,
        gguf: None,
        safetensors: true,
    };
    tiny::export(dir.path(), &opts).unwrap();
    let tok_path = dir.path().join("tokenizer.json");
    let mut tok: Value = serde_json::from_slice(&std::fs::read(&tok_path).unwrap()).unwrap();
    tok["post_processor"] = Value::Null;
    std::fs::write(&tok_path, serde_json::to_vec(&tok).unwrap()).unwrap();
    let s = start(Opts {
        source: ModelSource::Directory(dir.path().to_path_buf()),
        ..Opts::default()
    })
    .await;
    let (st, v) = beside_healthy_streams(&s, json!({"prompt": "", "max_tokens": 8})).await;
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("empty"),
        "{v}"
    );
    assert_serving(&s, None).await;
}

/// `best_of`, `logprobs` and `echo` were accepted and silently ignored; now they are refused
/// unless they ask for what the server does anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unsupported_openai_options_are_refused_not_ignored() {
    let s = start(Opts::default()).await;
    let completions = format!("{}/v1/completions", s.url);
    let chat = format!("{}/v1/chat/completions", s.url);
    let msgs = json!([{"role": "user", "content": "hi"}]);
    for (url, body, field) in [
        (
            &completions,
            json!({"prompt": "x", "best_of": 3}),
            "best_of",
        ),
        (
            &completions,
            json!({"prompt": "x", "logprobs": 2}),
            "logprobs",
        ),
        (&completions, json!({"prompt": "x", "echo": true}), "echo"),
        (
            &chat,
            json!({"messages": msgs, "logprobs": true}),
            "logprobs",
        ),
        (
            &chat,
            json!({"messages": msgs, "top_logprobs": 2}),
            "logprobs",
        ),
    ] {
        let (st, v) = post(url, body.clone()).await;
        assert_eq!(st, 422, "{body}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(field),
            "{v}"
        );
    }
    for (url, body) in [
        (
            &completions,
            json!({"prompt": "x", "max_tokens": 2, "best_of": 1, "logprobs": null, "echo": false}),
        ),
        (
            &chat,
            json!({"messages": msgs, "max_tokens": 2, "logprobs": false}),
        ),
    ] {
        let (st, v) = post(url, body.clone()).await;
        assert_eq!(st, 200, "{body}: {v}");
    }
}

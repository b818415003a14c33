//! Real HTTP against the real tiny model: determinism, streaming equals non-streaming, batching
//! correctness, metrics accounting, overload, disconnects, runtime limits and bad input.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use serde_json::{Value, json};

const PROMPTS: [&str; 8] = [
    "The operator reads the queue",
    "Once upon a time",
    "Latency, throughput",
    "A platform engineer installs the chart",
    "Numbers like 1, 2, 3",
    "When memory is tight",
    "Every request waits",
    "The quick brown fox",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn greedy_is_deterministic_and_stream_equals_non_stream() {
    let s = start(Opts::default()).await;
    let body = json!({"prompt": "The queue grows", "max_tokens": 24, "temperature": 0});
    let (st, a) = post(&format!("{}/generate", s.url), body.clone()).await;
    assert_eq!(st, 200, "{a}");
    let (_, b) = post(&format!("{}/generate", s.url), body.clone()).await;
    assert_eq!(a["text"], b["text"]);
    assert!(a["generated_tokens"].as_u64().unwrap() >= 1);
    assert!(["length", "eos", "stop"].contains(&a["finish_reason"].as_str().unwrap()));
    for key in [
        "queue_seconds",
        "ttft_seconds",
        "tpot_seconds",
        "total_seconds",
    ] {
        assert!(a["timings"][key].is_number(), "{key}");
    }
    let resp = client()
        .post(format!("{}/generate/stream", s.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let events = sse(resp).await;
    let (tokens, rest): (Vec<_>, Vec<_>) = events.iter().partition(|(e, _)| e == "token");
    assert_eq!(
        tokens.len() as u64,
        a["generated_tokens"].as_u64().unwrap(),
        "one event per token"
    );
    let streamed: String = tokens
        .iter()
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["token"]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(streamed, a["text"].as_str().unwrap());
    let done: Value = serde_json::from_str(&rest.last().unwrap().1).unwrap();
    assert_eq!(rest.last().unwrap().0, "done");
    assert_eq!(done["finish_reason"], a["finish_reason"]);
    assert_eq!(done["usage"]["completion_tokens"], a["generated_tokens"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_give_exactly_their_solo_outputs() {
    let s = start(Opts::default()).await;
    let url = format!("{}/generate", s.url);
    let mut solo = Vec::new();
    for p in PROMPTS {
        let (st, v) = post(
            &url,
            json!({"prompt": p, "max_tokens": 20, "temperature": 0}),
        )
        .await;
        assert_eq!(st, 200);
        solo.push(v["text"].as_str().unwrap().to_string());
    }
    let before_steps = metric(&s.url, "llm_batch_size_count").await;
    let before_seqs = metric(&s.url, "llm_batch_size_sum").await;
    let futs = PROMPTS.iter().map(|p| {
        post(
            &url,
            json!({"prompt": p, "max_tokens": 20, "temperature": 0}),
        )
    });
    let together = futures::future::join_all(futs).await;
    for ((st, v), want) in together.iter().zip(&solo) {
        assert_eq!(*st, 200);
        assert_eq!(v["text"].as_str().unwrap(), want);
    }
    let steps = metric(&s.url, "llm_batch_size_count").await - before_steps;
    let seqs = metric(&s.url, "llm_batch_size_sum").await - before_seqs;
    assert!(
        seqs / steps > 2.0,
        "requests were batched: {seqs} sequence-steps in {steps} steps"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_move_by_the_right_amounts() {
    let s = start(Opts::default()).await;
    let m = |k: &'static str| metric(&s.url, k);
    let (succ0, gen0, prompt0, ttft0, tpot0) = (
        m("llm_requests_total{status=\"success\"}").await,
        m("llm_generated_tokens_total").await,
        m("llm_prompt_tokens_total").await,
        m("llm_ttft_seconds_count").await,
        m("llm_tpot_seconds_count").await,
    );
    let (prefill0, decode0) = (
        m("llm_prefill_seconds_count").await,
        m("llm_decode_seconds_count").await,
    );
    let mut generated = 0.0;
    let mut prompt = 0.0;
    for n in [5, 9, 13] {
        let (st, v) = post(
            &format!("{}/generate", s.url),
            json!({"prompt": "count me", "max_tokens": n, "ignore_eos": true}),
        )
        .await;
        assert_eq!(st, 200);
        assert_eq!(v["generated_tokens"], n);
        generated += n as f64;
        prompt += v["prompt_tokens"].as_f64().unwrap();
    }
    assert_eq!(
        m("llm_requests_total{status=\"success\"}").await - succ0,
        3.0
    );
    assert_eq!(m("llm_generated_tokens_total").await - gen0, generated);
    assert_eq!(m("llm_prompt_tokens_total").await - prompt0, prompt);
    assert_eq!(m("llm_ttft_seconds_count").await - ttft0, 3.0);
    assert_eq!(m("llm_tpot_seconds_count").await - tpot0, generated - 3.0);
    // One prefill and one decode phase per successful request.
    assert_eq!(m("llm_prefill_seconds_count").await - prefill0, 3.0);
    assert_eq!(m("llm_decode_seconds_count").await - decode0, 3.0);
    let (st, _) = post(
        &format!("{}/generate", s.url),
        json!({"prompt": "x", "max_tokens": 0}),
    )
    .await;
    assert_eq!(st, 422);
    assert_eq!(m("llm_requests_total{status=\"invalid\"}").await, 1.0);
    assert_eq!(m("llm_errors_total{reason=\"invalid_request\"}").await, 1.0);
    assert!(m("llm_memory_usage_megabytes{memory_type=\"vram\"}").await > 5.0);
    assert!(m("llm_memory_capacity_megabytes{memory_type=\"vram\"}").await > 1000.0);
    assert!(m("llm_memory_usage_megabytes{memory_type=\"ram\"}").await > 1.0);
    assert_eq!(
        m("llm_model_info{device=\"cpu\",model=\"sluice-tiny\",quantization=\"f32\"}").await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_gets_429_with_retry_after_and_everything_else_succeeds() {
    let s = start(Opts {
        max_concurrent: 3,
        max_batch: 2,
        ..Opts::default()
    })
    .await;
    let url = format!("{}/generate", s.url);
    let futs = (0..24).map(|_| {
        let url = url.clone();
        async move {
            let resp = client()
                .post(&url)
                .json(&json!({"prompt": "busy", "max_tokens": 40, "ignore_eos": true}))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let retry = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            let body: Value = resp.json().await.unwrap();
            (status, retry, body)
        }
    });
    let results = futures::future::join_all(futs).await;
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let rejected: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    assert_eq!(
        ok + rejected.len(),
        results.len(),
        "only 200 and 429: {:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert!(
        ok >= 3 && !rejected.is_empty(),
        "ok={ok} rejected={}",
        rejected.len()
    );
    for (_, retry, body) in &rejected {
        assert!(retry.is_some_and(|r| (1..=60).contains(&r)));
        assert_eq!(body["error"]["type"], "overloaded");
    }
    assert_eq!(
        metric(&s.url, "llm_requests_total{status=\"rejected\"}").await,
        rejected.len() as f64
    );
    assert_eq!(metric(&s.url, "llm_in_flight_requests").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disconnected_stream_frees_its_slot() {
    let s = start(Opts {
        max_concurrent: 1,
        max_batch: 1,
        max_tokens: 100_000,
        ..Opts::default()
    })
    .await;
    let resp = client()
        .post(format!("{}/generate/stream", s.url))
        .json(&json!({"prompt": "long", "max_tokens": 1000, "ignore_eos": true}))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    assert!(body.next().await.unwrap().is_ok(), "the stream started");
    let (st, _) = post(
        &format!("{}/generate", s.url),
        json!({"prompt": "x", "max_tokens": 1}),
    )
    .await;
    assert_eq!(st, 429, "the only slot is taken");
    drop(body);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (st, _) = post(
            &format!("{}/generate", s.url),
            json!({"prompt": "x", "max_tokens": 1}),
        )
        .await;
        if st == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        metric(&s.url, "llm_requests_total{status=\"cancelled\"}").await,
        1.0
    );
    let generated = metric(&s.url, "llm_generated_tokens_total").await;
    assert!(generated < 1000.0, "generation stopped early: {generated}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runtime_limits_change_without_restart() {
    let s = start(Opts::default()).await;
    let limits = client()
        .get(format!("{}/admin/limits", s.url))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        limits,
        json!({"max_tokens": 64, "max_concurrent_requests": 64, "max_batch_size": 16})
    );
    let resp = client()
        .put(format!("{}/admin/limits", s.url))
        .json(&json!({"max_tokens": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(metric(&s.url, "llm_max_tokens_cap").await, 3.0);
    let (_, v) = post(
        &format!("{}/generate", s.url),
        json!({"prompt": "clamp me", "max_tokens": 50, "ignore_eos": true}),
    )
    .await;
    assert_eq!(v["generated_tokens"], 3);
    assert_eq!(v["finish_reason"], "length");
    let resp = client()
        .put(format!("{}/admin/limits", s.url))
        .json(&json!({"max_batch_size": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let resp = client()
        .put(format!("{}/admin/limits", s.url))
        .json(&json!({"bogus": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let models = client()
        .get(format!("{}/v1/models", s.url))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["max_tokens"], 3);
    assert_eq!(models["data"][0]["quantization"], "f32");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_the_right_status_and_the_server_keeps_serving() {
    let s = start(Opts {
        max_tokens: 64,
        ..Opts::default()
    })
    .await;
    let gen_url = format!("{}/generate", s.url);
    let raw = |body: Vec<u8>| {
        let url = gen_url.clone();
        async move {
            let r = client()
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let st = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            assert!(v["error"]["message"].is_string(), "JSON error body: {v}");
            st
        }
    };
    assert_eq!(raw(b"{\"prompt\": ".to_vec()).await, 400);
    assert_eq!(raw(b"[1,2,3]".to_vec()).await, 422);
    assert_eq!(raw(br#"{"prompt": 42}"#.to_vec()).await, 422);
    assert_eq!(
        raw(br#"{"prompt": "x", "max_tokens": "ten"}"#.to_vec()).await,
        422
    );
    assert_eq!(
        raw(br#"{"prompt": "x", "unknown_field": 1}"#.to_vec()).await,
        422
    );
    let huge = format!(r#"{{"prompt": "{}"}}"#, "a".repeat(3 * 1024 * 1024));
    assert_eq!(raw(huge.into_bytes()).await, 413);
    let long_prompt = "word ".repeat(3000);
    let (st, v) = post(&gen_url, json!({"prompt": long_prompt})).await;
    assert_eq!(st, 400);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("1024"),
        "{v}"
    );
    for body in [
        json!({"prompt": "x", "max_tokens": 0}),
        json!({"prompt": "x", "max_tokens": -1}),
        json!({"prompt": "x", "temperature": -0.5}),
        json!({"prompt": "x", "top_p": 0}),
        json!({"prompt": "x", "top_p": 1.2}),
        json!({"prompt": "x", "top_k": 0}),
    ] {
        let (st, v) = post(&gen_url, body.clone()).await;
        assert_eq!(st, 422, "{body} -> {v}");
    }
    let (st, v) = post(
        &format!("{}/v1/completions", s.url),
        json!({"model": "gpt-4", "prompt": "x"}),
    )
    .await;
    assert_eq!(st, 404, "{v}");
    let (st, _) = post(
        &format!("{}/v1/chat/completions", s.url),
        json!({"model": "sluice-tiny", "messages": []}),
    )
    .await;
    assert_eq!(st, 422);
    let (st, _) = post(&format!("{}/no/such/route", s.url), json!({})).await;
    assert_eq!(st, 404);
    let (st, _) = post(&gen_url, json!({"prompt": "still alive", "max_tokens": 2})).await;
    assert_eq!(st, 200);
    assert_eq!(
        client()
            .get(format!("{}/health", s.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// Regression (hardening): inference and admin shared one key, so any inference client could
/// raise the concurrency cap or unload the model.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_admin_key_keeps_inference_keys_out_of_the_admin_api() {
    let s = start(Opts {
        api_key: Some("inference".into()),
        admin_key: Some("admin".into()),
        ..Opts::default()
    })
    .await;
    let limits = format!("{}{}", s.url, sluice_contract::admin::LIMITS_PATH);
    let put = |key: &'static str| {
        client()
            .put(&limits)
            .bearer_auth(key)
            .json(&sluice_contract::admin::Limits {
                max_concurrent_requests: Some(1000),
                ..Default::default()
            })
            .send()
    };
    assert_eq!(put("inference").await.unwrap().status(), 401);
    let unload = client()
        .post(format!(
            "{}{}",
            s.url,
            sluice_contract::admin::MODEL_UNLOAD_PATH
        ))
        .bearer_auth("inference")
        .send()
        .await
        .unwrap();
    assert_eq!(unload.status(), 401);
    assert_eq!(put("admin").await.unwrap().status(), 200);
    let body = json!({"prompt": "x", "max_tokens": 2});
    let generate = |key: &'static str| {
        client()
            .post(format!("{}/generate", s.url))
            .bearer_auth(key)
            .json(&body)
            .send()
    };
    // The admin key is not an inference key either: each credential opens one API.
    assert_eq!(generate("admin").await.unwrap().status(), 401);
    assert_eq!(generate("inference").await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_key_protects_everything_but_probes_and_metrics() {
    let s = start(Opts {
        api_key: Some("s3cret".into()),
        ..Opts::default()
    })
    .await;
    let body = json!({"prompt": "x", "max_tokens": 2});
    let r = client()
        .post(format!("{}/generate", s.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .post(format!("{}/generate", s.url))
        .bearer_auth("wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .post(format!("{}/generate", s.url))
        .bearer_auth("s3cret")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .put(format!("{}/admin/limits", s.url))
        .json(&json!({"max_tokens": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    for path in ["/health", "/ready", "/metrics"] {
        assert_eq!(
            client()
                .get(format!("{}{path}", s.url))
                .send()
                .await
                .unwrap()
                .status(),
            200,
            "{path}"
        );
    }
    assert_eq!(
        metric(&s.url, "llm_requests_total{status=\"invalid\"}").await,
        3.0
    );
    assert_eq!(
        metric(&s.url, "llm_errors_total{reason=\"unauthorized\"}").await,
        3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openai_completions_and_chat_stream_and_non_stream_agree() {
    let s = start(Opts::default()).await;
    let (st, c) = post(
        &format!("{}/v1/completions", s.url),
        json!({"model": "sluice-tiny", "prompt": "Hello", "max_tokens": 12, "temperature": 0}),
    )
    .await;
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["object"], "text_completion");
    assert_eq!(
        c["usage"]["completion_tokens"].as_u64().unwrap()
            + c["usage"]["prompt_tokens"].as_u64().unwrap(),
        c["usage"]["total_tokens"].as_u64().unwrap()
    );
    let resp = client().post(format!("{}/v1/completions", s.url)).json(&json!({"prompt": "Hello", "max_tokens": 12, "temperature": 0, "stream": true, "stream_options": {"include_usage": true}})).send().await.unwrap();
    let events = sse(resp).await;
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, c["choices"][0]["text"].as_str().unwrap());
    assert_eq!(chunks.last().unwrap()["usage"], c["usage"]);

    let chat = json!({"model": "sluice-tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10, "temperature": 0});
    let (st, c) = post(&format!("{}/v1/chat/completions", s.url), chat.clone()).await;
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["choices"][0]["message"]["role"], "assistant");
    let mut stream_req = chat.clone();
    stream_req["stream"] = json!(true);
    let events = sse(client()
        .post(format!("{}/v1/chat/completions", s.url))
        .json(&stream_req)
        .send()
        .await
        .unwrap())
    .await;
    let chunks: Vec<Value> = events
        .iter()
        .filter(|(_, d)| d != "[DONE]")
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text,
        c["choices"][0]["message"]["content"].as_str().unwrap()
    );
    assert!(chunks.last().unwrap()["choices"][0]["finish_reason"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn models_load_and_unload_at_run_time() {
    let s = start(Opts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let opts = sluice_server::model::tiny::ExportOptions {
        shape: sluice_server::model::tiny::TinyShape::Tiny,
        gguf: Some(sluice_server::model::quant::Quantization::Q8_0),
        safetensors: false,
    };
    sluice_server::model::tiny::export(dir.path(), &opts).unwrap();
    let gguf = dir.path().join("model.gguf");
    let (st, v) = post(
        &format!("{}/model/load", s.url),
        json!({"model": "/no/such/model.gguf"}),
    )
    .await;
    assert_eq!(st, 422, "{v}");
    let (st, _) = post(
        &format!("{}/generate", s.url),
        json!({"prompt": "still the old model", "max_tokens": 2}),
    )
    .await;
    assert_eq!(st, 200);
    let (st, v) = post(
        &format!("{}/model/load", s.url),
        json!({"model": gguf.to_str().unwrap(), "served_model_name": "tiny-q8"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["quantization"], "q8_0");
    let models = client()
        .get(format!("{}/v1/models", s.url))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "tiny-q8");
    assert_eq!(
        metric(
            &s.url,
            "llm_model_info{device=\"cpu\",model=\"tiny-q8\",quantization=\"q8_0\"}"
        )
        .await,
        1.0
    );
    let (st, v) = post(
        &format!("{}/v1/completions", s.url),
        json!({"model": "tiny-q8", "prompt": "hi", "max_tokens": 3}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, _) = post(&format!("{}/model/unload", s.url), json!({})).await;
    assert_eq!(st, 200);
    assert_eq!(
        client()
            .get(format!("{}/ready", s.url))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(
        client()
            .get(format!("{}/health", s.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let (st, _) = post(
        &format!("{}/generate", s.url),
        json!({"prompt": "x", "max_tokens": 2}),
    )
    .await;
    assert_eq!(st, 503);
    let (st, _) = post(
        &format!("{}/model/load", s.url),
        json!({"model": "builtin:tiny", "quantization": "q4_0"}),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        client()
            .get(format!("{}/ready", s.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let (st, _) = post(
        &format!("{}/generate", s.url),
        json!({"prompt": "x", "max_tokens": 2}),
    )
    .await;
    assert_eq!(st, 200);
}

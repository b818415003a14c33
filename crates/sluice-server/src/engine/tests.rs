//! Scheduler tests on a fake model: batching, joining and leaving, cancellation, deadlines,
//! memory admission, model swaps and a dying engine — no weights involved.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use tokio::sync::mpsc;

use super::*;
use crate::model::tiny;

const VOCAB: usize = 64;

/// Predicts `last + 1` (mod vocab); records each step's batch and every release.
#[derive(Default)]
struct Trace {
    batches: Vec<Vec<(u64, usize)>>,
    released: Vec<u64>,
}

/// How the fake model fails a step whose batch feeds it the poison token.
#[derive(Clone, Copy)]
enum Poison {
    Error(u32),
    Panic(u32),
    /// Every step panics.
    Always,
}

struct FakeModel {
    trace: Arc<Mutex<Trace>>,
    poison: Option<Poison>,
    kv_per_token: usize,
    weights: usize,
    slow: Duration,
    /// What a GPU would report, `(used, total)`.
    device: Option<(u64, u64)>,
}

impl StepModel for FakeModel {
    fn step(&mut self, batch: &[(u64, &[u32])]) -> candle_core::Result<Tensor> {
        let fed = |t: u32| batch.iter().any(|(_, toks)| toks.contains(&t));
        match self.poison {
            Some(Poison::Always) => panic!("injected engine failure"),
            Some(Poison::Panic(t)) if fed(t) => panic!("injected panic on token {t}"),
            Some(Poison::Error(t)) if fed(t) => candle_core::bail!("injected error on token {t}"),
            _ => {}
        }
        std::thread::sleep(self.slow);
        self.trace
            .lock()
            .unwrap()
            .batches
            .push(batch.iter().map(|(id, t)| (*id, t.len())).collect());
        let mut rows = vec![0f32; batch.len() * VOCAB];
        for (i, (_, toks)) in batch.iter().enumerate() {
            let next = (*toks.last().unwrap() as usize + 1) % VOCAB;
            rows[i * VOCAB + next] = 10.0;
        }
        Tensor::from_vec(rows, (batch.len(), VOCAB), &Device::Cpu)
    }
    fn release(&mut self, seq: u64) {
        self.trace.lock().unwrap().released.push(seq);
    }
    fn kv_bytes(&self) -> usize {
        0
    }
    fn weight_bytes(&self) -> usize {
        self.weights
    }
    fn context_length(&self) -> usize {
        256
    }
    fn kv_bytes_per_token(&self) -> usize {
        self.kv_per_token
    }
    fn device_memory(&self) -> Option<(u64, u64)> {
        self.device
    }
}

fn fake(trace: &Arc<Mutex<Trace>>) -> FakeModel {
    FakeModel {
        trace: trace.clone(),
        poison: None,
        kv_per_token: 1,
        weights: 0,
        slow: Duration::ZERO,
        device: None,
    }
}

fn engine_with(model: FakeModel, max_batch: usize, budget: u64) -> Engine {
    engine_with_limits(model, Limits::new(64, 64, max_batch), budget)
}

fn engine_with_limits(model: FakeModel, limits: Limits, budget: u64) -> Engine {
    let tok = Arc::new(tiny::tokenizer().unwrap());
    let info = crate::model::ModelInfo {
        served_name: "fake".into(),
        source: "fake".into(),
        quantization: "f32".into(),
        device: "cpu".into(),
        context_length: 256,
        weight_bytes: 0,
        kv_bytes_per_token: 1,
        load_seconds: 0.0,
        eos_token_ids: vec![],
    };
    let chat = Arc::new(crate::model::chat::ChatTemplate::default_template(
        "<s>", "</s>",
    ));
    let em = EngineModel {
        runner: Box::new(model),
        tokenizer: tok,
        eos: vec![],
    };
    Engine::start(Some((em, info, chat)), limits, Metrics::new(), budget)
}

fn request(
    engine: &Engine,
    prompt: Vec<u32>,
    max_tokens: usize,
    timeout: Duration,
) -> ValidRequest {
    request_for(engine.model().unwrap().epoch, prompt, max_tokens, timeout)
}

/// A greedy request that ignores end-of-sequence, for the model generation `epoch`.
fn request_for(epoch: u64, prompt: Vec<u32>, max_tokens: usize, timeout: Duration) -> ValidRequest {
    let now = Instant::now();
    ValidRequest {
        prompt_ids: prompt,
        params: GenerationParams {
            max_tokens,
            temperature: 0.0,
            top_p: None,
            top_k: None,
            seed: 1,
            stop: vec![],
            ignore_eos: true,
        },
        arrived: now,
        deadline: now + timeout,
        model_epoch: epoch,
    }
}

/// Collects every event until Done or Error.
fn drain(mut rx: mpsc::UnboundedReceiver<Event>) -> (Vec<u32>, Option<Event>) {
    let mut ids = Vec::new();
    while let Some(ev) = rx.blocking_recv() {
        match ev {
            Event::Token { id, .. } => ids.push(id),
            other => return (ids, Some(other)),
        }
    }
    (ids, None)
}

#[test]
fn sequences_join_and_leave_at_token_boundaries_within_the_batch_limit() {
    let trace = Arc::new(Mutex::new(Trace::default()));
    let engine = engine_with(fake(&trace), 2, u64::MAX);
    let rxs: Vec<_> = [(vec![1, 2], 3), (vec![10], 6), (vec![20, 21, 22], 2)]
        .into_iter()
        .map(|(p, n)| {
            engine.submit(
                request(&engine, p, n, Duration::from_secs(10)),
                tracing::Span::none(),
            )
        })
        .collect();
    let results: Vec<_> = rxs.into_iter().map(drain).collect();
    assert_eq!(results[0].0, vec![3, 4, 5]);
    assert_eq!(results[1].0, vec![11, 12, 13, 14, 15, 16]);
    assert_eq!(results[2].0, vec![23, 24]);
    for (_, done) in &results {
        assert!(
            matches!(
                done,
                Some(Event::Done {
                    finish_reason: FinishReason::Length,
                    ..
                })
            ),
            "{done:?}"
        );
    }
    let t = trace.lock().unwrap();
    assert!(t.batches.iter().all(|b| b.len() <= 2), "{:?}", t.batches);
    // The third request joined a running batch: one step mixes its 3-token prefill with a
    // 1-token decode of another sequence.
    assert!(
        t.batches
            .iter()
            .any(|b| b.contains(&(3, 3)) && b.iter().any(|&(_, n)| n == 1)),
        "{:?}",
        t.batches
    );
    let mut released = t.released.clone();
    released.sort();
    assert_eq!(released, vec![1, 2, 3]);
    let m = &engine.shared().metrics;
    assert_eq!(m.generated_tokens.get(), 11);
    assert_eq!(m.requests.with_label_values(&["success"]).get(), 3);
    assert_eq!(m.ttft.get_sample_count(), 3);
    assert_eq!(m.tpot.get_sample_count(), 11 - 3);
}

#[test]
fn a_client_that_leaves_frees_its_slot_and_cache() {
    let trace = Arc::new(Mutex::new(Trace::default()));
    let mut model = fake(&trace);
    model.slow = Duration::from_millis(2);
    let engine = engine_with(model, 1, u64::MAX);
    let mut rx = engine.submit(
        request(&engine, vec![1], 200, Duration::from_secs(30)),
        tracing::Span::none(),
    );
    assert!(matches!(rx.blocking_recv(), Some(Event::Token { .. })));
    drop(rx);
    // With one batch slot, the next request can only run once the first was dropped.
    let (ids, done) = drain(engine.submit(
        request(&engine, vec![5], 2, Duration::from_secs(30)),
        tracing::Span::none(),
    ));
    assert_eq!(ids, vec![6, 7]);
    assert!(matches!(done, Some(Event::Done { .. })));
    assert!(trace.lock().unwrap().released.contains(&1));
    assert_eq!(
        engine
            .shared()
            .metrics
            .requests
            .with_label_values(&["cancelled"])
            .get(),
        1
    );
}

#[test]
fn deadlines_fail_with_timeout() {
    let trace = Arc::new(Mutex::new(Trace::default()));
    let mut model = fake(&trace);
    model.slow = Duration::from_millis(5);
    let engine = engine_with(model, 4, u64::MAX);
    let (ids, done) = drain(engine.submit(
        request(&engine, vec![1], 10_000, Duration::from_millis(60)),
        tracing::Span::none(),
    ));
    assert!(!ids.is_empty() && ids.len() < 10_000);
    assert!(
        matches!(done, Some(Event::Error(EngineError::Timeout(_)))),
        "{done:?}"
    );
    assert_eq!(
        engine
            .shared()
            .metrics
            .requests
            .with_label_values(&["timeout"])
            .get(),
        1
    );
}

#[test]
fn memory_budget_queues_or_refuses() {
    let trace = Arc::new(Mutex::new(Trace::default()));
    let mut model = fake(&trace);
    model.kv_per_token = 1000;
    model.slow = Duration::from_millis(1);
    // 30 tokens' worth of KV: one 20-token request fits, two do not run together.
    let engine = engine_with(model, 8, 30_000);
    let a = engine.submit(
        request(&engine, vec![1; 10], 10, Duration::from_secs(10)),
        tracing::Span::none(),
    );
    let b = engine.submit(
        request(&engine, vec![2; 10], 10, Duration::from_secs(10)),
        tracing::Span::none(),
    );
    assert!(matches!(drain(a).1, Some(Event::Done { .. })));
    assert!(matches!(drain(b).1, Some(Event::Done { .. })));
    assert!(
        trace.lock().unwrap().batches.iter().all(|b| b.len() == 1),
        "never batched together"
    );
    let (_, done) = drain(engine.submit(
        request(&engine, vec![1; 10], 100, Duration::from_secs(10)),
        tracing::Span::none(),
    ));
    assert!(
        matches!(
            done,
            Some(Event::Error(EngineError::InsufficientMemory { .. }))
        ),
        "{done:?}"
    );
}

/// The `vram` gauges' value after one request has run (the scheduler publishes them per step).
fn vram_after_a_request(model: FakeModel, budget: u64) -> (f64, f64) {
    let engine = engine_with(model, 2, budget);
    let rx = engine.submit(
        request(&engine, vec![1, 2], 2, Duration::from_secs(10)),
        tracing::Span::none(),
    );
    drain(rx);
    let text = engine.shared().metrics.render();
    let value = |name: &str| -> f64 {
        let prefix = format!("{name}{{memory_type=\"vram\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .parse()
            .unwrap()
    };
    (
        value(sluice_contract::metrics::MEMORY_USAGE_MEGABYTES),
        value(sluice_contract::metrics::MEMORY_CAPACITY_MEGABYTES),
    )
}

#[test]
fn vram_comes_from_the_device_when_there_is_one() {
    let trace = Arc::new(Mutex::new(Trace::default()));
    // A GPU: the device's count, whatever the budget and the weights say.
    let gpu = FakeModel {
        device: Some((3 << 30, 80 << 30)),
        weights: 1 << 20,
        ..fake(&trace)
    };
    assert_eq!(vram_after_a_request(gpu, 1 << 30), (3072.0, 81920.0));
    // A CPU: weights + KV against the memory budget.
    let cpu = FakeModel {
        weights: 1 << 20,
        ..fake(&trace)
    };
    assert_eq!(vram_after_a_request(cpu, 1 << 30), (1.0, 1024.0));
}

#[test]
fn unloading_fails_queued_and_new_requests_with_no_model() {
    let trace = Arc::new(Mutex::new(Trace::default()));
    let engine = engine_with(fake(&trace), 4, u64::MAX);
    let epoch = engine.model().unwrap().epoch;
    engine.swap(None);
    assert!(engine.model().is_none());
    let req = request_for(epoch, vec![1], 2, Duration::from_secs(5));
    let (_, done) = drain(engine.submit(req, tracing::Span::none()));
    assert!(
        matches!(done, Some(Event::Error(EngineError::NoModel))),
        "{done:?}"
    );
    assert!(engine.is_alive());
}

const POISON: u32 = 63;

/// A failing batched step is retried per sequence: only the sequence that fails alone gets the
/// error, the others get exactly the rows the batch would have given them.
#[test]
fn a_failed_batch_step_fails_only_the_sequence_that_fails_alone() {
    for poison in [Poison::Error(POISON), Poison::Panic(POISON)] {
        let trace = Arc::new(Mutex::new(Trace::default()));
        let mut model = fake(&trace);
        model.poison = Some(poison);
        let batch: Vec<(u64, &[u32])> = vec![(1, &[1, 2]), (2, &[7, POISON]), (3, &[5])];
        let rows = scheduler::step_isolated(&mut model, &batch);
        assert_eq!(rows.len(), 3);
        let argmax = |r: &Result<Tensor, EngineError>| {
            r.as_ref()
                .unwrap()
                .argmax(0)
                .unwrap()
                .to_scalar::<u32>()
                .unwrap()
        };
        assert_eq!(argmax(&rows[0]), 3);
        assert_eq!(argmax(&rows[2]), 6);
        assert!(
            matches!(&rows[1], Err(EngineError::Internal(m)) if m.contains("injected")),
            "{:?}",
            rows[1].as_ref().err()
        );
        // The two healthy sequences ran once more, alone, after the failed batch.
        let t = trace.lock().unwrap();
        assert_eq!(t.batches, vec![vec![(1, 2)], vec![(3, 1)]]);
    }
}

/// End to end through the scheduler: a poisoned request (an error or a panic in the model)
/// fails itself; requests running beside it finish with their full output, and the engine stays
/// alive and healthy.
#[test]
fn one_failing_request_never_fails_its_batch_mates() {
    for poison in [Poison::Error(POISON), Poison::Panic(POISON)] {
        let trace = Arc::new(Mutex::new(Trace::default()));
        let mut model = fake(&trace);
        model.poison = Some(poison);
        model.slow = Duration::from_millis(2);
        let engine = engine_with(model, 4, u64::MAX);
        let good: Vec<_> = (0..3)
            .map(|i| {
                engine.submit(
                    request(&engine, vec![10 * i + 1], 8, Duration::from_secs(30)),
                    tracing::Span::none(),
                )
            })
            .collect();
        let bad = engine.submit(
            request(&engine, vec![2, POISON], 8, Duration::from_secs(30)),
            tracing::Span::none(),
        );
        let (ids, done) = drain(bad);
        assert!(ids.is_empty());
        assert!(
            matches!(&done, Some(Event::Error(EngineError::Internal(_)))),
            "{done:?}"
        );
        for (i, rx) in good.into_iter().enumerate() {
            let (ids, done) = drain(rx);
            let first = 10 * i as u32 + 2;
            assert_eq!(ids, (first..first + 8).collect::<Vec<_>>());
            assert!(matches!(done, Some(Event::Done { .. })), "{done:?}");
        }
        assert!(engine.is_alive());
        assert_eq!(engine.unhealthy(), None);
        let m = &engine.shared().metrics;
        assert_eq!(m.requests.with_label_values(&["success"]).get(), 3);
        assert_eq!(m.errors.with_label_values(&["internal"]).get(), 1);
        assert!(m.engine_failed_steps.get() >= 1);
    }
}

/// A model that panics on every step keeps the scheduler thread alive and answers each request
/// with an error; after a run of steps that all failed, `/health` says so, so Kubernetes
/// restarts the pod.
#[test]
fn a_model_failing_every_step_is_reported_unhealthy() {
    let trace = Arc::new(Mutex::new(Trace::default()));
    let mut model = fake(&trace);
    model.poison = Some(Poison::Always);
    let engine = engine_with(model, 4, u64::MAX);
    assert_eq!(engine.unhealthy(), None);
    for _ in 0..UNHEALTHY_AFTER_FAILED_STEPS {
        let (ids, done) = drain(engine.submit(
            request(&engine, vec![1], 2, Duration::from_secs(5)),
            tracing::Span::none(),
        ));
        assert!(ids.is_empty());
        assert!(
            matches!(&done, Some(Event::Error(EngineError::Internal(m))) if m.contains("panicked")),
            "{done:?}"
        );
    }
    assert!(engine.is_alive(), "the scheduler thread survives panics");
    let why = engine
        .unhealthy()
        .expect("unhealthy after repeated failures");
    assert!(why.contains("failed every sequence"), "{why}");
}

#[test]
fn prefill_budgets_go_to_the_oldest_prompts_first() {
    use super::scheduler::prefill_chunks;
    let cases: &[(&[usize], usize, &[usize])] = &[
        (&[3, 5], 512, &[3, 5]),
        (&[10, 5], 4, &[4, 0]),
        (&[3, 5, 2], 6, &[3, 3, 0]),
        (&[0, 7], 4, &[0, 4]),
        // A budget of 0 still moves the oldest prompt on.
        (&[7], 0, &[1]),
        (&[], 8, &[]),
    ];
    for (remaining, budget, want) in cases {
        assert_eq!(
            prefill_chunks(remaining, *budget),
            want.to_vec(),
            "{remaining:?} / {budget}"
        );
    }
}

#[test]
fn a_long_prompt_is_prefilled_in_chunks_while_running_streams_keep_decoding() {
    let trace = Arc::new(Mutex::new(Trace::default()));
    // Slow steps keep the first stream running long after the second arrives (64 steps of
    // 30 ms against a submit that follows its first token at once).
    let model = FakeModel {
        slow: Duration::from_millis(30),
        ..fake(&trace)
    };
    let engine = engine_with_limits(
        model,
        Limits::new(64, 64, 4).with_max_prefill_tokens(4),
        u64::MAX,
    );
    let mut first = engine.submit(
        request(&engine, vec![1], 64, Duration::from_secs(60)),
        tracing::Span::none(),
    );
    assert!(matches!(first.blocking_recv(), Some(Event::Token { .. })));
    let long: Vec<u32> = (2..22).collect();
    let second = engine.submit(
        request(&engine, long, 2, Duration::from_secs(60)),
        tracing::Span::none(),
    );
    let (ids, done) = drain(second);
    assert!(matches!(done, Some(Event::Done { .. })), "{done:?}");
    // The fake predicts last + 1: the prompt ended in 21.
    assert_eq!(ids, vec![22, 23]);
    drain(first);
    let trace = trace.lock().unwrap();
    let chunked: Vec<&Vec<(u64, usize)>> = trace
        .batches
        .iter()
        .filter(|b| b.iter().any(|&(id, n)| id == 2 && n > 1))
        .collect();
    assert_eq!(
        chunked.len(),
        5,
        "20 prompt tokens in chunks of 4: {chunked:?}"
    );
    for batch in chunked {
        assert!(
            batch.contains(&(2, 4)) && batch.contains(&(1, 1)),
            "each chunk of 4 rides with the running stream's token: {batch:?}"
        );
    }
}

#[test]
fn chunked_prefill_generates_what_whole_prefill_does() {
    use crate::model::quant::{Quantization, QuantizationFlag};
    use crate::model::{LoadSpec, ModelSource, load};
    let greedy = |budget: usize| {
        let loaded = load(&LoadSpec {
            source: ModelSource::Builtin(tiny::TinyShape::Tiny),
            quantization: QuantizationFlag::Level(Quantization::Q8_0),
            device: Device::Cpu,
            served_name: None,
            hf_home: None,
            kv_cache: Default::default(),
        })
        .unwrap();
        let prompt = loaded
            .tokenizer
            .encode(
                "The operator reads the queue and names the bottleneck before it scales out.",
                true,
            )
            .unwrap()
            .get_ids()
            .to_vec();
        assert!(prompt.len() > 12, "the prompt spans several chunks");
        let engine = Engine::start(
            Some(EngineModel::serve(loaded)),
            Limits::new(64, 64, 4).with_max_prefill_tokens(budget),
            Metrics::new(),
            u64::MAX,
        );
        let rx = engine.submit(
            request(&engine, prompt, 16, Duration::from_secs(60)),
            tracing::Span::none(),
        );
        drain(rx).0
    };
    assert_eq!(greedy(5), greedy(4096));
}

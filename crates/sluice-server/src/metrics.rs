//! The server's Prometheus metrics: one registry, bounded label values, units in names and
//! explicit buckets. Names are a contract: the operator's PromQL reads them.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};
use sluice_contract::metrics::{self as names, ErrorReason, MemoryType, RequestStatus};

const LATENCY_BUCKETS: [f64; 16] = names::TTFT_BUCKETS_SECONDS;
const TPOT_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0,
];
const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 24.0, 32.0, 64.0];

/// Every metric the server exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub ttft: Histogram,
    pub tpot: Histogram,
    pub requests: IntCounterVec,
    pub errors: IntCounterVec,
    pub memory_usage: GaugeVec,
    pub memory_capacity: GaugeVec,
    pub queue_depth: IntGauge,
    pub running: IntGauge,
    pub in_flight: IntGauge,
    pub batch_size: Histogram,
    pub queue_wait: Histogram,
    pub request_duration: Histogram,
    pub prefill: Histogram,
    pub decode: Histogram,
    pub prompt_tokens: IntCounter,
    pub generated_tokens: IntCounter,
    pub engine_failed_steps: IntCounter,
    pub model_load_seconds: Gauge,
    pub max_tokens_cap: IntGauge,
    pub max_concurrent: IntGauge,
    pub max_batch: IntGauge,
    pub model_info: GaugeVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn histogram(name: &str, help: &str, buckets: &[f64]) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        .expect("valid histogram")
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let m = Self {
            ttft: histogram(names::TTFT_SECONDS, "Time from request arrival (before the body is read and tokenized) to the first generated token.", &LATENCY_BUCKETS),
            tpot: histogram(names::TPOT_SECONDS, "Time between consecutive generated tokens of one request.", &TPOT_BUCKETS),
            requests: IntCounterVec::new(Opts::new(names::REQUESTS_TOTAL, "Finished requests by outcome."), &[names::STATUS_LABEL]).expect("valid"),
            errors: IntCounterVec::new(Opts::new(names::ERRORS_TOTAL, "Failed requests by reason."), &[names::REASON_LABEL]).expect("valid"),
            memory_usage: GaugeVec::new(Opts::new(names::MEMORY_USAGE_MEGABYTES, "Memory in use; on CPU, vram is what would live in accelerator memory (weights + KV cache)."), &[names::MEMORY_TYPE_LABEL]).expect("valid"),
            memory_capacity: GaugeVec::new(Opts::new(names::MEMORY_CAPACITY_MEGABYTES, "Memory available to the server by type."), &[names::MEMORY_TYPE_LABEL]).expect("valid"),
            queue_depth: IntGauge::new(names::QUEUE_DEPTH, "Admitted requests waiting to join the running batch.").expect("valid"),
            running: IntGauge::new(names::RUNNING_SEQUENCES, "Sequences in the running batch.").expect("valid"),
            in_flight: IntGauge::new(names::IN_FLIGHT_REQUESTS, "Admitted requests not yet answered (queued + running).").expect("valid"),
            batch_size: histogram(names::BATCH_SIZE, "Sequences per forward step.", &BATCH_BUCKETS),
            queue_wait: histogram(names::QUEUE_WAIT_SECONDS, "Time from arrival to joining the running batch.", &LATENCY_BUCKETS),
            request_duration: histogram(names::REQUEST_DURATION_SECONDS, "Time from arrival to the last token.", &DURATION_BUCKETS),
            prefill: histogram(names::PREFILL_SECONDS, "Time from joining the running batch to the first token (prefill).", &LATENCY_BUCKETS),
            decode: histogram(names::DECODE_SECONDS, "Time from the first to the last token of a successful request (decode).", &DURATION_BUCKETS),
            prompt_tokens: IntCounter::new(names::PROMPT_TOKENS_TOTAL, "Prompt tokens processed.").expect("valid"),
            generated_tokens: IntCounter::new(names::GENERATED_TOKENS_TOTAL, "Tokens generated.").expect("valid"),
            engine_failed_steps: IntCounter::new(names::ENGINE_FAILED_STEPS_TOTAL, "Engine steps in which a sequence failed (an error or a contained panic); each failure ended only its own request.").expect("valid"),
            model_load_seconds: Gauge::new(names::MODEL_LOAD_SECONDS, "Seconds the current model took to load.").expect("valid"),
            max_tokens_cap: IntGauge::new(names::MAX_TOKENS_CAP, "Server-wide cap on generated tokens per request.").expect("valid"),
            max_concurrent: IntGauge::new(names::MAX_CONCURRENT_REQUESTS, "Admission limit: requests queued + running.").expect("valid"),
            max_batch: IntGauge::new(names::MAX_BATCH_SIZE, "Sequences the scheduler runs together.").expect("valid"),
            model_info: GaugeVec::new(Opts::new(names::MODEL_INFO, "The loaded model (value 1)."), &["model", "quantization", "device"]).expect("valid"),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.ttft.clone()),
            Box::new(m.tpot.clone()),
            Box::new(m.requests.clone()),
            Box::new(m.errors.clone()),
            Box::new(m.memory_usage.clone()),
            Box::new(m.memory_capacity.clone()),
            Box::new(m.queue_depth.clone()),
            Box::new(m.running.clone()),
            Box::new(m.in_flight.clone()),
            Box::new(m.batch_size.clone()),
            Box::new(m.queue_wait.clone()),
            Box::new(m.request_duration.clone()),
            Box::new(m.prefill.clone()),
            Box::new(m.decode.clone()),
            Box::new(m.prompt_tokens.clone()),
            Box::new(m.generated_tokens.clone()),
            Box::new(m.engine_failed_steps.clone()),
            Box::new(m.model_load_seconds.clone()),
            Box::new(m.max_tokens_cap.clone()),
            Box::new(m.max_concurrent.clone()),
            Box::new(m.max_batch.clone()),
            Box::new(m.model_info.clone()),
        ];
        for c in collectors {
            m.registry.register(c).expect("metric names are unique");
        }
        // Pre-create every bounded label value so rates exist from the first scrape.
        for s in RequestStatus::ALL {
            m.requests.with_label_values(&[s.as_str()]);
        }
        for r in ErrorReason::ALL {
            m.errors.with_label_values(&[r.as_str()]);
        }
        m
    }

    /// Counts one finished request; `reason` is set for failures.
    pub fn finish(&self, status: RequestStatus, reason: Option<ErrorReason>) {
        self.requests.with_label_values(&[status.as_str()]).inc();
        if let Some(r) = reason {
            self.errors.with_label_values(&[r.as_str()]).inc();
        }
    }

    pub fn set_memory(&self, memory_type: MemoryType, usage_bytes: f64, capacity_bytes: f64) {
        let memory_type = memory_type.as_str();
        const MB: f64 = 1024.0 * 1024.0;
        self.memory_usage
            .with_label_values(&[memory_type])
            .set(usage_bytes / MB);
        self.memory_capacity
            .with_label_values(&[memory_type])
            .set(capacity_bytes / MB);
    }

    pub fn set_model(&self, model: Option<(&str, &str, &str)>, load_seconds: f64) {
        self.model_info.reset();
        if let Some((name, quant, device)) = model {
            self.model_info
                .with_label_values(&[name, quant, device])
                .set(1.0);
        }
        self.model_load_seconds.set(load_seconds);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

//! The server's metric names and label values: what it exports and what the SLO engine's PromQL
//! and scrape reader, the CLI's reports and the operator read.

/// TTFT histogram, seconds.
pub const TTFT_SECONDS: &str = "llm_ttft_seconds";
/// Upper bounds of the TTFT histogram's buckets (seconds). The simulator estimates TTFT P95
/// from the same buckets with Prometheus's `histogram_quantile`, so it sees what the operator
/// reads.
pub const TTFT_BUCKETS_SECONDS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0,
];
/// Time per output token histogram, seconds.
pub const TPOT_SECONDS: &str = "llm_tpot_seconds";
/// Finished requests by `status`.
pub const REQUESTS_TOTAL: &str = "llm_requests_total";
/// Failed requests by `reason`.
pub const ERRORS_TOTAL: &str = "llm_errors_total";
/// Memory in use by `memory_type`, megabytes.
pub const MEMORY_USAGE_MEGABYTES: &str = "llm_memory_usage_megabytes";
/// Memory capacity by `memory_type`, megabytes.
pub const MEMORY_CAPACITY_MEGABYTES: &str = "llm_memory_capacity_megabytes";
/// Admitted requests waiting to join the batch.
pub const QUEUE_DEPTH: &str = "llm_queue_depth";
/// Sequences in the running batch.
pub const RUNNING_SEQUENCES: &str = "llm_running_sequences";
/// Admitted requests not yet answered.
pub const IN_FLIGHT_REQUESTS: &str = "llm_in_flight_requests";
/// Sequences per forward step histogram.
pub const BATCH_SIZE: &str = "llm_batch_size";
/// Time from admission to joining the batch histogram, seconds.
pub const QUEUE_WAIT_SECONDS: &str = "llm_queue_wait_seconds";
/// Time from joining the running batch to the first token (the prompt's prefill, shared with
/// the other sequences of the steps it ran in) histogram, seconds.
pub const PREFILL_SECONDS: &str = "llm_prefill_seconds";
/// Time from the first to the last token of a successful request (its decode phase)
/// histogram, seconds.
pub const DECODE_SECONDS: &str = "llm_decode_seconds";
/// Time from arrival to the last token histogram, seconds.
pub const REQUEST_DURATION_SECONDS: &str = "llm_request_duration_seconds";
/// Prompt tokens processed.
pub const PROMPT_TOKENS_TOTAL: &str = "llm_prompt_tokens_total";
/// Tokens generated.
pub const GENERATED_TOKENS_TOTAL: &str = "llm_generated_tokens_total";
/// Engine steps in which a sequence failed.
pub const ENGINE_FAILED_STEPS_TOTAL: &str = "llm_engine_failed_steps_total";
/// Seconds the current model took to load.
pub const MODEL_LOAD_SECONDS: &str = "llm_model_load_seconds";
/// The `max_tokens` cap in force.
pub const MAX_TOKENS_CAP: &str = "llm_max_tokens_cap";
/// The admission limit in force.
pub const MAX_CONCURRENT_REQUESTS: &str = "llm_max_concurrent_requests";
/// The batch size limit in force.
pub const MAX_BATCH_SIZE: &str = "llm_max_batch_size";
/// The loaded model (value 1) with `model`, `quantization` and `device` labels.
pub const MODEL_INFO: &str = "llm_model_info";

/// Label of [`REQUESTS_TOTAL`].
pub const STATUS_LABEL: &str = "status";
/// Label of [`ERRORS_TOTAL`].
pub const REASON_LABEL: &str = "reason";
/// Label of the memory gauges.
pub const MEMORY_TYPE_LABEL: &str = "memory_type";

/// How a request ended (`llm_requests_total{status}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::VariantArray)]
pub enum RequestStatus {
    Success,
    /// Refused at admission (429).
    Rejected,
    /// Bad input (4xx).
    Invalid,
    Timeout,
    /// The client went away.
    Cancelled,
    /// The server failed (5xx).
    Error,
}

impl RequestStatus {
    pub const ALL: &'static [RequestStatus] = <Self as strum::VariantArray>::VARIANTS;
    /// Statuses that count against the error objective.
    pub const ERRORS: [RequestStatus; 3] = [
        RequestStatus::Error,
        RequestStatus::Timeout,
        RequestStatus::Rejected,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Success => "success",
            RequestStatus::Rejected => "rejected",
            RequestStatus::Invalid => "invalid",
            RequestStatus::Timeout => "timeout",
            RequestStatus::Cancelled => "cancelled",
            RequestStatus::Error => "error",
        }
    }
}

/// Why a request failed (`llm_errors_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::VariantArray)]
pub enum ErrorReason {
    Overloaded,
    InvalidRequest,
    PayloadTooLarge,
    Unauthorized,
    NotFound,
    Timeout,
    Cancelled,
    Internal,
    Unavailable,
}

impl ErrorReason {
    pub const ALL: &'static [ErrorReason] = <Self as strum::VariantArray>::VARIANTS;

    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorReason::Overloaded => "overloaded",
            ErrorReason::InvalidRequest => "invalid_request",
            ErrorReason::PayloadTooLarge => "payload_too_large",
            ErrorReason::Unauthorized => "unauthorized",
            ErrorReason::NotFound => "not_found",
            ErrorReason::Timeout => "timeout",
            ErrorReason::Cancelled => "cancelled",
            ErrorReason::Internal => "internal",
            ErrorReason::Unavailable => "unavailable",
        }
    }
}

/// What a memory gauge measures (`memory_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::VariantArray)]
pub enum MemoryType {
    /// Accelerator memory: weights + KV cache (on CPU, what would live there).
    Vram,
    /// The process's resident memory.
    Ram,
    /// The KV cache against what the budget leaves after the weights.
    KvCache,
}

impl MemoryType {
    pub const ALL: &'static [MemoryType] = <Self as strum::VariantArray>::VARIANTS;
    /// The types whose use ratio is memory pressure (RAM is not: the OS manages it).
    pub const PRESSURE: [MemoryType; 2] = [MemoryType::Vram, MemoryType::KvCache];

    pub const fn as_str(self) -> &'static str {
        match self {
            MemoryType::Vram => "vram",
            MemoryType::Ram => "ram",
            MemoryType::KvCache => "kv_cache",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_spelled_as_exported() {
        let statuses: Vec<_> = RequestStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            statuses,
            [
                "success",
                "rejected",
                "invalid",
                "timeout",
                "cancelled",
                "error"
            ]
        );
        let reasons: Vec<_> = ErrorReason::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "overloaded",
                "invalid_request",
                "payload_too_large",
                "unauthorized",
                "not_found",
                "timeout",
                "cancelled",
                "internal",
                "unavailable"
            ]
        );
        let memory: Vec<_> = MemoryType::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(memory, ["vram", "ram", "kv_cache"]);
    }
}

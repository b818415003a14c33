//! Test-only helpers shared by the tests and benchmarks of several crates: child processes that
//! are always killed (and whose log is shown when a test fails), loopback ports and plain HTTP
//! probes, a real Prometheus scraping given targets, a real Jaeger receiving OTLP, and deterministic test data. Synchronous on purpose: async tests
//! call them too, and a few seconds of blocking while a process starts harms nothing there.

pub mod cluster;
pub mod jaeger;
pub mod net;
pub mod proc;
pub mod prometheus;

pub use cluster::Cluster;
pub use jaeger::{Jaeger, jaeger_binary};
pub use net::{free_port, http_get_body, http_get_status};
pub use proc::Proc;
pub use prometheus::{Prometheus, ScrapeTarget, prometheus_binary};

/// The public Azure LLM inference trace (conversation service, 2023) when it is on this
/// machine: `SLUICE_AZURE_TRACE`, else `shared/data/` beside the checkout. Never committed, so
/// tests that use it say they skipped when it is absent.
pub fn azure_trace() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("SLUICE_AZURE_TRACE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/data/azure-llm-inference-2023-conv.csv")
        });
    path.is_file().then_some(path)
}

/// `len` deterministic, evenly spread values in `[-1, 1]` (steps of 0.001) from a multiplicative
/// hash of the index; `seed` shifts the sequence. Test matrices for numeric kernels, the same on
/// every machine and run.
pub fn pseudo_random(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 2001) as f32 / 1000.0
                - 1.0
        })
        .collect()
}

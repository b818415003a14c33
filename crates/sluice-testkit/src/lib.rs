//! Test-only helpers shared by the live tests of several crates: child processes that are
//! always killed (and whose log is shown when a test fails), loopback ports and plain HTTP
//! probes, and a real Prometheus scraping given targets. Synchronous on purpose: async tests
//! call them too, and a few seconds of blocking while a process starts harms nothing there.

pub mod net;
pub mod proc;
pub mod prometheus;

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

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

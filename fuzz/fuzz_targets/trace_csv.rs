//! The trace CSV parser behind `sluice bench --trace` and the replays: any bytes give requests or
//! an error naming the line, never a panic; every request it returns is replayable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_cli::trace::{TraceOptions, parse_trace};

fuzz_target!(|data: &[u8]| {
    let opts = TraceOptions {
        time_scale: 0.5,
        skip: 0,
        limit: Some(1000),
        max_prompt_tokens: Some(4096),
        max_tokens: 512,
    };
    if let Ok(requests) = parse_trace(data, "fuzz", &opts) {
        assert!(!requests.is_empty(), "Ok with no requests");
        assert!(requests.len() <= 1000, "limit ignored");
    }
});

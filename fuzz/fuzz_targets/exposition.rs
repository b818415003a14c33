//! The Prometheus text exposition parser the SLO engine scrapes pods with: any bytes give samples
//! or a line-numbered error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match sluice_slo::source::parse_exposition(text) {
        Ok(samples) => {
            for s in samples {
                assert!(!s.name.is_empty(), "a sample without a name");
            }
        }
        Err(e) => assert!(
            e.line >= 1 && e.line <= text.lines().count().max(1),
            "error line {} out of range",
            e.line
        ),
    }
});

//! Collects samples from concurrent requests and seals them at the end of a run, so a request
//! still in flight when the run stops is counted as cancelled exactly once — never silently lost,
//! never half-counted.

use std::sync::Mutex;

use super::sample::Sample;

#[derive(Debug, Default)]
struct State {
    samples: Vec<Sample>,
    in_flight: u64,
    ok: u64,
    failed: u64,
    tokens: u64,
    sealed: bool,
}

/// Live counters for the progress bar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub ok: u64,
    pub failed: u64,
    pub tokens: u64,
    pub in_flight: u64,
}

/// What a sealed recorder hands over.
#[derive(Debug, Default)]
pub struct Sealed {
    pub samples: Vec<Sample>,
    /// Requests that were sent but had not finished when the run was sealed.
    pub cancelled: u64,
}

#[derive(Debug, Default)]
pub struct Recorder {
    state: Mutex<State>,
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere must not take the measurements with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a request about to be sent; false once the run is sealed (do not send).
    pub fn begin(&self) -> bool {
        let mut s = self.lock();
        if s.sealed {
            return false;
        }
        s.in_flight += 1;
        true
    }

    /// Records a request registered with [`Recorder::begin`]; ignored after sealing, when it
    /// was already counted as cancelled.
    pub fn finish(&self, sample: Sample) {
        let mut s = self.lock();
        if s.sealed {
            return;
        }
        s.in_flight = s.in_flight.saturating_sub(1);
        Self::count(&mut s, sample);
    }

    /// Records a failure that never became a request (e.g. client saturation).
    pub fn record_unsent(&self, sample: Sample) {
        let mut s = self.lock();
        if !s.sealed {
            Self::count(&mut s, sample);
        }
    }

    fn count(s: &mut State, sample: Sample) {
        if sample.ok() {
            s.ok += 1;
            s.tokens += sample.tokens;
        } else {
            s.failed += 1;
        }
        s.samples.push(sample);
    }

    pub fn progress(&self) -> Progress {
        let s = self.lock();
        Progress {
            ok: s.ok,
            failed: s.failed,
            tokens: s.tokens,
            in_flight: s.in_flight,
        }
    }

    /// Ends the run: takes the samples and counts what is still in flight as cancelled.
    pub fn seal(&self) -> Sealed {
        let mut s = self.lock();
        s.sealed = true;
        Sealed {
            samples: std::mem::take(&mut s.samples),
            cancelled: std::mem::take(&mut s.in_flight),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::sample::{ErrorKind, TimingSource};
    use std::time::Duration;

    fn ok_sample() -> Sample {
        Sample {
            start_s: 0.0,
            latency: Duration::from_millis(5),
            ttft: None,
            tokens: 3,
            tpot: None,
            timing_source: TimingSource::Client,
            error: None,
            error_detail: None,
        }
    }

    #[test]
    fn in_flight_requests_become_cancelled_once() {
        let r = Recorder::new();
        assert!(r.begin());
        assert!(r.begin());
        r.finish(ok_sample());
        r.record_unsent(Sample::failed(
            0.0,
            Duration::ZERO,
            ErrorKind::ClientSaturated,
            "x",
        ));
        assert_eq!(
            r.progress(),
            Progress {
                ok: 1,
                failed: 1,
                tokens: 3,
                in_flight: 1
            }
        );
        let sealed = r.seal();
        assert_eq!((sealed.samples.len(), sealed.cancelled), (2, 1));
        // The straggler finishing later is not double-counted, and nothing new starts.
        r.finish(ok_sample());
        assert!(!r.begin());
        assert_eq!(r.seal().samples.len(), 0);
    }
}

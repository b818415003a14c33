//! Admission control: a bounded number of requests in the server (queued + running). Past the
//! limit the answer is 429 with a `Retry-After` estimate, never an unbounded queue. The limit is
//! read on every request, so `PUT /admin/limits` takes effect at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::error::ApiError;
use crate::metrics::Metrics;

#[derive(Debug, Default)]
pub struct Admission {
    in_flight: AtomicUsize,
    draining: AtomicBool,
    /// Exponentially weighted mean request duration in milliseconds, for `Retry-After`.
    ewma_ms: AtomicU64,
}

/// Held for the life of one request; dropping it frees the slot.
pub struct Permit {
    admission: Arc<Admission>,
    metrics: Metrics,
    started: std::time::Instant,
}

impl Admission {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Takes a slot if fewer than `limit` requests are in flight.
    pub fn try_acquire(
        self: &Arc<Self>,
        limit: usize,
        metrics: &Metrics,
    ) -> Result<Permit, ApiError> {
        let acquired = self
            .in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            });
        match acquired {
            Ok(_) => {
                metrics.in_flight.inc();
                Ok(Permit {
                    admission: self.clone(),
                    metrics: metrics.clone(),
                    started: std::time::Instant::now(),
                })
            }
            Err(n) => Err(ApiError::Overloaded(self.retry_after_secs(n, limit))),
        }
    }

    /// How long until a slot is likely free: the mean request time scaled by how far over the
    /// limit the server is, bounded to [1, 60] s.
    fn retry_after_secs(&self, in_flight: usize, limit: usize) -> u64 {
        let mean = self.ewma_ms.load(Ordering::Relaxed).max(500) as f64 / 1000.0;
        let pressure = in_flight as f64 / limit.max(1) as f64;
        (mean * pressure).ceil().clamp(1.0, 60.0) as u64
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Marks the server as shutting down: `/ready` fails so endpoints drop the pod, while
    /// requests that still arrive are served (refusing them would fail clients whose routing has
    /// not caught up yet).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.metrics.in_flight.dec();
        let ms = self.started.elapsed().as_millis() as u64;
        let old = self.admission.ewma_ms.load(Ordering::Relaxed);
        let new = if old == 0 { ms } else { (old * 7 + ms) / 8 };
        self.admission.ewma_ms.store(new, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_is_enforced_and_slots_come_back() {
        let a = Admission::new();
        let m = Metrics::new();
        let p1 = a.try_acquire(2, &m).unwrap();
        let _p2 = a.try_acquire(2, &m).unwrap();
        let err = a.try_acquire(2, &m).err().unwrap();
        assert!(matches!(err, ApiError::Overloaded(s) if (1..=60).contains(&s)));
        assert_eq!(m.in_flight.get(), 2);
        drop(p1);
        assert!(a.try_acquire(2, &m).is_ok());
        // A raised limit applies to the next request.
        assert!(a.try_acquire(3, &m).is_ok());
    }

    /// Draining only turns readiness off: requests that still arrive (routed here before the
    /// endpoint update) are admitted, within the limit, rather than refused.
    #[test]
    fn draining_still_admits_within_the_limit() {
        let a = Admission::new();
        let m = Metrics::new();
        a.start_draining();
        assert!(a.is_draining());
        let _p = a.try_acquire(1, &m).unwrap();
        assert!(matches!(a.try_acquire(1, &m), Err(ApiError::Overloaded(_))));
    }
}

//! The three load models: closed-loop users spawned at a rate (Locust), open-loop Poisson
//! arrivals, and timestamped trace replay. Each runs until it is told to stop (deadline, Ctrl-C)
//! or runs out of work; the caller decides how long in-flight requests may finish.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::client::Target;
use super::recorder::Recorder;
use super::sample::{ErrorKind, Sample};
use super::workload::RequestSpec;
use crate::cli::WaitTime;
use crate::trace::TraceRequest;

/// How load is generated.
#[derive(Debug, Clone)]
pub enum LoadPlan {
    /// `users` loop send → wait; user `i` starts at `i / spawn_rate` seconds.
    Closed {
        users: u32,
        spawn_rate: f64,
        wait: WaitTime,
        prompt_tokens: u32,
        max_tokens: u32,
    },
    /// Requests arrive as a Poisson process of `rate` per second, whatever the server does.
    Poisson {
        rate: f64,
        prompt_tokens: u32,
        max_tokens: u32,
        max_in_flight: u32,
    },
    /// Requests are sent at the trace's (scaled) timestamps.
    Trace {
        requests: Arc<Vec<TraceRequest>>,
        max_in_flight: u32,
        /// Prompt words per trace token ([`super::calibrate`]; 1 when not calibrated).
        words_per_token: f64,
    },
}

/// Shared by every task of one run.
#[derive(Debug, Clone)]
pub struct RunContext {
    pub target: Arc<Target>,
    pub recorder: Arc<Recorder>,
    /// Set when no new request may start.
    pub stopping: Arc<AtomicBool>,
    pub start: Instant,
    /// No request starts at or after this instant.
    pub deadline: Option<Instant>,
    pub seed: u64,
}

impl RunContext {
    fn may_start(&self) -> bool {
        !self.stopping.load(Ordering::Relaxed) && self.deadline.is_none_or(|d| Instant::now() < d)
    }

    /// Sends one request unless the run is over; the result lands in the recorder.
    async fn request(&self, spec: RequestSpec) {
        if !self.may_start() || !self.recorder.begin() {
            return;
        }
        let sample = self.target.send(&spec, self.start).await;
        self.recorder.finish(sample);
    }
}

/// Generates load until stopped or out of work. Dropping (aborting) the returned future's task
/// aborts every request it started.
pub async fn drive(plan: LoadPlan, ctx: RunContext) {
    match plan {
        LoadPlan::Closed {
            users,
            spawn_rate,
            wait,
            prompt_tokens,
            max_tokens,
        } => closed_loop(users, spawn_rate, wait, prompt_tokens, max_tokens, ctx).await,
        LoadPlan::Poisson {
            rate,
            prompt_tokens,
            max_tokens,
            max_in_flight,
        } => {
            let mut rng = StdRng::seed_from_u64(ctx.seed);
            let exp = Exp::new(rate).expect("rate was validated positive");
            let mut at = Duration::ZERO;
            let arrivals = std::iter::from_fn(move || {
                at += Duration::from_secs_f64(exp.sample(&mut rng));
                Some(at)
            });
            let mut prompt_rng = StdRng::seed_from_u64(ctx.seed.wrapping_add(1));
            let specs = std::iter::from_fn(move || {
                Some(RequestSpec::synthetic(
                    &mut prompt_rng,
                    prompt_tokens,
                    max_tokens,
                ))
            });
            open_loop(arrivals.zip(specs), max_in_flight, ctx).await
        }
        LoadPlan::Trace {
            requests,
            max_in_flight,
            words_per_token,
        } => {
            let mut rng = StdRng::seed_from_u64(ctx.seed);
            let schedule: Vec<_> = requests
                .iter()
                .map(|r| {
                    let words = (f64::from(r.prompt_tokens) * words_per_token)
                        .round()
                        .max(1.0) as u32;
                    let spec = RequestSpec::synthetic(&mut rng, words, r.max_tokens);
                    (r.at, spec)
                })
                .collect();
            open_loop(schedule.into_iter(), max_in_flight, ctx).await
        }
    }
}

async fn closed_loop(
    users: u32,
    spawn_rate: f64,
    wait: WaitTime,
    prompt_tokens: u32,
    max_tokens: u32,
    ctx: RunContext,
) {
    let mut set = JoinSet::new();
    for user in 0..users {
        let ctx = ctx.clone();
        let starts_at = ctx.start + Duration::from_secs_f64(f64::from(user) / spawn_rate);
        set.spawn(async move {
            tokio::time::sleep_until(starts_at).await;
            let mut rng = StdRng::seed_from_u64(
                ctx.seed ^ (u64::from(user) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            while ctx.may_start() {
                ctx.request(RequestSpec::synthetic(&mut rng, prompt_tokens, max_tokens))
                    .await;
                let think = think_time(&mut rng, wait);
                if !think.is_zero() {
                    match ctx.deadline {
                        Some(d) => tokio::time::sleep_until(d.min(Instant::now() + think)).await,
                        None => tokio::time::sleep(think).await,
                    }
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
}

async fn open_loop(
    schedule: impl Iterator<Item = (Duration, RequestSpec)>,
    max_in_flight: u32,
    ctx: RunContext,
) {
    let mut set = JoinSet::new();
    for (at, spec) in schedule {
        let when = ctx.start + at;
        if ctx.deadline.is_some_and(|d| when >= d) {
            break;
        }
        tokio::time::sleep_until(when).await;
        // Reap finished requests so the set stays small on long runs.
        while set.try_join_next().is_some() {}
        if !ctx.may_start() {
            break;
        }
        if set.len() >= max_in_flight as usize {
            // An open-loop generator must not slow down to match the server; dropping the
            // arrival is recorded so the bench never pretends it offered the load.
            ctx.recorder.record_unsent(Sample::failed(
                at.as_secs_f64(),
                Duration::ZERO,
                ErrorKind::ClientSaturated,
                format!("{max_in_flight} requests already in flight (--max-in-flight)"),
            ));
            continue;
        }
        let ctx = ctx.clone();
        set.spawn(async move { ctx.request(spec).await });
    }
    while set.join_next().await.is_some() {}
}

fn think_time(rng: &mut impl Rng, wait: WaitTime) -> Duration {
    if wait.max <= wait.min {
        return wait.min;
    }
    let nanos = rng.random_range(wait.min.as_nanos()..=wait.max.as_nanos());
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn think_time_stays_in_range() {
        let mut rng = StdRng::seed_from_u64(1);
        let wait = WaitTime {
            min: Duration::from_millis(100),
            max: Duration::from_millis(200),
        };
        for _ in 0..1000 {
            let t = think_time(&mut rng, wait);
            assert!(t >= wait.min && t <= wait.max);
        }
        let fixed = WaitTime {
            min: Duration::from_secs(1),
            max: Duration::from_secs(1),
        };
        assert_eq!(think_time(&mut rng, fixed), Duration::from_secs(1));
    }
}

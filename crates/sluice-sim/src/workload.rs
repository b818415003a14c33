//! What the simulated fleet is sent: requests with an arrival time and a token mix, from a trace
//! (parsed by the caller: `sluice simulate --trace` reads the Azure format with the same parser as
//! `sluice bench`) or from a seeded synthetic pattern.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// One request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Arrival {
    /// Seconds from the start of the run.
    pub at: f64,
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Tokens the client asks for (and would get without a `max_tokens` clamp).
    pub output_tokens: u32,
}

/// A synthetic load shape (requests per second over time).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Pattern {
    /// `from` req/s, then `to` req/s from `at` seconds on.
    Step {
        /// Rate before.
        from: f64,
        /// Rate after.
        to: f64,
        /// Seconds.
        at: f64,
    },
    /// Linear from `from` to `to` req/s over the run.
    Ramp {
        /// Rate at the start.
        from: f64,
        /// Rate at the end.
        to: f64,
    },
    /// A sinusoid between `low` and `high` req/s with `period` seconds, starting low.
    Diurnal {
        /// Trough.
        low: f64,
        /// Peak.
        high: f64,
        /// Seconds per cycle.
        period: f64,
    },
    /// `base` req/s with bursts of `peak` req/s lasting `length` seconds every `every` seconds.
    Burst {
        /// Rate between bursts.
        base: f64,
        /// Rate in a burst.
        peak: f64,
        /// Seconds between burst starts.
        every: f64,
        /// Seconds a burst lasts.
        length: f64,
    },
}

impl Pattern {
    /// The rate at `t` seconds of a run of `duration` seconds.
    pub fn rate(&self, t: f64, duration: f64) -> f64 {
        let r = match *self {
            Pattern::Step { from, to, at } => {
                if t < at {
                    from
                } else {
                    to
                }
            }
            Pattern::Ramp { from, to } => from + (to - from) * (t / duration.max(1e-9)).min(1.0),
            Pattern::Diurnal { low, high, period } => {
                let phase = (t / period.max(1e-9)) * std::f64::consts::TAU;
                low + (high - low) * 0.5 * (1.0 - phase.cos())
            }
            Pattern::Burst {
                base,
                peak,
                every,
                length,
            } => {
                if every > 0.0 && t.rem_euclid(every) < length {
                    peak
                } else {
                    base
                }
            }
        };
        r.max(0.0)
    }

    /// The highest rate the pattern reaches.
    pub fn peak(&self) -> f64 {
        match *self {
            Pattern::Step { from, to, .. } | Pattern::Ramp { from, to } => from.max(to),
            Pattern::Diurnal { low, high, .. } => low.max(high),
            Pattern::Burst { base, peak, .. } => base.max(peak),
        }
    }
}

/// Token mix of synthetic requests: uniform within ±`spread` of each mean.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenMix {
    /// Mean prompt tokens.
    pub prompt_tokens: u32,
    /// Mean output tokens.
    pub output_tokens: u32,
    /// Relative spread (0..1).
    pub spread: f64,
}

/// Poisson arrivals following `pattern` for `duration` seconds (thinning against the peak rate),
/// seeded: the same seed gives the same requests.
pub fn synthetic(pattern: &Pattern, mix: &TokenMix, duration: f64, seed: u64) -> Vec<Arrival> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let peak = pattern.peak();
    let mut out = Vec::new();
    if peak <= 0.0 || duration <= 0.0 {
        return out;
    }
    let spread = mix.spread.clamp(0.0, 1.0);
    let draw = |rng: &mut ChaCha8Rng, mean: u32| {
        let f = 1.0 + spread * (2.0 * rng.random::<f64>() - 1.0);
        ((f64::from(mean) * f).round() as u32).max(1)
    };
    let mut t = 0.0;
    loop {
        // Exponential gaps at the peak rate; keep each with probability rate(t)/peak.
        let u: f64 = rng.random::<f64>();
        t += -(1.0 - u).ln() / peak;
        if t >= duration {
            break;
        }
        if rng.random::<f64>() * peak <= pattern.rate(t, duration) {
            out.push(Arrival {
                at: t,
                prompt_tokens: draw(&mut rng, mix.prompt_tokens),
                output_tokens: draw(&mut rng, mix.output_tokens),
            });
        }
    }
    out
}

/// Scales a request stream: `time_scale` multiplies every arrival time (0.5 plays it twice as
/// fast), `rate_scale` keeps the shape and duration but multiplies the rate, by copying each
/// request `floor(rate_scale)` times plus once more with the fractional probability, copies
/// spread over the gap to the next request (seeded).
pub fn scale(arrivals: &[Arrival], time_scale: f64, rate_scale: f64, seed: u64) -> Vec<Arrival> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let mut out = Vec::with_capacity((arrivals.len() as f64 * rate_scale.max(0.0)) as usize + 1);
    let whole = rate_scale.max(0.0).floor() as u32;
    let frac = rate_scale.max(0.0) - f64::from(whole);
    for (i, a) in arrivals.iter().enumerate() {
        let at = a.at * time_scale;
        let next = arrivals.get(i + 1).map_or(at + 1.0, |n| n.at * time_scale);
        let gap = (next - at).max(0.0);
        let copies = whole + u32::from(rng.random::<f64>() < frac);
        for c in 0..copies {
            let offset = if c == 0 {
                0.0
            } else {
                rng.random::<f64>() * gap
            };
            out.push(Arrival {
                at: at + offset,
                ..*a
            });
        }
    }
    out.sort_by(|a, b| a.at.total_cmp(&b.at));
    out
}

/// Mean prompt and output tokens of a stream (for sizing).
pub fn mean_mix(arrivals: &[Arrival]) -> (f64, f64) {
    if arrivals.is_empty() {
        return (0.0, 0.0);
    }
    let n = arrivals.len() as f64;
    let p: f64 = arrivals.iter().map(|a| f64::from(a.prompt_tokens)).sum();
    let o: f64 = arrivals.iter().map(|a| f64::from(a.output_tokens)).sum();
    (p / n, o / n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIX: TokenMix = TokenMix {
        prompt_tokens: 100,
        output_tokens: 50,
        spread: 0.5,
    };

    #[test]
    fn synthetic_is_seeded_and_follows_the_rate() {
        let p = Pattern::Step {
            from: 2.0,
            to: 10.0,
            at: 300.0,
        };
        let a = synthetic(&p, &MIX, 600.0, 7);
        assert_eq!(a, synthetic(&p, &MIX, 600.0, 7));
        assert_ne!(a, synthetic(&p, &MIX, 600.0, 8));
        let before = a.iter().filter(|r| r.at < 300.0).count() as f64 / 300.0;
        let after = a.iter().filter(|r| r.at >= 300.0).count() as f64 / 300.0;
        assert!((1.6..2.4).contains(&before), "{before}");
        assert!((9.0..11.0).contains(&after), "{after}");
        assert!(a.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(a.iter().all(|r| (50..=150).contains(&r.prompt_tokens)));
    }

    #[test]
    fn patterns_have_their_shape() {
        let d = Pattern::Diurnal {
            low: 1.0,
            high: 5.0,
            period: 100.0,
        };
        assert!((d.rate(0.0, 100.0) - 1.0).abs() < 1e-9);
        assert!((d.rate(50.0, 100.0) - 5.0).abs() < 1e-9);
        let b = Pattern::Burst {
            base: 1.0,
            peak: 9.0,
            every: 60.0,
            length: 10.0,
        };
        assert_eq!(
            (b.rate(5.0, 0.0), b.rate(15.0, 0.0), b.rate(65.0, 0.0)),
            (9.0, 1.0, 9.0)
        );
        let r = Pattern::Ramp { from: 0.0, to: 4.0 };
        assert_eq!(r.rate(50.0, 100.0), 2.0);
    }

    #[test]
    fn scaling_multiplies_rate_and_compresses_time() {
        let a = synthetic(
            &Pattern::Step {
                from: 4.0,
                to: 4.0,
                at: 0.0,
            },
            &MIX,
            1000.0,
            1,
        );
        let double = scale(&a, 1.0, 2.0, 1);
        let ratio = double.len() as f64 / a.len() as f64;
        assert!((ratio - 2.0).abs() < 1e-9);
        let more = scale(&a, 1.0, 2.5, 1).len() as f64 / a.len() as f64;
        assert!((2.4..2.6).contains(&more), "{more}");
        let fast = scale(&a, 0.5, 1.0, 1);
        assert!((fast.last().unwrap().at - a.last().unwrap().at * 0.5).abs() < 1e-9);
        assert_eq!(mean_mix(&[]), (0.0, 0.0));
    }
}

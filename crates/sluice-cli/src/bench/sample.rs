//! What one request produced: a timed success or a classified failure. These are the only facts
//! the statistics, reports and plots are computed from.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// Why a request failed. Labels are stable: they appear in tables, JSON and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum ErrorKind {
    /// The server answered 429 (admission full).
    RateLimited,
    /// Any other non-2xx status.
    Http(u16),
    /// The request exceeded `--timeout`.
    Timeout,
    /// No TCP/HTTP connection could be made.
    Connect,
    /// The connection failed after it was made, before a response arrived or while reading a body.
    Transport,
    /// The stream ended before its final event, or carried an `error` event.
    StreamBroken,
    /// A 2xx response whose body was not what the API promises.
    InvalidResponse,
    /// Open-loop arrival dropped because `--max-in-flight` requests were already running.
    ClientSaturated,
}

impl ErrorKind {
    pub fn label(self) -> String {
        match self {
            ErrorKind::RateLimited => "http_429".to_string(),
            ErrorKind::Http(code) => format!("http_{code}"),
            ErrorKind::Timeout => "timeout".to_string(),
            ErrorKind::Connect => "connect".to_string(),
            ErrorKind::Transport => "transport".to_string(),
            ErrorKind::StreamBroken => "stream_broken".to_string(),
            ErrorKind::InvalidResponse => "invalid_response".to_string(),
            ErrorKind::ClientSaturated => "client_saturated".to_string(),
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// Where TTFT/TPOT came from: measured on the wire, or reported by the server in the body
/// (non-streaming `/generate`, where the client cannot see the first token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimingSource {
    Client,
    Server,
}

/// The result of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Seconds since the bench started when the request was sent.
    pub start_s: f64,
    /// Time from sending to the last byte (or to the failure).
    pub latency: Duration,
    /// Time to first token, when observable.
    pub ttft: Option<Duration>,
    /// Generated tokens (completion tokens).
    pub tokens: u64,
    /// Mean inter-token time of this request, when it produced at least two tokens.
    pub tpot: Option<Duration>,
    pub timing_source: TimingSource,
    pub error: Option<ErrorKind>,
    /// What went wrong, for failures (the server's error message when it sent one).
    pub error_detail: Option<String>,
}

impl Sample {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }

    pub fn failed(
        start_s: f64,
        latency: Duration,
        kind: ErrorKind,
        detail: impl Into<String>,
    ) -> Self {
        Sample {
            start_s,
            latency,
            ttft: None,
            tokens: 0,
            tpot: None,
            timing_source: TimingSource::Client,
            error: Some(kind),
            error_detail: Some(detail.into()),
        }
    }
}

/// TPOT of one request: the decode time spread over the inter-token intervals.
pub fn tpot_of(latency: Duration, ttft: Duration, tokens: u64) -> Option<Duration> {
    if tokens < 2 || latency < ttft {
        return None;
    }
    let intervals = u32::try_from(tokens - 1).ok()?;
    Some((latency - ttft) / intervals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_stable() {
        assert_eq!(ErrorKind::RateLimited.label(), "http_429");
        assert_eq!(ErrorKind::Http(503).label(), "http_503");
        assert_eq!(ErrorKind::StreamBroken.label(), "stream_broken");
    }

    #[test]
    fn tpot_spreads_decode_time_over_intervals() {
        let t = tpot_of(Duration::from_millis(1100), Duration::from_millis(100), 11).unwrap();
        assert_eq!(t, Duration::from_millis(100));
        assert_eq!(
            tpot_of(Duration::from_millis(10), Duration::from_millis(5), 1),
            None
        );
    }
}

//! Sends one request to the target endpoint and measures it: latency, TTFT (first token event
//! on the wire for streams, the server's reported timing for `/generate`), tokens, TPOT, or the
//! kind of failure.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use reqwest::{StatusCode, Url};
use serde_json::Value;
use sluice_slo::error_chain;
use tokio::time::Instant;

use super::sample::{ErrorKind, Sample, TimingSource, tpot_of};
use super::stream::{EventKind, StreamFormat, StreamState};
use super::workload::{RequestSpec, Sampling, request_body};
use crate::cli::Endpoint;

/// A configured endpoint to send requests to.
#[derive(Debug, Clone)]
pub struct Target {
    client: reqwest::Client,
    url: Url,
    endpoint: Endpoint,
    model: Option<String>,
    api_key: Option<String>,
    sampling: Sampling,
    timeout: Duration,
}

/// A successful exchange before it becomes a [`Sample`].
struct Measured {
    latency: Duration,
    ttft: Option<Duration>,
    tpot: Option<Duration>,
    tokens: u64,
    source: TimingSource,
}

type Failure = (ErrorKind, String);

impl Target {
    pub fn new(
        client: reqwest::Client,
        base: &Url,
        endpoint: Endpoint,
        model: Option<String>,
        api_key: Option<String>,
        sampling: Sampling,
        timeout: Duration,
    ) -> Self {
        Target {
            client,
            url: join(base, endpoint.path()),
            endpoint,
            model,
            api_key,
            sampling,
            timeout,
        }
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Sends `spec` and never fails: every problem becomes a classified failed sample.
    pub async fn send(&self, spec: &RequestSpec, bench_start: Instant) -> Sample {
        let sent = Instant::now();
        let start_s = sent.duration_since(bench_start).as_secs_f64();
        match tokio::time::timeout(self.timeout, self.exchange(spec, sent)).await {
            Ok(Ok(m)) => Sample {
                start_s,
                latency: m.latency,
                ttft: m.ttft,
                tokens: m.tokens,
                tpot: m.tpot,
                timing_source: m.source,
                error: None,
                error_detail: None,
            },
            Ok(Err((kind, detail))) => Sample::failed(start_s, sent.elapsed(), kind, detail),
            Err(_) => Sample::failed(
                start_s,
                sent.elapsed(),
                ErrorKind::Timeout,
                format!(
                    "no complete response within {}",
                    humantime::format_duration(self.timeout)
                ),
            ),
        }
    }

    async fn exchange(&self, spec: &RequestSpec, sent: Instant) -> Result<Measured, Failure> {
        let body = request_body(self.endpoint, spec, self.model.as_deref(), self.sampling);
        let mut req = self.client.post(self.url.clone()).json(&body);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        if self.endpoint.is_stream() {
            req = req.header(reqwest::header::ACCEPT, "text/event-stream");
        }
        let resp = req.send().await.map_err(send_failure)?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            let kind = if status == StatusCode::TOO_MANY_REQUESTS {
                ErrorKind::RateLimited
            } else {
                ErrorKind::Http(status.as_u16())
            };
            return Err((kind, format!("{status}: {}", server_message(&text))));
        }
        if self.endpoint.is_stream() {
            self.read_stream(resp, sent).await
        } else {
            self.read_whole(resp, sent).await
        }
    }

    async fn read_stream(
        &self,
        resp: reqwest::Response,
        sent: Instant,
    ) -> Result<Measured, Failure> {
        let format = if self.endpoint.is_openai() {
            StreamFormat::OpenAi
        } else {
            StreamFormat::Sluice
        };
        let mut state = StreamState::new(format);
        let mut ttft = None;
        let mut events = resp.bytes_stream().eventsource();
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| {
                (
                    ErrorKind::StreamBroken,
                    format!("stream failed after {} tokens: {e}", state.tokens()),
                )
            })?;
            match state.on_event(&event.event, &event.data) {
                EventKind::Token => {
                    ttft.get_or_insert_with(|| sent.elapsed());
                }
                EventKind::Done => {
                    let latency = sent.elapsed();
                    let tokens = state.tokens();
                    return Ok(Measured {
                        latency,
                        ttft,
                        tpot: ttft.and_then(|t| tpot_of(latency, t, tokens)),
                        tokens,
                        source: TimingSource::Client,
                    });
                }
                EventKind::Error(message) => {
                    return Err((ErrorKind::StreamBroken, format!("error event: {message}")));
                }
                EventKind::Other => {}
            }
        }
        Err((
            ErrorKind::StreamBroken,
            format!(
                "stream ended after {} tokens without a final event",
                state.tokens()
            ),
        ))
    }

    async fn read_whole(
        &self,
        resp: reqwest::Response,
        sent: Instant,
    ) -> Result<Measured, Failure> {
        let bytes = resp.bytes().await.map_err(|e| {
            let kind = if e.is_timeout() {
                ErrorKind::Timeout
            } else {
                ErrorKind::Transport
            };
            (kind, format!("failed to read response body: {e}"))
        })?;
        let latency = sent.elapsed();
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            (
                ErrorKind::InvalidResponse,
                format!("response is not JSON: {e}"),
            )
        })?;
        let invalid = |what: &str| {
            (
                ErrorKind::InvalidResponse,
                format!("response has no {what}"),
            )
        };
        if self.endpoint.is_openai() {
            let tokens = v["usage"]["completion_tokens"]
                .as_u64()
                .ok_or_else(|| invalid("usage.completion_tokens"))?;
            // A whole OpenAI response does not reveal when its first token was produced.
            return Ok(Measured {
                latency,
                ttft: None,
                tpot: None,
                tokens,
                source: TimingSource::Client,
            });
        }
        let tokens = v["generated_tokens"]
            .as_u64()
            .ok_or_else(|| invalid("generated_tokens"))?;
        let secs = |key: &str| {
            v["timings"][key]
                .as_f64()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64)
        };
        // The server's TTFT excludes queueing; the client would have waited for both.
        let ttft = secs("ttft_seconds").map(|t| t + secs("queue_seconds").unwrap_or_default());
        let tpot = if tokens >= 2 {
            secs("tpot_seconds")
        } else {
            None
        };
        Ok(Measured {
            latency,
            ttft,
            tpot,
            tokens,
            source: TimingSource::Server,
        })
    }
}

/// Joins a path onto a base URL that may itself carry a path prefix (e.g. behind an ingress).
pub fn join(base: &Url, path: &str) -> Url {
    let mut prefix = base.path().trim_end_matches('/').to_string();
    prefix.push_str(path);
    let mut url = base.clone();
    url.set_path(&prefix);
    url.set_query(None);
    url
}

fn send_failure(e: reqwest::Error) -> Failure {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_connect() {
        ErrorKind::Connect
    } else {
        ErrorKind::Transport
    };
    (kind, error_chain(&e))
}

/// The `error.message` of a Sluice/OpenAI error body, else the start of the body.
fn server_message(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| text.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_keeps_base_prefix() {
        let base = Url::parse("http://127.0.0.1:8000").unwrap();
        assert_eq!(
            join(&base, "/generate").as_str(),
            "http://127.0.0.1:8000/generate"
        );
        let base = Url::parse("http://h/llm/").unwrap();
        assert_eq!(
            join(&base, "/v1/completions").as_str(),
            "http://h/llm/v1/completions"
        );
    }

    #[test]
    fn server_messages_are_extracted() {
        assert_eq!(
            server_message(r#"{"error":{"type":"overloaded","message":"queue full"}}"#),
            "queue full"
        );
        assert_eq!(server_message("plain"), "plain");
    }
}

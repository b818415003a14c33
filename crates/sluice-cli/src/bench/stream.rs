//! Interpretation of Server-Sent Events from `/generate/stream` (`event: token` … `event: done`)
//! and OpenAI streams (`data: {chunk}` … `data: [DONE]`). Pure: fed one event at a time, it says
//! whether the event carried a token (the client timestamps the first one as TTFT), ended the
//! stream, or broke it.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFormat {
    /// Sluice's native `/generate/stream`.
    Sluice,
    /// OpenAI `/v1/completions` and `/v1/chat/completions` with `stream: true`.
    OpenAi,
}

/// What one event meant.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// It carried generated text.
    Token,
    /// Bookkeeping (role-only chunk, keep-alive, unknown event).
    Other,
    /// The stream completed normally.
    Done,
    /// The server reported an error inside the stream.
    Error(String),
}

/// Running state of one stream.
#[derive(Debug, Clone)]
pub struct StreamState {
    format: StreamFormat,
    token_events: u64,
    usage_tokens: Option<u64>,
}

impl StreamState {
    pub fn new(format: StreamFormat) -> Self {
        StreamState {
            format,
            token_events: 0,
            usage_tokens: None,
        }
    }

    /// Generated tokens: the server's usage count when it sent one, else the token events seen.
    pub fn tokens(&self) -> u64 {
        self.usage_tokens.unwrap_or(self.token_events)
    }

    pub fn on_event(&mut self, event: &str, data: &str) -> EventKind {
        let kind = match self.format {
            StreamFormat::Sluice => self.sluice_event(event, data),
            StreamFormat::OpenAi => self.openai_event(event, data),
        };
        if kind == EventKind::Token {
            self.token_events += 1;
        }
        kind
    }

    fn sluice_event(&mut self, event: &str, data: &str) -> EventKind {
        match event {
            "token" => EventKind::Token,
            "done" => {
                self.usage_tokens = serde_json::from_str::<Value>(data)
                    .ok()
                    .and_then(|v| v["usage"]["completion_tokens"].as_u64());
                EventKind::Done
            }
            "error" => EventKind::Error(error_message(data)),
            _ => EventKind::Other,
        }
    }

    fn openai_event(&mut self, event: &str, data: &str) -> EventKind {
        if event == "error" {
            return EventKind::Error(error_message(data));
        }
        let data = data.trim();
        if data == "[DONE]" {
            return EventKind::Done;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            return EventKind::Error(format!("unparseable stream chunk {data:?}"));
        };
        if chunk.get("error").is_some() {
            return EventKind::Error(error_message(data));
        }
        if let Some(n) = chunk["usage"]["completion_tokens"].as_u64() {
            self.usage_tokens = Some(n);
        }
        let choice = &chunk["choices"][0];
        let text = choice["text"]
            .as_str()
            .or_else(|| choice["delta"]["content"].as_str());
        // A token may decode to "" (part of a multi-byte character); only the chat role chunk
        // and the final finish_reason chunk carry empty text without being a token.
        let role_only = choice["delta"].get("role").is_some();
        let finishing = !choice["finish_reason"].is_null();
        match text {
            Some(t) if !t.is_empty() => EventKind::Token,
            Some(_) if !role_only && !finishing => EventKind::Token,
            _ => EventKind::Other,
        }
    }
}

fn error_message(data: &str) -> String {
    serde_json::from_str::<Value>(data)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| data.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sluice_stream_counts_tokens_and_prefers_usage() {
        let mut s = StreamState::new(StreamFormat::Sluice);
        let tok = r#"{"index":0,"token":{"id":5,"text":"hi"}}"#;
        assert_eq!(s.on_event("token", tok), EventKind::Token);
        assert_eq!(s.on_event("token", tok), EventKind::Token);
        assert_eq!(s.tokens(), 2);
        let done = r#"{"finish_reason":"length","usage":{"prompt_tokens":3,"completion_tokens":2},"timings":{}}"#;
        assert_eq!(s.on_event("done", done), EventKind::Done);
        assert_eq!(s.tokens(), 2);
    }

    #[test]
    fn sluice_error_event_breaks_the_stream() {
        let mut s = StreamState::new(StreamFormat::Sluice);
        let e = r#"{"error":{"type":"internal","message":"engine died"}}"#;
        assert_eq!(
            s.on_event("error", e),
            EventKind::Error("engine died".into())
        );
    }

    #[test]
    fn openai_chat_role_chunk_is_not_a_token() {
        let mut s = StreamState::new(StreamFormat::OpenAi);
        let role = r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
        let partial = r#"{"choices":[{"index":0,"delta":{"content":""},"finish_reason":null}]}"#;
        let last = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#;
        let content = r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#;
        assert_eq!(s.on_event("message", role), EventKind::Other);
        assert_eq!(s.on_event("message", content), EventKind::Token);
        assert_eq!(s.on_event("message", partial), EventKind::Token);
        assert_eq!(s.on_event("message", last), EventKind::Other);
        assert_eq!(s.on_event("message", "[DONE]"), EventKind::Done);
        assert_eq!(s.tokens(), 2);
    }

    #[test]
    fn openai_completion_text_and_usage() {
        let mut s = StreamState::new(StreamFormat::OpenAi);
        let c = r#"{"choices":[{"index":0,"text":" a"}]}"#;
        assert_eq!(s.on_event("message", c), EventKind::Token);
        let last = r#"{"choices":[{"index":0,"text":"","finish_reason":"length"}]}"#;
        assert_eq!(s.on_event("message", last), EventKind::Other);
        let usage = r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":7}}"#;
        assert_eq!(s.on_event("message", usage), EventKind::Other);
        assert_eq!(s.tokens(), 7);
        assert!(matches!(
            s.on_event("message", "{not json"),
            EventKind::Error(_)
        ));
    }
}

//! Error text for people: an error followed by its causes, once each.
//!
//! HTTP and TLS clients put the useful part in a source ("error sending request" hides "connection
//! refused" or the certificate's reason), so every place that reports a client error — the
//! Prometheus source, the operator's settings push, the CLI's bench and analyze — formats it here.

/// `e` and each of its sources, joined by ": "; a cause whose text the message already contains
/// (many errors repeat their source in their own message) is not repeated.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("failed to send request")]
        Send(#[source] Inner),
        #[error("failed to read: {0}")]
        Repeats(#[source] Inner),
    }

    #[derive(Debug, thiserror::Error)]
    #[error("connection refused")]
    struct Inner;

    #[test]
    fn causes_follow_once_each() {
        assert_eq!(
            error_chain(&Outer::Send(Inner)),
            "failed to send request: connection refused"
        );
        assert_eq!(
            error_chain(&Outer::Repeats(Inner)),
            "failed to read: connection refused"
        );
    }
}

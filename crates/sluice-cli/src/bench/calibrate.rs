//! Prompt calibration for trace replay. A trace gives each request's prompt in *tokens*
//! (`ContextTokens`), while bench writes prompts in common words; what a word costs depends on
//! the served model's tokenizer (about one token on Llama-family tokenizers, about 2.4 on the
//! built-in tiny model's 512-entry BPE). Two probes of [`SHORT`] and [`LONG`] words with
//! `max_tokens: 1` read the server's own prompt token count; the slope between them is tokens
//! per word, with any fixed overhead (a chat template, BOS) cancelled out.

use rand::SeedableRng;
use rand::rngs::StdRng;
use reqwest::Url;
use serde_json::Value;

use super::client::join;
use super::workload::{RequestSpec, Sampling, request_body};
use crate::cli::Endpoint;
use sluice_slo::error_chain;

const SHORT: u32 = 16;
const LONG: u32 = 80;

/// The non-streaming twin of `endpoint`: its answer carries the token counts in one body.
fn plain(endpoint: Endpoint) -> Endpoint {
    match endpoint {
        Endpoint::Generate | Endpoint::GenerateStream => Endpoint::Generate,
        Endpoint::Completions | Endpoint::CompletionsStream => Endpoint::Completions,
        Endpoint::Chat | Endpoint::ChatStream => Endpoint::Chat,
    }
}

/// The prompt token count in an answer: `prompt_tokens` (native) or `usage.prompt_tokens`
/// (OpenAI).
pub fn prompt_tokens(answer: &Value) -> Option<f64> {
    answer["prompt_tokens"]
        .as_f64()
        .or_else(|| answer["usage"]["prompt_tokens"].as_f64())
}

/// Words per token from the two probes' token counts; None when the counts cannot be a slope.
pub fn words_per_token(short_tokens: f64, long_tokens: f64) -> Option<f64> {
    let tokens = long_tokens - short_tokens;
    (tokens > 0.0 && tokens.is_finite()).then(|| f64::from(LONG - SHORT) / tokens)
}

/// Everything a probe needs to reach the target.
pub struct Probe<'a> {
    pub client: &'a reqwest::Client,
    pub base: &'a Url,
    pub endpoint: Endpoint,
    pub model: Option<&'a str>,
    pub api_key: Option<&'a str>,
}

impl Probe<'_> {
    async fn tokens(&self, words: u32) -> Result<f64, String> {
        let mut rng = StdRng::seed_from_u64(u64::from(words));
        let spec = RequestSpec::synthetic(&mut rng, words, 1);
        let endpoint = plain(self.endpoint);
        let body = request_body(
            endpoint,
            &spec,
            self.model,
            Sampling {
                temperature: 0.0,
                ignore_eos: false,
            },
        );
        let url = join(self.base, endpoint.path());
        let mut req = self.client.post(url.clone()).json(&body);
        if let Some(key) = self.api_key {
            req = req.bearer_auth(key);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{url}: {}", error_chain(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("{url} answered {status}"));
        }
        let answer: Value = resp
            .json()
            .await
            .map_err(|e| format!("{url}: {}", error_chain(&e)))?;
        prompt_tokens(&answer).ok_or_else(|| format!("{url} reported no prompt token count"))
    }

    /// Measures words per token, or says why it could not.
    pub async fn words_per_token(&self) -> Result<f64, String> {
        let short = self.tokens(SHORT).await?;
        let long = self.tokens(LONG).await?;
        words_per_token(short, long).ok_or_else(|| {
            format!("{SHORT} words gave {short} tokens and {LONG} words {long}: no slope")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_come_from_either_api() {
        assert_eq!(prompt_tokens(&json!({"prompt_tokens": 12})), Some(12.0));
        assert_eq!(
            prompt_tokens(&json!({"usage": {"prompt_tokens": 30, "completion_tokens": 1}})),
            Some(30.0)
        );
        assert_eq!(prompt_tokens(&json!({"text": "x"})), None);
    }

    #[test]
    fn the_slope_cancels_a_fixed_overhead() {
        // A chat template adds 10 tokens; each word is 2.4 tokens.
        let wpt = words_per_token(10.0 + 16.0 * 2.4, 10.0 + 80.0 * 2.4).unwrap();
        assert!((wpt - 1.0 / 2.4).abs() < 1e-9, "{wpt}");
        assert_eq!(words_per_token(20.0, 20.0), None);
        assert_eq!(words_per_token(20.0, 10.0), None);
    }
}

//! What each request asks for: synthetic prompts of roughly a given token count and the JSON
//! body each endpoint expects.

use rand::Rng;
use serde_json::{Value, json};

use crate::cli::Endpoint;

/// Short, common words: most tokenizers encode each as one token, so a prompt of N words is
/// roughly N tokens on any model.
const WORDS: &[&str] = &[
    "the", "a", "of", "and", "to", "in", "is", "it", "that", "was", "for", "on", "are", "as",
    "with", "his", "they", "at", "be", "this", "from", "have", "or", "by", "one", "had", "not",
    "but", "what", "all", "were", "when", "we", "there", "can", "an", "your", "which", "their",
    "said", "if", "do", "will", "each", "about", "how", "up", "out", "them", "then", "she", "many",
    "some", "so", "these", "would", "other", "into", "has", "more", "her", "two", "like", "him",
    "see", "time", "could", "no", "make", "than", "first", "been", "its", "who", "now", "people",
    "my", "made", "over", "did", "down", "only", "way", "find", "use", "may", "water", "long",
    "little", "very", "after", "words", "called", "just", "where", "most", "know",
];

/// One request to send.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestSpec {
    pub prompt: String,
    pub max_tokens: u32,
}

impl RequestSpec {
    /// A random prompt of about `prompt_tokens` tokens, so requests do not share a cacheable prefix.
    pub fn synthetic(rng: &mut impl Rng, prompt_tokens: u32, max_tokens: u32) -> Self {
        let mut prompt = String::with_capacity(prompt_tokens as usize * 5);
        for i in 0..prompt_tokens {
            if i > 0 {
                prompt.push(' ');
            }
            prompt.push_str(WORDS[rng.random_range(0..WORDS.len())]);
        }
        RequestSpec { prompt, max_tokens }
    }
}

/// How every request samples: the temperature, and whether generation runs to `max_tokens`
/// past the end-of-sequence token (a trace replay reproduces each row's generated length).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    pub temperature: f64,
    pub ignore_eos: bool,
}

/// The JSON body for `endpoint`.
pub fn request_body(
    endpoint: Endpoint,
    spec: &RequestSpec,
    model: Option<&str>,
    sampling: Sampling,
) -> Value {
    let temperature = sampling.temperature;
    let mut body = match endpoint {
        Endpoint::Generate | Endpoint::GenerateStream => json!({
            "prompt": spec.prompt,
            "max_tokens": spec.max_tokens,
            "temperature": temperature,
        }),
        Endpoint::Completions | Endpoint::CompletionsStream => json!({
            "prompt": spec.prompt,
            "max_tokens": spec.max_tokens,
            "temperature": temperature,
            "stream": endpoint.is_stream(),
        }),
        Endpoint::Chat | Endpoint::ChatStream => json!({
            "messages": [{"role": "user", "content": spec.prompt}],
            "max_tokens": spec.max_tokens,
            "temperature": temperature,
            "stream": endpoint.is_stream(),
        }),
    };
    if endpoint.is_openai() && endpoint.is_stream() {
        // The usage chunk gives the exact token count; chunks alone undercount when the
        // server holds back tokens that end mid-character.
        body["stream_options"] = json!({"include_usage": true});
    }
    if let (true, Some(model)) = (endpoint.is_openai(), model) {
        body["model"] = json!(model);
    }
    if sampling.ignore_eos {
        body["ignore_eos"] = json!(true);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn synthetic_prompts_have_the_requested_word_count() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let spec = RequestSpec::synthetic(&mut rng, 32, 16);
        assert_eq!(spec.prompt.split(' ').count(), 32);
        assert_eq!(spec.max_tokens, 16);
        let other = RequestSpec::synthetic(&mut rng, 32, 16);
        assert_ne!(spec.prompt, other.prompt);
    }

    #[test]
    fn bodies_follow_each_api() {
        let spec = RequestSpec {
            prompt: "hi there".into(),
            max_tokens: 8,
        };
        let greedy = Sampling {
            temperature: 0.0,
            ignore_eos: false,
        };
        assert_eq!(
            request_body(Endpoint::GenerateStream, &spec, Some("m"), greedy),
            json!({"prompt": "hi there", "max_tokens": 8, "temperature": 0.0})
        );
        assert_eq!(
            request_body(
                Endpoint::CompletionsStream,
                &spec,
                Some("m"),
                Sampling {
                    temperature: 0.5,
                    ignore_eos: false
                }
            ),
            json!({"model": "m", "prompt": "hi there", "max_tokens": 8, "temperature": 0.5, "stream": true,
                   "stream_options": {"include_usage": true}})
        );
        assert_eq!(
            request_body(Endpoint::Chat, &spec, None, greedy),
            json!({"messages": [{"role": "user", "content": "hi there"}], "max_tokens": 8, "temperature": 0.0, "stream": false})
        );
        let to_the_end = Sampling {
            temperature: 0.0,
            ignore_eos: true,
        };
        assert_eq!(
            request_body(Endpoint::Completions, &spec, None, to_the_end),
            json!({"prompt": "hi there", "max_tokens": 8, "temperature": 0.0, "stream": false, "ignore_eos": true})
        );
    }
}

//! One running sequence: its sampler, the text produced so far, and stop handling.
//!
//! Text that might be the start of a stop sequence is held back until it is known not to be, so
//! the concatenated stream equals the non-streamed text exactly.

use std::time::Instant;

use candle_core::Tensor;
use candle_transformers::generation::{LogitsProcessor, Sampling};
use tokenizers::Tokenizer;

use super::{FinishReason, GenerationParams};
use crate::model::tokenizer::IncrementalDecoder;

pub(super) struct Sequence {
    sampler: LogitsProcessor,
    decoder: IncrementalDecoder,
    text: String,
    emitted: usize,
    pub generated: Vec<u32>,
    pub prefilled: bool,
    pub first_token_at: Option<Instant>,
    pub last_token_at: Option<Instant>,
}

/// What one sampled token produced.
pub(super) struct TokenOutcome {
    pub id: u32,
    /// Text safe to send now (may be empty).
    pub text: String,
    pub finish: Option<FinishReason>,
}

impl Sequence {
    pub fn new(params: &GenerationParams) -> Self {
        let sampling = if params.temperature <= 0.0 {
            Sampling::ArgMax
        } else {
            let t = params.temperature;
            match (params.top_k, params.top_p) {
                (Some(k), Some(p)) if p < 1.0 => Sampling::TopKThenTopP {
                    k,
                    p,
                    temperature: t,
                },
                (Some(k), _) => Sampling::TopK { k, temperature: t },
                (None, Some(p)) if p < 1.0 => Sampling::TopP { p, temperature: t },
                _ => Sampling::All { temperature: t },
            }
        };
        Self {
            sampler: LogitsProcessor::from_sampling(params.seed, sampling),
            decoder: IncrementalDecoder::default(),
            text: String::new(),
            emitted: 0,
            generated: Vec::new(),
            prefilled: false,
            first_token_at: None,
            last_token_at: None,
        }
    }

    /// Samples the next token from this sequence's logits row and applies stop rules.
    pub fn advance(
        &mut self,
        logits: &Tensor,
        tokenizer: &Tokenizer,
        params: &GenerationParams,
        eos: &[u32],
        context_left: usize,
    ) -> candle_core::Result<TokenOutcome> {
        let id = self.sampler.sample(logits)?;
        self.generated.push(id);
        let is_eos = !params.ignore_eos && eos.contains(&id);
        let mut finish = None;
        if is_eos {
            finish = Some(FinishReason::Eos);
        } else {
            self.text.push_str(&self.decoder.push(tokenizer, id));
            if let Some(pos) = find_stop(&self.text, &params.stop, self.emitted) {
                self.text.truncate(pos);
                finish = Some(FinishReason::Stop);
            }
        }
        if finish.is_none() && (self.generated.len() >= params.max_tokens || context_left == 0) {
            finish = Some(FinishReason::Length);
        }
        let safe_end = if finish.is_some() {
            self.text.len()
        } else {
            self.text.len() - held_back(&self.text, &params.stop)
        };
        let text = self.text[self.emitted..safe_end].to_string();
        self.emitted = safe_end;
        Ok(TokenOutcome { id, text, finish })
    }
}

/// Byte offset of the earliest stop sequence that ends after `from` (earlier text was already
/// sent, so a match must involve new text).
fn find_stop(text: &str, stops: &[String], from: usize) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let start = from.saturating_sub(s.len() - 1);
            let start = (start..=from).find(|&i| text.is_char_boundary(i))?;
            text[start..].find(s.as_str()).map(|p| p + start)
        })
        .min()
}

/// Length of the longest suffix of `text` that is a proper prefix of some stop sequence.
fn held_back(text: &str, stops: &[String]) -> usize {
    stops
        .iter()
        .flat_map(|s| {
            (1..s.len())
                .rev()
                .map(move |k| &s[..k])
                .filter(|p| s.is_char_boundary(p.len()))
        })
        .filter(|p| text.ends_with(p))
        .map(str::len)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_matches_include_text_straddling_the_emitted_boundary() {
        let stops = vec!["END".to_string()];
        assert_eq!(find_stop("abcEN", &stops, 3), None);
        assert_eq!(find_stop("abcEND", &stops, 4), Some(3));
        assert_eq!(find_stop("ENDabc END", &stops, 6), Some(7));
        assert_eq!(find_stop("ü END", &["END".into()], 1), Some(3));
    }

    #[test]
    fn held_back_keeps_possible_stop_prefixes() {
        let stops = vec!["\n\nUser:".to_string(), "###".to_string()];
        assert_eq!(held_back("hello\n", &stops), 1);
        assert_eq!(held_back("hello\n\nUs", &stops), 4);
        assert_eq!(held_back("hello ##", &stops), 2);
        assert_eq!(held_back("hello", &stops), 0);
        assert_eq!(held_back("héllo", &[]), 0);
    }
}

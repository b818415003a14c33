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

/// Temperatures below this sample greedily: dividing logits by a smaller one overflows f32 to
/// infinity and the softmax to NaN (vLLM uses the same threshold).
const GREEDY_BELOW_TEMPERATURE: f64 = 1e-5;

pub(super) struct Sequence {
    sampler: LogitsProcessor,
    decoder: IncrementalDecoder,
    text: StopText,
    pub generated: Vec<u32>,
    /// Prompt tokens already in the KV cache: a prompt is prefilled in chunks.
    pub prefill_pos: usize,
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
        let sampling = if params.temperature < GREEDY_BELOW_TEMPERATURE {
            Sampling::ArgMax
        } else {
            let t = params.temperature;
            // candle samples in f32: a `top_p` that rounds to 0 there would zero every
            // probability and fail the draw. The smallest positive f32 keeps the top token,
            // which is what any `top_p` that small means.
            let top_p = params.top_p.map(|p| p.max(f64::from(f32::MIN_POSITIVE)));
            match (params.top_k, top_p) {
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
            text: StopText::default(),
            generated: Vec::new(),
            prefill_pos: 0,
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
        } else if self
            .text
            .push(&self.decoder.push(tokenizer, id), &params.stop)
        {
            finish = Some(FinishReason::Stop);
        }
        if finish.is_none() && (self.generated.len() >= params.max_tokens || context_left == 0) {
            finish = Some(FinishReason::Length);
        }
        let text = self.text.take(finish.is_some(), &params.stop);
        Ok(TokenOutcome { id, text, finish })
    }
}

/// The text a sequence has produced and how much of it was sent: the stop-sequence rules, apart
/// from sampling so they can be tested (and fuzzed) on arbitrary text and token boundaries.
#[derive(Debug, Default, Clone)]
pub struct StopText {
    text: String,
    emitted: usize,
}

impl StopText {
    /// Appends one token's text; true when a stop sequence now matches, in which case the text
    /// is cut where the match starts (the stop sequence itself is never sent).
    pub fn push(&mut self, piece: &str, stops: &[String]) -> bool {
        self.text.push_str(piece);
        match find_stop(&self.text, stops, self.emitted) {
            Some(pos) => {
                self.text.truncate(pos);
                true
            }
            None => false,
        }
    }

    /// The text safe to send now: everything new once the sequence is finished, else everything
    /// except a suffix that could still become a stop sequence.
    pub fn take(&mut self, finished: bool, stops: &[String]) -> String {
        let safe_end = if finished {
            self.text.len()
        } else {
            self.text.len() - held_back(&self.text, stops)
        };
        let out = self.text[self.emitted..safe_end].to_string();
        self.emitted = safe_end;
        out
    }

    /// Everything produced so far (after any cut at a stop sequence).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Byte offset of the earliest stop sequence that ends after `from` (earlier text was already
/// sent, so a match must involve new text).
pub fn find_stop(text: &str, stops: &[String], from: usize) -> Option<usize> {
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
///
/// Only prefixes that end on a character boundary of the stop sequence are candidates: the text
/// is always whole characters, and slicing a stop sequence inside a multi-byte character would
/// panic.
pub fn held_back(text: &str, stops: &[String]) -> usize {
    stops
        .iter()
        .flat_map(|s| {
            (1..s.len())
                .rev()
                .filter(|&k| s.is_char_boundary(k))
                .map(move |k| &s[..k])
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

    /// Streams `pieces` through a `StopText`; returns what was sent and whether it stopped.
    fn stream(pieces: &[&str], stops: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut st = StopText::default();
        let mut sent = String::new();
        for (i, p) in pieces.iter().enumerate() {
            let stopped = st.push(p, &stops);
            sent.push_str(&st.take(stopped || i + 1 == pieces.len(), &stops));
            if stopped {
                return (sent, true);
            }
        }
        (sent, false)
    }

    #[test]
    fn stop_text_sends_exactly_the_text_before_the_first_completed_stop() {
        assert_eq!(
            stream(&["hel", "lo E", "ND x"], &["END"]),
            ("hello ".into(), true)
        );
        // The stop completed first wins, even if a longer one would have started earlier.
        assert_eq!(stream(&["a", "b", "c"], &["abc", "b"]), ("a".into(), true));
        assert_eq!(stream(&["ü", "é", "x"], &["éx"]), ("ü".into(), true));
        // A held-back prefix that never completes is sent at the end.
        assert_eq!(stream(&["ab", "E", "N"], &["END"]), ("abEN".into(), false));
        assert_eq!(stream(&["no stops"], &[]), ("no stops".into(), false));
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

    /// Regression: a stop sequence with a multi-byte character panicked the engine thread
    /// (`"stop": ["é"]` took the whole server down).
    #[test]
    fn non_ascii_stop_sequences_are_held_back_and_matched_without_panicking() {
        let stops = vec!["é".to_string(), "日本語".to_string(), "a😀b".to_string()];
        assert_eq!(held_back("hello", &stops), 0);
        assert_eq!(held_back("hello 日本", &stops), "日本".len());
        assert_eq!(held_back("xa😀", &stops), "a😀".len());
        assert_eq!(find_stop("café", &stops, 0), Some(3));
        assert_eq!(find_stop("x日本語y", &stops, 4), Some(1));
    }

    /// Regression: a `top_p` below ~1e-45 rounded to 0 in candle's f32 sampler and failed the
    /// request with a 500; a tiny temperature overflowed the logits to NaN the same way.
    #[test]
    fn extreme_sampling_parameters_always_draw_a_token() {
        let tokenizer = crate::model::tiny::tokenizer().unwrap();
        let vocab = tokenizer.get_vocab_size(true);
        let mut row: Vec<f32> = (0..vocab).map(|i| ((i * 37) % 101) as f32 / 7.0).collect();
        row[3] = f32::NEG_INFINITY;
        row[5] = 80.0;
        let logits = Tensor::new(row.as_slice(), &candle_core::Device::Cpu).unwrap();
        let top_ps = [
            None,
            Some(1e-300),
            Some(1e-46),
            Some(1e-40),
            Some(0.5),
            Some(1.0),
        ];
        let temperatures = [0.0, 1e-300, 1e-6, 1e-5, 0.7, 100.0];
        let top_ks = [None, Some(1), Some(usize::MAX)];
        for top_p in top_ps {
            for temperature in temperatures {
                for top_k in top_ks {
                    let params = GenerationParams {
                        max_tokens: 4,
                        temperature,
                        top_p,
                        top_k,
                        seed: 7,
                        stop: vec![],
                        ignore_eos: true,
                    };
                    let mut seq = Sequence::new(&params);
                    let out = seq.advance(&logits, &tokenizer, &params, &[], 100);
                    assert!(
                        out.is_ok(),
                        "top_p {top_p:?}, temperature {temperature}, top_k {top_k:?}: {:?}",
                        out.err()
                    );
                }
            }
        }
    }

    /// Every way of splitting a text into increments (the tokens a decoder emits) gives the same
    /// streamed text as the whole, and never panics, for stop sequences over multi-byte text.
    #[test]
    fn streaming_over_any_split_equals_the_whole_text() {
        let texts = [
            "héllo wörld é end",
            "日本語のテキスト",
            "a😀b😀c",
            "ééé",
            "plain",
        ];
        let stops: Vec<Vec<String>> = vec![
            vec!["é".into()],
            vec!["ö".into(), "語の".into()],
            vec!["😀c".into(), "end".into()],
            vec!["éé".into()],
            vec![],
        ];
        for text in texts {
            let chars: Vec<(usize, char)> = text.char_indices().collect();
            for stop in &stops {
                let expected = match find_stop(text, stop, 0) {
                    Some(p) => &text[..p],
                    None => text,
                };
                // Split after every k-th character, for k = 1..=3.
                for k in 1..=3 {
                    let mut whole = String::new();
                    let mut emitted = 0;
                    let mut out = String::new();
                    let mut done = false;
                    for chunk in chars.chunks(k) {
                        for (_, c) in chunk {
                            whole.push(*c);
                        }
                        if let Some(pos) = find_stop(&whole, stop, emitted) {
                            whole.truncate(pos);
                            out.push_str(&whole[emitted..]);
                            done = true;
                            break;
                        }
                        let safe = whole.len() - held_back(&whole, stop);
                        out.push_str(&whole[emitted..safe]);
                        emitted = safe;
                    }
                    if !done {
                        out.push_str(&whole[emitted..]);
                    }
                    assert_eq!(out, expected, "text {text:?}, stops {stop:?}, split {k}");
                }
            }
        }
    }
}

//! Tokenizers: loading `tokenizer.json`, rebuilding a byte-level BPE or SentencePiece tokenizer
//! from GGUF metadata (and writing the byte-level one's), and incremental detokenization for
//! streaming.

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use tokenizers::Tokenizer;
use tokenizers::models::bpe::BPE;

use super::ModelError;

mod spm;

pub fn load_file(path: &Path) -> Result<Tokenizer, ModelError> {
    Tokenizer::from_file(path).map_err(|e| ModelError::invalid(path, e))
}

/// Rebuilds the tokenizer from `tokenizer.ggml.*` metadata, as llama.cpp reads it: `gpt2`
/// (byte-level BPE with merges) or `llama` (SentencePiece BPE with scores, see [`spm`]).
pub fn from_gguf(content: &gguf_file::Content, path: &Path) -> Result<Tokenizer, ModelError> {
    let md = &content.metadata;
    let model = md
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .ok_or_else(|| {
            ModelError::invalid(
                path,
                "no tokenizer.json beside it and no tokenizer.ggml.model metadata",
            )
        })?;
    if model == "llama" {
        return spm::from_gguf(content, path);
    }
    if model != "gpt2" {
        return Err(ModelError::invalid(
            path,
            format!(
                "GGUF tokenizer model {model:?} cannot be rebuilt from metadata (gpt2 and llama can); put its tokenizer.json beside the file"
            ),
        ));
    }
    let strings = |key: &str| strings(md, key, path);
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?;
    let token_types: Vec<i32> = md
        .get("tokenizer.ggml.token_type")
        .and_then(|v| v.to_vec().ok())
        .map(|v| v.iter().filter_map(|t| t.to_i32().ok()).collect())
        .unwrap_or_default();
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let merges: Vec<(String, String)> = merges
        .iter()
        .filter_map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .collect();
    // tokenizers' BPE builder indexes a buffer as long as the longest token with each merge's
    // joined pieces before it checks the pieces exist, so a merge longer than every token (a
    // crafted file) panics inside it (found by the gguf_header fuzz target). Same rule, first.
    if let Some((a, b)) = merges.iter().find(|(a, b)| {
        !(vocab.contains_key(a) && vocab.contains_key(b) && vocab.contains_key(&format!("{a}{b}")))
    }) {
        return Err(ModelError::invalid(
            path,
            format!("tokenizer.ggml.merges: merge {a:?} + {b:?} is not in tokenizer.ggml.tokens"),
        ));
    }
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| ModelError::invalid(path, e))?;
    let mut tok = Tokenizer::new(bpe);
    let pre = md
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        // A file without one is split as llama.cpp splits it (its `default`).
        .map_or("default", String::as_str);
    match pre_tokenizer_regex(pre) {
        Ok(None) => byte_level(&mut tok),
        Ok(Some(regexes)) => split_byte_level(&mut tok, regexes)
            .map_err(|e| ModelError::invalid(path, format!("tokenizer.ggml.pre {pre:?}: {e}")))?,
        Err(known) => {
            return Err(ModelError::invalid(
                path,
                format!(
                    "tokenizer.ggml.pre {pre:?} is not a pre-tokenizer this server knows ({known}); put the model's tokenizer.json beside the file"
                ),
            ));
        }
    }
    // Control tokens (type 3) are matched whole in the input and skipped when decoding.
    let specials: Vec<tokenizers::AddedToken> = tokens
        .iter()
        .zip(token_types.iter())
        .filter(|(_, ty)| **ty == 3)
        .map(|(t, _)| tokenizers::AddedToken::from(t.clone(), true))
        .collect();
    tok.add_special_tokens(specials)
        .map_err(|e| ModelError::invalid(path, e))?;
    Ok(tok)
}

/// A string array from the metadata, with a clear error when it is missing or not strings.
fn strings(
    md: &std::collections::HashMap<String, Value>,
    key: &str,
    path: &Path,
) -> Result<Vec<String>, ModelError> {
    md.get(key)
        .ok_or_else(|| ModelError::invalid(path, format!("missing metadata {key}")))?
        .to_vec()
        .map_err(|e| ModelError::invalid(path, format!("{key}: {e}")))?
        .iter()
        .map(|v| {
            v.to_string()
                .cloned()
                .map_err(|e| ModelError::invalid(path, format!("{key}: {e}")))
        })
        .collect()
}

/// Llama 3's split (llama.cpp's `llama-bpe`): contractions in any case, a letter run with at
/// most one leading non-letter, digits in threes, punctuation runs with trailing newlines.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split: Llama 3's with every digit on its own.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// llama.cpp's `default` pre-tokenizer: four regexes applied one after another, each splitting
/// the pieces the one before left (punctuation runs, then GPT-2's split, then digit runs, then
/// digits in threes).
const DEFAULT_SPLITS: &[&str] = &[
    r"[\p{P}\$\+<=>\^~\|]+",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
    r"\p{N}+",
    r"[0-9][0-9][0-9]",
];

/// The split regexes of a `tokenizer.ggml.pre` value (llama.cpp's names), applied in order:
/// `None` for GPT-2's own (the byte-level pre-tokenizer's built-in regex), `Err` with the known
/// names for one this server does not know — refused rather than tokenized the wrong way
/// without a word.
pub fn pre_tokenizer_regex(pre: &str) -> Result<Option<&'static [&'static str]>, &'static str> {
    match pre {
        "gpt-2" | "gpt2" => Ok(None),
        "default" => Ok(Some(DEFAULT_SPLITS)),
        "llama3" | "llama-v3" | "llama-bpe" | "smaug-bpe" => Ok(Some(&[LLAMA3_SPLIT])),
        "qwen2" => Ok(Some(&[QWEN2_SPLIT])),
        _ => Err("default, gpt-2, llama-bpe, llama3, smaug-bpe, qwen2"),
    }
}

/// Regex splits in order, then byte-level mapping without GPT-2's regex, and the byte-level
/// decoder: how Llama 3 and Qwen2 tokenizers (and llama.cpp's `default`) pre-tokenize.
fn split_byte_level(tok: &mut Tokenizer, regexes: &[&str]) -> tokenizers::Result<()> {
    use tokenizers::SplitDelimiterBehavior;
    use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::pre_tokenizers::sequence::Sequence;
    use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
    let mut steps = Vec::new();
    for regex in regexes {
        let split = Split::new(
            SplitPattern::Regex((*regex).into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )?;
        steps.push(split.into());
    }
    steps.push(ByteLevel::new(false, true, false).into());
    tok.with_pre_tokenizer(Some(Sequence::new(steps)));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    Ok(())
}

/// Byte-level pre-tokenizer and decoder, as GPT-2 and llama 3 use.
pub fn byte_level(tok: &mut Tokenizer) {
    use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
}

/// `tokenizer.ggml.*` metadata for a byte-level BPE tokenizer (GPT-2's split, BOS first), for
/// writing GGUF files. The token list is padded to `vocab_size` with unused tokens (llama.cpp's
/// type 5) when the model's embedding has more rows than the tokenizer has tokens: llama.cpp
/// refuses a file whose token list and embedding disagree.
pub fn gguf_metadata(tok: &Tokenizer, vocab_size: usize) -> Result<Vec<(String, Value)>, String> {
    let json: serde_json::Value =
        serde_json::from_str(&tok.to_string(false).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    let model = &json["model"];
    let vocab = model["vocab"]
        .as_object()
        .ok_or("tokenizer has no BPE vocab")?;
    let mut tokens = vec![String::new(); tok.get_vocab_size(true)];
    for (t, id) in vocab {
        let id = id.as_u64().ok_or("vocab id is not a number")? as usize;
        if id < tokens.len() {
            tokens[id] = t.clone();
        }
    }
    let special: std::collections::HashSet<u32> = tok
        .get_added_tokens_decoder()
        .iter()
        .filter(|(_, t)| t.special)
        .map(|(id, _)| *id)
        .collect();
    for (id, t) in tok.get_added_tokens_decoder() {
        if (id as usize) < tokens.len() {
            tokens[id as usize] = t.content.clone();
        }
    }
    let merges: Vec<String> = model["merges"]
        .as_array()
        .ok_or("tokenizer has no BPE merges")?
        .iter()
        .filter_map(|m| match m {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(p) => {
                Some(format!("{} {}", p.first()?.as_str()?, p.get(1)?.as_str()?))
            }
            _ => None,
        })
        .collect();
    let real = tokens.len();
    if vocab_size < real {
        return Err(format!(
            "the tokenizer has {real} tokens, more than the model's {vocab_size}"
        ));
    }
    tokens.extend((real..vocab_size).map(|i| format!("<unused{i}>")));
    let types = (0..tokens.len() as u32)
        .map(|i| {
            Value::I32(if special.contains(&i) {
                3
            } else if i as usize >= real {
                5
            } else {
                1
            })
        })
        .collect();
    let strs = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
    let mut md = vec![
        (
            "tokenizer.ggml.model".to_string(),
            Value::String("gpt2".into()),
        ),
        ("tokenizer.ggml.tokens".to_string(), strs(tokens)),
        ("tokenizer.ggml.merges".to_string(), strs(merges)),
        ("tokenizer.ggml.token_type".to_string(), Value::Array(types)),
        // Our byte-level split is GPT-2's; said explicitly, llama.cpp uses that split rather
        // than warning about a missing pre-tokenizer and guessing.
        (
            "tokenizer.ggml.pre".to_string(),
            Value::String("gpt-2".into()),
        ),
        // The tiny tokenizer puts BOS first (its post-processor); llama.cpp adds it for a
        // gpt2-type vocabulary only when told.
        (
            "tokenizer.ggml.add_bos_token".to_string(),
            Value::Bool(true),
        ),
    ];
    if let Some(id) = tok.token_to_id(super::tiny::BOS) {
        md.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(id)));
    }
    if let Some(id) = tok.token_to_id(super::tiny::EOS) {
        md.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(id)));
    }
    Ok(md)
}

/// Turns a growing list of token ids into text deltas without splitting multi-byte characters.
///
/// Decoding token by token breaks UTF-8 sequences and byte-level merges, so each step decodes a
/// short window and emits only what became stable (the approach of TGI and `DecodeStream`).
#[derive(Debug, Default, Clone)]
pub struct IncrementalDecoder {
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
}

impl IncrementalDecoder {
    /// Adds a token and returns the text it completed (possibly empty).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        self.ids.push(id);
        let prefix = tok
            .decode(&self.ids[self.prefix_offset..self.read_offset], true)
            .unwrap_or_default();
        let full = tok
            .decode(&self.ids[self.prefix_offset..], true)
            .unwrap_or_default();
        if full.len() > prefix.len() && !full.ends_with('\u{FFFD}') && full.starts_with(&prefix) {
            let delta = full[prefix.len()..].to_string();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            delta
        } else {
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (found by the `gguf_header` fuzz target): a merge whose joined pieces are
    /// longer than every token panicked inside tokenizers' BPE builder.
    #[test]
    fn a_gguf_merge_outside_the_vocabulary_is_an_error_not_a_panic() {
        use candle_core::quantized::gguf_file::{Content, Value, VersionedMagic};
        let strings =
            |v: &[&str]| Value::Array(v.iter().map(|s| Value::String(s.to_string())).collect());
        let content = Content {
            magic: VersionedMagic::GgufV3,
            metadata: [
                (
                    "tokenizer.ggml.model".to_string(),
                    Value::String("gpt2".into()),
                ),
                ("tokenizer.ggml.tokens".to_string(), strings(&["a", "b"])),
                ("tokenizer.ggml.merges".to_string(), strings(&["a b"])),
            ]
            .into(),
            tensor_infos: Default::default(),
            tensor_data_offset: 0,
        };
        let err = from_gguf(&content, Path::new("x.gguf")).unwrap_err();
        assert!(err.to_string().contains("merge \"a\" + \"b\""), "{err}");
    }

    /// A pre-tokenizer the server does not know is refused by name, never silently replaced
    /// by GPT-2's (which would tokenize Llama 3-style files the wrong way).
    #[test]
    fn an_unknown_gguf_pre_tokenizer_is_an_error_naming_it() {
        let tok = super::super::tiny::tokenizer().unwrap();
        let mut md = gguf_metadata(&tok, tok.get_vocab_size(true)).unwrap();
        md.push((
            "tokenizer.ggml.pre".into(),
            Value::String("made-up-pre".into()),
        ));
        let content = gguf_file::Content {
            magic: gguf_file::VersionedMagic::GgufV3,
            metadata: md.into_iter().collect(),
            tensor_infos: Default::default(),
            tensor_data_offset: 0,
        };
        let err = from_gguf(&content, Path::new("x.gguf"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"made-up-pre\"") && err.contains("llama-bpe"),
            "{err}"
        );
        assert_eq!(pre_tokenizer_regex("gpt-2"), Ok(None));
        assert!(pre_tokenizer_regex("llama-bpe").unwrap().is_some());
    }

    #[test]
    fn incremental_decoding_reassembles_the_full_text() {
        let tok = super::super::tiny::tokenizer().unwrap();
        let text = "Sluice keeps inference honest — naïve café, 日本語 too.";
        let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
        let mut dec = IncrementalDecoder::default();
        let streamed: String = ids.iter().map(|&id| dec.push(&tok, id)).collect();
        assert_eq!(streamed, tok.decode(&ids, true).unwrap());
        assert_eq!(streamed, text);
    }

    #[test]
    fn gguf_metadata_round_trips_the_tokenizer() {
        let tok = super::super::tiny::tokenizer().unwrap();
        // Padded to a larger embedding, as export-tiny's TinyLlama shape is: the unused tokens
        // change nothing a text encodes to.
        let md = gguf_metadata(&tok, 600).unwrap();
        assert!(
            gguf_metadata(&tok, 10).is_err(),
            "a vocab smaller than the tokenizer"
        );
        let content = gguf_file::Content {
            magic: gguf_file::VersionedMagic::GgufV3,
            metadata: md.into_iter().collect(),
            tensor_infos: Default::default(),
            tensor_data_offset: 0,
        };
        let rebuilt = from_gguf(&content, Path::new("mem.gguf")).unwrap();
        for text in ["hello world", "<s>special</s> tokens", "ünïcode ✓"] {
            assert_eq!(
                tok.encode(text, false).unwrap().get_ids(),
                rebuilt.encode(text, false).unwrap().get_ids(),
                "{text}"
            );
        }
        assert_eq!(rebuilt.get_vocab_size(true), 600);
        assert_eq!(rebuilt.id_to_token(599).as_deref(), Some("<unused599>"));
    }
}

//! SentencePiece (`tokenizer.ggml.model = "llama"`) tokenizers rebuilt from GGUF metadata: the
//! tokenizer of Llama 2, Mistral, Mixtral, TinyLlama and most llama-family GGUFs, which carry
//! pieces, scores and token types but no merges and no `tokenizer.json`.
//!
//! SentencePiece's BPE encoding repeatedly merges the adjacent pair whose joined piece is in
//! the vocabulary with the highest score. A BPE model whose merge ranks are the joined pieces'
//! scores, highest first, does the same, so the rebuilt tokenizer is a `tokenizers` BPE with
//! merges derived from the scores (as Hugging Face's converter derives them), byte fallback
//! (`<0xNN>` pieces for characters outside the vocabulary), `▁` for spaces and the leading
//! space SentencePiece adds (`tokenizer.ggml.add_space_prefix`, default true), and a decoder
//! that undoes all three. Control pieces (`<s>`, `</s>`, …) are matched whole as special tokens.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use tokenizers::decoders::DecoderWrapper;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{NormalizerWrapper, Prepend, Replace, Sequence};
use tokenizers::{AddedToken, Tokenizer};

use super::{ModelError, strings};

/// SentencePiece's visible space.
const SPACE: &str = "\u{2581}";

/// GGUF token types (llama.cpp's `llama_token_type`).
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// Merges implied by the pieces' scores: every split of a normal piece into two pieces that
/// exist, ranked by the joined piece's score (highest first), ties by the parts' ids. Pure.
pub fn merges_from_scores(
    tokens: &[String],
    scores: &[f32],
    types: &[i32],
) -> Vec<(String, String)> {
    let ids: HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .rev() // the first of duplicate pieces wins, as in llama.cpp
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let mergeable = |i: usize| {
        matches!(
            types.get(i).copied().unwrap_or(NORMAL),
            NORMAL | USER_DEFINED
        )
    };
    let mut merges: Vec<(f32, usize, usize, usize)> = Vec::new();
    for (joined, piece) in tokens.iter().enumerate() {
        if !mergeable(joined) || ids.get(piece.as_str()) != Some(&joined) {
            continue;
        }
        for (at, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(at);
            if let (Some(&li), Some(&ri)) = (ids.get(l), ids.get(r))
                && mergeable(li)
                && mergeable(ri)
            {
                merges.push((scores.get(joined).copied().unwrap_or(0.0), joined, li, ri));
            }
        }
    }
    // Highest score first; for one joined piece, the split with the lower-id parts first.
    merges.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then(a.1.cmp(&b.1))
            .then((a.2, a.3).cmp(&(b.2, b.3)))
    });
    merges
        .into_iter()
        .map(|(_, _, l, r)| (tokens[l].clone(), tokens[r].clone()))
        .collect()
}

fn flag(md: &HashMap<String, Value>, key: &str, default: bool) -> bool {
    md.get(key)
        .and_then(|v| v.to_bool().ok())
        .unwrap_or(default)
}

/// Rebuilds a SentencePiece tokenizer from `tokenizer.ggml.*` metadata.
pub fn from_gguf(content: &gguf_file::Content, path: &Path) -> Result<Tokenizer, ModelError> {
    let md = &content.metadata;
    let tokens = strings(md, "tokenizer.ggml.tokens", path)?;
    if tokens.is_empty() {
        return Err(ModelError::invalid(path, "tokenizer.ggml.tokens is empty"));
    }
    let scores: Vec<f32> = md
        .get("tokenizer.ggml.scores")
        .ok_or_else(|| ModelError::invalid(path, "missing metadata tokenizer.ggml.scores"))?
        .to_vec()
        .map_err(|e| ModelError::invalid(path, format!("tokenizer.ggml.scores: {e}")))?
        .iter()
        .map(|v| {
            v.to_f32()
                .map_err(|e| ModelError::invalid(path, format!("tokenizer.ggml.scores: {e}")))
        })
        .collect::<Result<_, _>>()?;
    if scores.len() != tokens.len() {
        return Err(ModelError::invalid(
            path,
            format!(
                "tokenizer.ggml.scores has {} entries for {} tokens",
                scores.len(),
                tokens.len()
            ),
        ));
    }
    let types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
        None => vec![NORMAL; tokens.len()],
        Some(v) => v
            .to_vec()
            .map_err(|e| ModelError::invalid(path, format!("tokenizer.ggml.token_type: {e}")))?
            .iter()
            .map(|t| {
                t.to_i32().map_err(|e| {
                    ModelError::invalid(path, format!("tokenizer.ggml.token_type: {e}"))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    if types.len() != tokens.len() {
        return Err(ModelError::invalid(
            path,
            format!(
                "tokenizer.ggml.token_type has {} entries for {} tokens",
                types.len(),
                tokens.len()
            ),
        ));
    }
    let unk_id = md
        .get("tokenizer.ggml.unknown_token_id")
        .and_then(|v| v.to_u32().ok())
        .map(|i| i as usize)
        .or_else(|| types.iter().position(|&t| t == UNKNOWN))
        .filter(|&i| i < tokens.len());

    let merges = merges_from_scores(&tokens, &scores, &types);
    let mut vocab = tokenizers::models::bpe::Vocab::default();
    for (i, t) in tokens.iter().enumerate() {
        vocab.entry(t.clone()).or_insert(i as u32);
    }
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(unk) = unk_id {
        builder = builder.unk_token(tokens[unk].clone());
    }
    let bpe = builder.build().map_err(|e| ModelError::invalid(path, e))?;
    let mut tok = Tokenizer::new(bpe);

    let space = Replace::new(" ", SPACE).map_err(|e| ModelError::invalid(path, e))?;
    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    let prefix = flag(md, "tokenizer.ggml.add_space_prefix", true);
    if prefix {
        normalizers.push(Prepend::new(SPACE.into()).into());
    }
    normalizers.push(space.into());
    tok.with_normalizer(Some(Sequence::new(normalizers)))
        .map_err(|e| ModelError::invalid(path, e))?;
    let mut decoders: Vec<DecoderWrapper> = vec![
        Replace::new(SPACE, " ")
            .map_err(|e| ModelError::invalid(path, e))?
            .into(),
    ];
    decoders.push(ByteFallback::default().into());
    decoders.push(Fuse::default().into());
    if prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    tok.with_decoder(Some(DecoderSequence::new(decoders)));

    // Control pieces are matched whole and skipped when decoding; user-defined ones are matched
    // whole and kept.
    let added: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, ty)| matches!(**ty, CONTROL | USER_DEFINED))
        .map(|(t, ty)| AddedToken::from(t.clone(), *ty == CONTROL))
        .collect();
    let (special, plain): (Vec<_>, Vec<_>) = added.into_iter().partition(|t| t.special);
    tok.add_special_tokens(special)
        .map_err(|e| ModelError::invalid(path, e))?;
    tok.add_tokens(plain)
        .map_err(|e| ModelError::invalid(path, e))?;
    Ok(tok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::gguf_file::{Content, VersionedMagic};

    /// A hand-made SentencePiece vocabulary: control pieces, bytes, and a few merges.
    fn content(extra: &[(&str, Value)]) -> Content {
        let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>"].map(String::from).to_vec();
        let mut types = vec![UNKNOWN, CONTROL, CONTROL];
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(6);
        }
        let words = [
            "▁", "h", "e", "l", "o", "w", "r", "d", "▁h", "ll", "▁he", "llo", "▁hello", "or",
        ];
        for w in words {
            tokens.push(w.into());
            types.push(NORMAL);
        }
        // Longer pieces score higher here, so whole words win over their parts.
        let scores: Vec<f32> = tokens.iter().map(|t| t.chars().count() as f32).collect();
        let mut md: HashMap<String, Value> = [
            (
                "tokenizer.ggml.model".to_string(),
                Value::String("llama".into()),
            ),
            (
                "tokenizer.ggml.tokens".to_string(),
                Value::Array(tokens.into_iter().map(Value::String).collect()),
            ),
            (
                "tokenizer.ggml.scores".to_string(),
                Value::Array(scores.into_iter().map(Value::F32).collect()),
            ),
            (
                "tokenizer.ggml.token_type".to_string(),
                Value::Array(types.into_iter().map(Value::I32).collect()),
            ),
        ]
        .into();
        for (k, v) in extra {
            md.insert((*k).to_string(), v.clone());
        }
        Content {
            magic: VersionedMagic::GgufV3,
            metadata: md,
            tensor_infos: Default::default(),
            tensor_data_offset: 0,
        }
    }

    fn pieces(tok: &Tokenizer, text: &str) -> Vec<String> {
        tok.encode(text, false).unwrap().get_tokens().to_vec()
    }

    #[test]
    fn merges_follow_scores_and_unknown_characters_fall_back_to_bytes() {
        let tok = from_gguf(&content(&[]), Path::new("t.gguf")).unwrap();
        assert_eq!(pieces(&tok, "hello"), ["▁hello"]);
        assert_eq!(
            pieces(&tok, "hello world"),
            ["▁hello", "▁", "w", "or", "l", "d"]
        );
        // "é" is not a piece: its UTF-8 bytes are.
        assert_eq!(pieces(&tok, "é"), ["▁", "<0xC3>", "<0xA9>"]);
        let ids = tok.encode("hello wé", false).unwrap().get_ids().to_vec();
        assert_eq!(tok.decode(&ids, true).unwrap(), "hello wé");
        // Control pieces are whole special tokens, dropped when decoding.
        let ids = tok.encode("<s>hello", false).unwrap().get_ids().to_vec();
        assert_eq!(ids[0], 1);
        assert_eq!(tok.decode(&ids, true).unwrap(), "hello");
    }

    #[test]
    fn without_the_space_prefix_no_leading_space_is_added() {
        let tok = from_gguf(
            &content(&[("tokenizer.ggml.add_space_prefix", Value::Bool(false))]),
            Path::new("t.gguf"),
        )
        .unwrap();
        assert_eq!(pieces(&tok, "hello"), ["h", "e", "llo"]);
        let ids = tok.encode(" hello", false).unwrap().get_ids().to_vec();
        assert_eq!(tok.decode(&ids, true).unwrap(), " hello");
    }

    #[test]
    fn malformed_metadata_is_a_clear_error() {
        let mut c = content(&[]);
        c.metadata.remove("tokenizer.ggml.scores");
        let e = from_gguf(&c, Path::new("t.gguf")).unwrap_err().to_string();
        assert!(e.contains("tokenizer.ggml.scores"), "{e}");
        let c = content(&[("tokenizer.ggml.scores", Value::Array(vec![Value::F32(0.0)]))]);
        let e = from_gguf(&c, Path::new("t.gguf")).unwrap_err().to_string();
        assert!(e.contains("1 entries for"), "{e}");
        let c = content(&[("tokenizer.ggml.tokens", Value::Array(vec![]))]);
        assert!(from_gguf(&c, Path::new("t.gguf")).is_err());
    }

    #[test]
    fn merge_ranks_are_the_joined_pieces_scores() {
        let tokens: Vec<String> = ["a", "b", "c", "ab", "bc", "abc"]
            .map(String::from)
            .to_vec();
        let scores = [0.0, 0.0, 0.0, -2.0, -1.0, -3.0];
        let merges = merges_from_scores(&tokens, &scores, &[NORMAL; 6]);
        let shown: Vec<String> = merges.iter().map(|(l, r)| format!("{l}+{r}")).collect();
        assert_eq!(shown, ["b+c", "a+b", "a+bc", "ab+c"]);
    }
}

//! A byte-level BPE (`gpt2`) GGUF tokenizer rebuilt from metadata alone pre-tokenizes as its
//! `tokenizer.ggml.pre` says: tests/python/bpe_gguf.py trains a BPE with Hugging Face's
//! `tokenizers`, writes it with the `gguf` package once per pre-tokenizer (GPT-2's, Llama 3's,
//! Qwen2's), and records `tiktoken`'s ids with that pre-tokenizer's split regex; here the
//! server's rebuild must give the same ids and decode them back to the text.

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::quantized::gguf_file;
use serde_json::Value;
use sluice_server::model::tokenizer;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
#[ignore = "live tier: needs python3 with tokenizers, tiktoken and gguf (scripts/install-deps.sh)"]
fn byte_level_gguf_tokenizers_split_as_their_pre_tokenizer_says() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("python3")
        .arg(repo().join("tests/python/bpe_gguf.py"))
        .arg(dir.path())
        .arg(repo().join("crates/sluice-server/src/model/tiny_corpus.txt"))
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "bpe_gguf.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ids_by_pre = Vec::new();
    for pre in ["gpt-2", "llama-bpe", "qwen2"] {
        let path = dir.path().join(format!("{pre}.gguf"));
        let mut file = std::fs::File::open(&path).unwrap();
        let content = gguf_file::Content::read(&mut file).expect("a GGUF file");
        let tok = tokenizer::from_gguf(&content, &path).expect("rebuilt from metadata alone");
        let expected: Vec<Value> = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(format!("{pre}.json"))).unwrap(),
        )
        .unwrap();
        assert!(expected.len() > 25);
        let mut mismatches = Vec::new();
        let mut all = Vec::new();
        for case in &expected {
            let text = case["text"].as_str().unwrap();
            let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
            let got = tok.encode(text, false).unwrap().get_ids().to_vec();
            if got != want {
                mismatches.push(format!("{text:?}\n  tiktoken {want:?}\n  rebuilt  {got:?}"));
                continue;
            }
            assert_eq!(tok.decode(&got, true).unwrap(), text, "{pre}: {text:?}");
            all.push(got);
        }
        assert!(
            mismatches.is_empty(),
            "{pre}: {} of {} texts tokenize differently:\n{}",
            mismatches.len(),
            expected.len(),
            mismatches.join("\n")
        );
        ids_by_pre.push(all);
    }
    // The three splits differ (digits, contractions, newlines), so each was really applied.
    assert_ne!(ids_by_pre[0], ids_by_pre[1]);
    assert_ne!(ids_by_pre[1], ids_by_pre[2]);
}

//! Sluice against llama.cpp itself (live tier), on the same GGUF files. llama.cpp is the prebuilt
//! CPU build that the `node-llama-cpp` npm package ships (scripts/install-deps.sh installs it;
//! nothing is compiled), driven by tests/node/llama_cpp.mjs.
//!
//! 1. Tokenization: the SentencePiece GGUF of tests/python/spm_gguf.py and the byte-level BPE
//!    GGUFs of tests/python/bpe_gguf.py (one per pre-tokenizer), written with the `gguf` Python
//!    package as llama.cpp's converter writes them — the server's tokenizer rebuilt from the
//!    metadata alone must give llama.cpp's ids for every text of their multilingual corpora.
//! 2. Greedy generation: `export-tiny`'s files in q8_0, q4_0 and q4k (llama.cpp's Q4_K_M mix of
//!    Q4_K and Q6_K), and the tiny model with the SentencePiece tokenizer: llama.cpp must load
//!    them, both engines must turn each prompt into the same ids, and their greedy tokens must
//!    agree for the first [`GREEDY_TOKENS`].
//!
//! Why greedy tokens can agree at all, and how far: both engines quantize the activations of
//! quantized matmuls the same way (q8_0 blocks for q4_0/q8_0 weights, Q8_K for K-quants) and
//! sum exact integer products, so the matmuls agree to float rounding; attention, norms and
//! softmax sum in different orders, so logits differ in the last bits. Generation then
//! diverges only where two logits are that close, which random weights make rare but not
//! impossible, and once one token differs the rest of the sequence does too.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use sluice_contract::server::KvCacheDtype;
use sluice_server::model::llama::{SeqStep, argmax_rows};
use sluice_server::model::quant::QuantizationFlag;
use sluice_server::model::tiny::{self, ExportOptions, TinyShape};
use sluice_server::model::{LoadSpec, ModelSource, load, tokenizer};

/// Greedy tokens compared per prompt.
const GREEDY_TOKENS: usize = 32;
/// How close llama.cpp's choice must be to Sluice's top logit where they differ, as a share of
/// the logit range, and how many such positions a prompt may have: `(f32 files, quantized)`.
///
/// In f32 both engines compute the same model to float rounding: measured, every position is
/// the same token (the bound only leaves room for another CPU's sum order). Quantized, both
/// round activations to 8 bits before each matmul, so a rounding difference in the last bit of
/// one activation can move it a whole quantization step: measured on the tiny model, 96.5 % of
/// positions agree and the rest are within 1.5 % of the range (near ties); the bounds below
/// leave twice that room.
const NEAR_TIE: (f32, f32) = (1e-4, 3e-2);
const MAX_TIES: (usize, usize) = (1, 4);

/// Prompts for the greedy check: prose like the tiny model's corpus, code, and other scripts.
const PROMPTS: &[&str] = &[
    "The operator reads the queue and",
    "Sluice names the bottleneck before it scales:",
    "fn main() { println!(\"hello\"); }",
    "naïve café, déjà vu — Straße",
    "日本語のテキスト",
    "Once upon a time",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs one request through tests/node/llama_cpp.mjs.
fn llama_cpp(request: &Value) -> Value {
    let modules = std::env::var("SLUICE_NODE_MODULES")
        .unwrap_or_else(|_| "/var/tmp/sluice-node/node_modules".into());
    let mut child = Command::new("node")
        .arg(repo().join("tests/node/llama_cpp.mjs"))
        .env("SLUICE_NODE_MODULES", &modules)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node (scripts/install-deps.sh installs it and node-llama-cpp)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "llama_cpp.mjs failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("llama_cpp.mjs prints JSON")
}

fn python(script: &str, args: &[&Path]) {
    let out = Command::new("python3")
        .arg(repo().join("tests/python").join(script))
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn texts(expected: &Path) -> Vec<String> {
    let cases: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(expected).unwrap()).unwrap();
    cases
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_string())
        .collect()
}

/// The server's rebuild of `file`'s tokenizer must give llama.cpp's ids for every text.
fn check_tokenization(file: &Path, texts: &[String]) {
    let mut f = std::fs::File::open(file).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut f).unwrap();
    let ours = tokenizer::from_gguf(&content, file).expect("rebuilt from metadata");
    let theirs = llama_cpp(&json!({"mode": "tokenize", "model": file, "texts": texts}));
    let results = theirs["results"].as_array().unwrap();
    assert_eq!(results.len(), texts.len());
    let mut mismatches = Vec::new();
    for r in results {
        let text = r["text"].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(r["ids"].clone()).unwrap();
        let got = ours.encode(text, false).unwrap().get_ids().to_vec();
        if got != want {
            mismatches.push(format!("{text:?}: llama.cpp {want:?}, sluice {got:?}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{}: {} of {} texts tokenized differently:\n{}",
        file.display(),
        mismatches.len(),
        texts.len(),
        mismatches.join("\n")
    );
}

#[test]
#[ignore = "live tier: needs node-llama-cpp and python3 with sentencepiece, tokenizers and gguf (scripts/install-deps.sh)"]
fn gguf_tokenizers_rebuilt_from_metadata_tokenize_like_llama_cpp() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = repo().join("crates/sluice-server/src/model/tiny_corpus.txt");
    python("spm_gguf.py", &[dir.path(), &corpus]);
    let spm_texts = texts(&dir.path().join("expected.json"));
    assert!(spm_texts.len() > 30);
    check_tokenization(&dir.path().join("spm.gguf"), &spm_texts);
    python("bpe_gguf.py", &[dir.path(), &corpus]);
    for pre in ["gpt-2", "llama-bpe", "qwen2", "default"] {
        let texts = texts(&dir.path().join(format!("{pre}.json")));
        check_tokenization(&dir.path().join(format!("{pre}.gguf")), &texts);
    }
}

/// How one prompt's greedy run compares: llama.cpp's token at every position, fed back to Sluice
/// (teacher forcing), against Sluice's logits there.
struct Comparison {
    prompt: String,
    /// Positions where llama.cpp's token is Sluice's argmax too.
    exact: usize,
    /// Leading positions that agree (what free-running greedy generation would share).
    prefix: usize,
    /// The largest `(Sluice's max logit − its logit for llama.cpp's token) / logit range`.
    worst_gap: f32,
}

fn load_gguf(file: &Path) -> sluice_server::model::LoadedModel {
    load(&LoadSpec {
        source: ModelSource::Gguf(file.to_path_buf()),
        quantization: QuantizationFlag::Auto,
        device: candle_core::Device::Cpu,
        served_name: None,
        hf_home: None,
        // llama.cpp runs with an f32 cache too (tests/node/llama_cpp.mjs): with f16 both would
        // round keys and values, but llama.cpp also rounds queries and probabilities to f16 and
        // Sluice does not, which adds near ties that say nothing about the weights' arithmetic.
        kv_cache: KvCacheDtype::F32,
    })
    .unwrap()
}

/// Runs `theirs` (llama.cpp's greedy tokens after `ids`) through Sluice, token by token.
fn teacher_forced(
    model: &sluice_server::model::LoadedModel,
    prompt: &str,
    ids: &[u32],
    theirs: &[u32],
) -> Comparison {
    let mut cache = model.model.new_cache();
    let mut feed = ids.to_vec();
    let (mut exact, mut prefix, mut worst_gap) = (0, None, 0f32);
    for (i, &want) in theirs.iter().enumerate() {
        let logits = model
            .model
            .forward(&mut [SeqStep {
                tokens: &feed,
                cache: &mut cache,
            }])
            .unwrap();
        let ours = argmax_rows(&logits).unwrap()[0];
        let row: Vec<f32> = logits.squeeze(0).unwrap().to_vec1().unwrap();
        let (max, min) = row
            .iter()
            .fold((f32::MIN, f32::MAX), |(a, b), &v| (a.max(v), b.min(v)));
        if ours == want {
            exact += 1;
        } else {
            prefix.get_or_insert(i);
            worst_gap = worst_gap.max((max - row[want as usize]) / (max - min));
        }
        feed = vec![want];
    }
    Comparison {
        prompt: prompt.to_string(),
        exact,
        prefix: prefix.unwrap_or(theirs.len()),
        worst_gap,
    }
}

/// Both engines on `file`: the same prompt ids, and llama.cpp's greedy tokens are Sluice's too —
/// at every one of [`GREEDY_TOKENS`] positions either Sluice's argmax or a near tie with it
/// (within [`NEAR_TIE`] of the logits' range), and at most [`MAX_TIES`] ties per prompt.
fn check_greedy(label: &str, file: &Path, quantized: bool) {
    let (near_tie, max_ties) = if quantized {
        (NEAR_TIE.1, MAX_TIES.1)
    } else {
        (NEAR_TIE.0, MAX_TIES.0)
    };
    let theirs = llama_cpp(&json!({
        "mode": "greedy", "model": file, "prompts": PROMPTS, "tokens": GREEDY_TOKENS,
    }));
    let model = load_gguf(file);
    let mut report = Vec::new();
    for r in theirs["results"].as_array().unwrap() {
        let prompt = r["prompt"].as_str().unwrap();
        let want_ids: Vec<u32> = serde_json::from_value(r["ids"].clone()).unwrap();
        let greedy: Vec<u32> = serde_json::from_value(r["greedy"].clone()).unwrap();
        let ids = model
            .tokenizer
            .encode(prompt, true)
            .unwrap()
            .get_ids()
            .to_vec();
        assert_eq!(ids, want_ids, "{label}: prompt ids for {prompt:?}");
        report.push(teacher_forced(&model, prompt, &ids, &greedy));
    }
    let lines: Vec<String> = report
        .iter()
        .map(|c| {
            format!(
                "{:?}: {}/{GREEDY_TOKENS} positions Sluice's argmax, first {} identical, \
                 largest gap {:.1e} of the logit range",
                c.prompt, c.exact, c.prefix, c.worst_gap
            )
        })
        .collect();
    eprintln!("{label}:\n{}", lines.join("\n"));
    assert!(
        report
            .iter()
            .all(|c| c.worst_gap <= near_tie && GREEDY_TOKENS - c.exact <= max_ties),
        "{label}: llama.cpp's greedy tokens are not Sluice's:\n{}",
        lines.join("\n")
    );
}

#[test]
#[ignore = "live tier: needs node-llama-cpp and python3 with sentencepiece and gguf (scripts/install-deps.sh)"]
fn greedy_tokens_match_llama_cpp_on_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    for (label, q) in [
        ("f32", "f32"),
        ("q8_0", "q8_0"),
        ("q4_0", "q4_0"),
        ("q4_k_m", "q4k"),
    ] {
        let out = dir.path().join(label);
        tiny::export(
            &out,
            &ExportOptions {
                shape: TinyShape::Tiny,
                gguf: Some(q.parse().unwrap()),
                safetensors: false,
            },
        )
        .unwrap();
        check_greedy(label, &out.join("model.gguf"), q != "f32");
    }
    // The tiny model with a SentencePiece tokenizer and nothing beside it.
    let corpus = repo().join("crates/sluice-server/src/model/tiny_corpus.txt");
    let spm = dir.path().join("spm");
    std::fs::create_dir_all(&spm).unwrap();
    python(
        "spm_gguf.py",
        &[&spm, &corpus, &dir.path().join("q8_0/model.gguf")],
    );
    check_greedy("spm q8_0", &spm.join("model/spm-model.gguf"), true);
}

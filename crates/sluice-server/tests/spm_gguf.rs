//! A SentencePiece (`llama`) GGUF tokenizer rebuilt from metadata alone tokenizes like
//! SentencePiece itself: tests/python/spm_gguf.py trains one with the `sentencepiece` package
//! (BPE, byte fallback, Llama 2's settings), writes it with the `gguf` package as llama.cpp's
//! converter does, and records sentencepiece's ids for a multilingual corpus; here the server's
//! rebuild must give the same ids and decode them back to the text. Then a model file with that
//! tokenizer and an embedded chat template, and nothing beside it, is served.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file;
use serde_json::{Value, json};
use sluice_server::model::tokenizer;

use common::{Proc, client, free_port, post};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs tests/python/spm_gguf.py into `dir`, retargeting `model` when given.
fn generate(dir: &Path, model: Option<&Path>) {
    let out = Command::new("python3")
        .arg(repo().join("tests/python/spm_gguf.py"))
        .arg(dir)
        .arg(repo().join("crates/sluice-server/src/model/tiny_corpus.txt"))
        .args(model)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "spm_gguf.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn expected(dir: &Path) -> Vec<Value> {
    serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap()
}

#[test]
#[ignore = "live tier: needs python3 with sentencepiece and gguf (scripts/install-deps.sh)"]
fn a_sentencepiece_gguf_tokenizes_like_sentencepiece_without_a_tokenizer_json() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), None);
    let path = dir.path().join("spm.gguf");
    let mut file = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut file).expect("a GGUF file");
    let tok = tokenizer::from_gguf(&content, &path).expect("rebuilt from metadata alone");

    let expected = expected(dir.path());
    assert!(expected.len() > 30);
    let mut mismatches = Vec::new();
    for case in &expected {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        let got = tok.encode(text, false).unwrap().get_ids().to_vec();
        if got != want {
            mismatches.push(format!(
                "{text:?}\n  sentencepiece {want:?}\n  rebuilt       {got:?}"
            ));
            continue;
        }
        assert_eq!(
            tok.decode(&got, true).unwrap(),
            text,
            "round trip of {text:?}"
        );
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} texts tokenize differently:\n{}",
        mismatches.len(),
        expected.len(),
        mismatches.join("\n")
    );
    // Control pieces are whole tokens, not spelled out.
    let bos = tok.token_to_id("<s>").expect("<s>");
    assert_eq!(tok.encode("<s>", false).unwrap().get_ids(), [bos]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "live tier: needs python3 with sentencepiece and gguf (scripts/install-deps.sh)"]
async fn a_sentencepiece_gguf_with_an_embedded_chat_template_serves_from_the_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-server"))
        .args(["export-tiny", "--no-safetensors", "--out"])
        .arg(&export)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    generate(dir.path(), Some(&export.join("model.gguf")));
    let model = dir.path().join("model/spm-model.gguf");
    assert_eq!(
        std::fs::read_dir(model.parent().unwrap()).unwrap().count(),
        1,
        "nothing beside the model file"
    );

    let port = free_port();
    let _server = Proc(
        Command::new(env!("CARGO_BIN_EXE_sluice-server"))
            .arg("--model")
            .arg(&model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(client().get(format!("{url}/ready")).send().await, Ok(r) if r.status() == 200) {
        assert!(Instant::now() < deadline, "the server did not become ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The prompt is tokenized as sentencepiece does, after the BOS the file asks for.
    let hello = expected(dir.path())
        .into_iter()
        .find(|c| c["text"] == "Hello world")
        .unwrap();
    let want = hello["ids"].as_array().unwrap().len() + 1;
    let (status, body) = post(
        &format!("{url}/v1/completions"),
        json!({"prompt": "Hello world", "max_tokens": 4}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage"]["prompt_tokens"], want, "{body}");

    // The chat template is the file's own: it serves a user turn and refuses a system one,
    // which the server's default template would accept.
    let (status, body) = post(
        &format!("{url}/v1/chat/completions"),
        json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        &format!("{url}/v1/chat/completions"),
        json!({"messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "Hi"}], "max_tokens": 4}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.to_string().contains("takes no system message"),
        "{body}"
    );
}

//! GGUF headers (the file `/model/load` and `--model` open): candle's header reader, then the
//! server's own config and tokenizer derivation from the metadata. Any bytes give a model config
//! or a `ModelError`, never a panic.
#![no_main]

use std::io::Cursor;
use std::path::Path;

use candle_core::quantized::gguf_file::Content;
use libfuzzer_sys::fuzz_target;
use sluice_server::model::{tokenizer, weights};

fuzz_target!(|data: &[u8]| {
    let Ok(content) = Content::read(&mut Cursor::new(data)) else {
        return;
    };
    let path = Path::new("fuzz.gguf");
    if let Ok(cfg) = weights::gguf_config(&content, path) {
        assert!(cfg.vocab_size > 0 && cfg.num_attention_heads > 0);
    }
    let _ = tokenizer::from_gguf(&content, path);
});

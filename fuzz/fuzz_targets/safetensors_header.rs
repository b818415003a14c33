//! Safetensors checkpoints as the server opens them: memory-mapped through [`Safetensors`], then
//! every tensor the header names loaded. Any bytes give tensors or an error, never a panic.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use sluice_server::model::weights::{Safetensors, TensorSource};

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::Builder::new()
        .suffix(".safetensors")
        .tempfile()
        .expect("a temporary file");
    file.write_all(data).expect("write the input");
    file.flush().expect("flush the input");
    let Ok(st) = Safetensors::open(&[file.path().to_path_buf()]) else {
        return;
    };
    for name in st.names() {
        let _ = st.tensor(name);
    }
});

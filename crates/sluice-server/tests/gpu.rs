//! CPU against CUDA on the same weights (GPU tier: needs `--features cuda` and an NVIDIA GPU;
//! scripts/gpu-check.sh runs it). The same GGUF files are loaded on both devices and fed the
//! same prompts: last-position logits must agree to a small relative error, and greedy tokens
//! must agree for as long as the logits' top two are further apart than that error — on CUDA,
//! candle's quantized kernels dequantize to f32 (or use their own q8_1 activations), so the
//! engines are close but not bit-identical. The device's own memory count must also cover the
//! weights the model reports.
#![cfg(feature = "cuda")]

use candle_core::{Device, Tensor};
use sluice_server::model::llama::{SeqStep, argmax_rows};
use sluice_server::model::quant::QuantizationFlag;
use sluice_server::model::tiny::{self, ExportOptions, TinyShape};
use sluice_server::model::{LoadSpec, LoadedModel, ModelSource, load};

const PROMPTS: &[&str] = &[
    "The operator reads the queue and",
    "Sluice names the bottleneck before it scales:",
    "Once upon a time",
];
const GREEDY_TOKENS: usize = 16;

fn load_on(file: &std::path::Path, device: &Device) -> LoadedModel {
    load(&LoadSpec {
        source: ModelSource::Gguf(file.to_path_buf()),
        quantization: QuantizationFlag::Auto,
        device: device.clone(),
        served_name: None,
        hf_home: None,
        kv_cache: Default::default(),
    })
    .unwrap()
}

/// Last-position logits after the prompt, then `n` greedy tokens.
fn run(model: &LoadedModel, prompt: &str, n: usize) -> (Vec<f32>, Vec<u32>) {
    let ids = model
        .tokenizer
        .encode(prompt, true)
        .unwrap()
        .get_ids()
        .to_vec();
    let mut cache = model.model.new_cache();
    let mut feed = ids;
    let mut first = None;
    let mut out = Vec::new();
    while out.len() < n {
        let logits: Tensor = model
            .model
            .forward(&mut [SeqStep {
                tokens: &feed,
                cache: &mut cache,
            }])
            .unwrap();
        if first.is_none() {
            first = Some(logits.squeeze(0).unwrap().to_vec1::<f32>().unwrap());
        }
        let next = argmax_rows(&logits.to_device(&Device::Cpu).unwrap()).unwrap()[0];
        out.push(next);
        feed = vec![next];
    }
    (first.unwrap(), out)
}

#[test]
#[ignore = "GPU tier: needs --features cuda and an NVIDIA GPU (scripts/gpu-check.sh)"]
fn cuda_agrees_with_the_cpu_on_the_same_weights() {
    let gpu = Device::new_cuda(0).expect("a CUDA device");
    let dir = tempfile::tempdir().unwrap();
    for q in ["f32", "q8_0", "q4_0", "q4k"] {
        let out = dir.path().join(q);
        tiny::export(
            &out,
            &ExportOptions {
                shape: TinyShape::Tiny,
                gguf: Some(q.parse().unwrap()),
                safetensors: false,
            },
        )
        .unwrap();
        let file = out.join("model.gguf");
        let (cpu, cuda) = (load_on(&file, &Device::Cpu), load_on(&file, &gpu));
        for prompt in PROMPTS {
            let (lc, gc) = run(&cpu, prompt, GREEDY_TOKENS);
            let (lg, gg) = run(&cuda, prompt, GREEDY_TOKENS);
            let scale = lc.iter().map(|v| v.abs()).sum::<f32>() / lc.len() as f32;
            let diff =
                lc.iter().zip(&lg).map(|(a, b)| (a - b).abs()).sum::<f32>() / lc.len() as f32;
            let agree = gc.iter().zip(&gg).take_while(|(a, b)| a == b).count();
            println!(
                "{q} {prompt:?}: mean |logit diff| / mean |logit| = {:.2e}, greedy agree {agree}/{GREEDY_TOKENS}",
                diff / scale
            );
            assert!(
                diff / scale < 2e-2,
                "{q} {prompt:?}: logits differ by {}",
                diff / scale
            );
            // The first token comes from the compared logits: it must agree unless the top two
            // are closer than the error.
            let top = Tensor::new(lc.as_slice(), &Device::Cpu).unwrap();
            let sorted = top
                .sort_last_dim(false)
                .unwrap()
                .0
                .to_vec1::<f32>()
                .unwrap();
            if sorted[0] - sorted[1] > 4.0 * diff {
                assert_eq!(gc[0], gg[0], "{q} {prompt:?}: first greedy token");
            }
        }
    }
}

#[test]
#[ignore = "GPU tier: needs --features cuda and an NVIDIA GPU (scripts/gpu-check.sh)"]
fn device_memory_covers_the_loaded_weights() {
    let gpu = Device::new_cuda(0).expect("a CUDA device");
    let before = sluice_server::memory::device_memory(&gpu).expect("the driver's count");
    let dir = tempfile::tempdir().unwrap();
    tiny::export(
        &dir.path().join("m"),
        &ExportOptions {
            shape: TinyShape::Tiny,
            gguf: Some("f32".parse().unwrap()),
            safetensors: false,
        },
    )
    .unwrap();
    let model = load_on(&dir.path().join("m/model.gguf"), &gpu);
    let after = sluice_server::memory::device_memory(&gpu).unwrap();
    let weights = model.model.weight_bytes() as u64;
    println!(
        "device memory used {} → {} MiB (total {} MiB); the model reports {} MiB of weights",
        before.0 >> 20,
        after.0 >> 20,
        after.1 >> 20,
        weights >> 20
    );
    assert_eq!(before.1, after.1, "the total does not change");
    assert!(
        after.0 >= before.0 + weights,
        "the weights are counted on the device"
    );
}

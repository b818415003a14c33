//! Loading the tiny model through every path (in memory, safetensors directory, GGUF file) and
//! checking they compute the same function, and that a batched step equals solo steps.

use candle_core::Device;
use sluice_contract::server::KvCacheDtype;

use super::attention::Isa;

use super::llama::{SeqStep, argmax_rows};
use super::quant::{Quantization, QuantizationFlag};
use super::tiny::{ExportOptions, TinyShape};
use super::{LoadSpec, LoadedModel, ModelSource, load};

fn spec(source: ModelSource, q: impl Into<QuantizationFlag>) -> LoadSpec {
    LoadSpec {
        source,
        quantization: q.into(),
        device: Device::Cpu,
        served_name: None,
        hf_home: None,
        kv_cache: Default::default(),
    }
}

/// Greedy continuation of `prompt` for `n` tokens, one sequence alone.
fn greedy(m: &LoadedModel, prompt: &str, n: usize) -> Vec<u32> {
    let ids = m.tokenizer.encode(prompt, true).unwrap().get_ids().to_vec();
    let mut cache = m.model.new_cache();
    let mut out = Vec::new();
    let mut feed = ids;
    for _ in 0..n {
        let logits = m
            .model
            .forward(&mut [SeqStep {
                tokens: &feed,
                cache: &mut cache,
            }])
            .unwrap();
        let next = argmax_rows(&logits).unwrap()[0];
        out.push(next);
        feed = vec![next];
    }
    out
}

#[test]
fn safetensors_and_gguf_exports_compute_the_builtin_function() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ExportOptions {
        shape: TinyShape::Tiny,
        gguf: Some(Quantization::F32),
        safetensors: true,
    };
    let files = super::tiny::export(dir.path(), &opts).unwrap();
    assert_eq!(files.len(), 5, "{files:?}");
    let builtin = load(&spec(
        ModelSource::Builtin(TinyShape::Tiny),
        QuantizationFlag::Auto,
    ))
    .unwrap();
    let from_dir = load(&spec(
        ModelSource::Directory(dir.path().into()),
        QuantizationFlag::Auto,
    ))
    .unwrap();
    // The GGUF file has its own tokenizer metadata; hide tokenizer.json to load it from there.
    let gguf_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.path().join("model.gguf"),
        gguf_dir.path().join("tiny.gguf"),
    )
    .unwrap();
    let from_gguf = load(&spec(
        ModelSource::Gguf(gguf_dir.path().join("tiny.gguf")),
        QuantizationFlag::Auto,
    ))
    .unwrap();
    assert_eq!(from_gguf.info.quantization, "f32");
    assert_eq!(builtin.info.weight_bytes, from_dir.info.weight_bytes);
    let want = greedy(&builtin, "The operator reads the queue", 12);
    assert_eq!(greedy(&from_dir, "The operator reads the queue", 12), want);
    assert_eq!(greedy(&from_gguf, "The operator reads the queue", 12), want);
    assert_eq!(
        from_gguf
            .tokenizer
            .encode("a queue", true)
            .unwrap()
            .get_ids(),
        builtin.tokenizer.encode("a queue", true).unwrap().get_ids()
    );
}

#[test]
fn quantized_loads_are_smaller_and_report_their_precision() {
    let f32m = load(&spec(
        ModelSource::Builtin(TinyShape::Tiny),
        Quantization::F32,
    ))
    .unwrap();
    let mut last = f32m.info.weight_bytes;
    for q in [Quantization::F16, Quantization::Q8_0, Quantization::Q4_0] {
        let m = load(&spec(ModelSource::Builtin(TinyShape::Tiny), q)).unwrap();
        assert_eq!(m.info.quantization, q.as_flag());
        assert!(
            m.info.weight_bytes < last,
            "{q}: {} !< {last}",
            m.info.weight_bytes
        );
        last = m.info.weight_bytes;
        // It still generates tokens in the vocabulary.
        assert!(greedy(&m, "hello", 3).iter().all(|&t| (t as usize) < 512));
    }
}

#[test]
fn a_q4_k_m_mix_reports_its_main_type() {
    // Q4_K with Q6_K for the output and for layers 2-3's attn_v/ffn_down (of 4): named q4k,
    // a rung of the quantization ladder, so precision switches stay available.
    let dir = tempfile::tempdir().unwrap();
    let opts = ExportOptions {
        shape: TinyShape::Tiny,
        gguf: Some(Quantization::Q4K),
        safetensors: false,
    };
    super::tiny::export(dir.path(), &opts).unwrap();
    let gguf = super::weights::Gguf::open(&dir.path().join("model.gguf")).unwrap();
    let q6 = gguf
        .content
        .tensor_infos
        .values()
        .filter(|t| t.ggml_dtype == candle_core::quantized::GgmlDType::Q6K)
        .count();
    assert_eq!(q6, 5, "output + attn_v and ffn_down of layers 2 and 3");
    assert_eq!(gguf.stored_quantization(), "q4k");
}

#[test]
fn gguf_requantization_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ExportOptions {
        shape: TinyShape::Tiny,
        gguf: Some(Quantization::Q8_0),
        safetensors: false,
    };
    super::tiny::export(dir.path(), &opts).unwrap();
    let stored = load(&spec(
        ModelSource::Gguf(dir.path().join("model.gguf")),
        QuantizationFlag::Auto,
    ))
    .unwrap();
    assert_eq!(stored.info.quantization, "q8_0");
    let requant = load(&spec(
        ModelSource::Gguf(dir.path().join("model.gguf")),
        Quantization::Q4_0,
    ))
    .unwrap();
    assert_eq!(requant.info.quantization, "q4_0");
    assert!(requant.info.weight_bytes < stored.info.weight_bytes);
}

#[test]
fn a_ragged_batch_step_equals_solo_steps() {
    // f32 runs candle's gemm; q4_0 and q8_0 run our weight-stationary integer kernel.
    for q in [
        QuantizationFlag::Auto,
        Quantization::Q4_0.into(),
        Quantization::Q8_0.into(),
    ] {
        ragged_batch_equals_solo(q);
    }
}

fn ragged_batch_equals_solo(q: QuantizationFlag) {
    let m = load(&spec(ModelSource::Builtin(TinyShape::Tiny), q)).unwrap();
    let prompts = [
        "Once upon a time",
        "The queue",
        "Numbers like 1, 2, 3 appear in configuration files",
    ];
    let solo: Vec<Vec<u32>> = prompts.iter().map(|p| greedy(&m, p, 8)).collect();
    let mut caches: Vec<_> = prompts.iter().map(|_| m.model.new_cache()).collect();
    let mut feeds: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| m.tokenizer.encode(*p, true).unwrap().get_ids().to_vec())
        .collect();
    let mut batched = vec![Vec::new(); prompts.len()];
    for _ in 0..8 {
        let mut steps: Vec<SeqStep<'_>> = feeds
            .iter()
            .zip(caches.iter_mut())
            .map(|(f, c)| SeqStep {
                tokens: f,
                cache: c,
            })
            .collect();
        let next = argmax_rows(&m.model.forward(&mut steps).unwrap()).unwrap();
        for (i, t) in next.into_iter().enumerate() {
            batched[i].push(t);
            feeds[i] = vec![t];
        }
    }
    assert_eq!(batched, solo, "{q}");
}

#[test]
fn missing_and_corrupt_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = load(&spec(
        ModelSource::Directory(dir.path().join("nope")),
        QuantizationFlag::Auto,
    ))
    .err()
    .unwrap();
    assert!(err.to_string().contains("not a directory"), "{err}");
    let err = load(&spec(
        ModelSource::Directory(dir.path().into()),
        QuantizationFlag::Auto,
    ))
    .err()
    .unwrap();
    assert!(err.to_string().contains("no *.safetensors"), "{err}");
    std::fs::write(dir.path().join("bad.gguf"), b"not a gguf file at all").unwrap();
    let err = load(&spec(
        ModelSource::Gguf(dir.path().join("bad.gguf")),
        QuantizationFlag::Auto,
    ))
    .err()
    .unwrap();
    assert!(err.to_string().contains("bad.gguf"), "{err}");
}

#[test]
fn sharded_safetensors_with_an_index_load_like_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ExportOptions {
        shape: TinyShape::Tiny,
        gguf: None,
        safetensors: true,
    };
    super::tiny::export(dir.path(), &opts).unwrap();
    let all =
        candle_core::safetensors::load(dir.path().join("model.safetensors"), &Device::Cpu).unwrap();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let (mut a, mut b) = (
        std::collections::HashMap::new(),
        std::collections::HashMap::new(),
    );
    let mut weight_map = serde_json::Map::new();
    for (i, (name, t)) in all.into_iter().enumerate() {
        let (shard, file) = if i % 2 == 0 {
            (&mut a, "model-00001-of-00002.safetensors")
        } else {
            (&mut b, "model-00002-of-00002.safetensors")
        };
        shard.insert(name.clone(), t);
        weight_map.insert(name, serde_json::Value::String(file.into()));
    }
    candle_core::safetensors::save(&a, dir.path().join("model-00001-of-00002.safetensors"))
        .unwrap();
    candle_core::safetensors::save(&b, dir.path().join("model-00002-of-00002.safetensors"))
        .unwrap();
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let sharded = load(&spec(
        ModelSource::Directory(dir.path().into()),
        QuantizationFlag::Auto,
    ))
    .unwrap();
    let builtin = load(&spec(
        ModelSource::Builtin(TinyShape::Tiny),
        QuantizationFlag::Auto,
    ))
    .unwrap();
    assert_eq!(greedy(&sharded, "shards", 6), greedy(&builtin, "shards", 6));
}

/// Regression (found writing the `gguf_header` fuzz target): a `token_embd.weight` with no
/// dimensions panicked on `dims()[0]`; a hostile file handed to `/model/load` took the server down.
#[test]
fn a_gguf_embedding_without_dimensions_is_an_error_not_a_panic() {
    use candle_core::quantized::GgmlDType;
    use candle_core::quantized::gguf_file::{Content, TensorInfo, Value, VersionedMagic};
    let u32v = |v: u32| Value::U32(v);
    let metadata = [
        ("general.architecture", Value::String("llama".into())),
        ("llama.embedding_length", u32v(8)),
        ("llama.attention.head_count", u32v(2)),
        ("llama.block_count", u32v(1)),
        ("llama.feed_forward_length", u32v(16)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let embedding = TensorInfo {
        ggml_dtype: GgmlDType::F32,
        shape: candle_core::Shape::from(()),
        offset: 0,
    };
    let content = Content {
        magic: VersionedMagic::GgufV3,
        metadata,
        tensor_infos: [("token_embd.weight".to_string(), embedding)].into(),
        tensor_data_offset: 0,
    };
    let err = super::weights::gguf_config(&content, std::path::Path::new("x.gguf")).unwrap_err();
    assert!(err.to_string().contains("token_embd.weight"), "{err}");
}

/// Logits of a fixed feed: three prompts prefilled together, then four decode steps, with the
/// model's attention on `path` (a CPU kernel, or candle's matmuls for `None`).
fn fixed_feed_logits(kv: KvCacheDtype, path: Option<Isa>) -> Vec<Vec<f32>> {
    let mut s = spec(
        ModelSource::Builtin(TinyShape::Tiny),
        QuantizationFlag::Auto,
    );
    s.kv_cache = kv;
    let m = load(&s).unwrap();
    let model = m.model.with_attention(path);
    let prompts: [&[u32]; 3] = [
        &[0, 17, 33, 101, 7],
        &[0, 250],
        &[0, 3, 4, 5, 6, 7, 8, 9, 10],
    ];
    let mut caches: Vec<_> = prompts.iter().map(|_| model.new_cache()).collect();
    let mut out = Vec::new();
    for step in 0..5u32 {
        let decode: Vec<[u32; 1]> = (0..3).map(|i| [40 + 7 * step + i]).collect();
        let mut steps: Vec<SeqStep<'_>> = caches
            .iter_mut()
            .enumerate()
            .map(|(i, cache)| SeqStep {
                tokens: if step == 0 { prompts[i] } else { &decode[i] },
                cache,
            })
            .collect();
        let logits = model.forward(&mut steps).unwrap();
        out.extend(logits.to_vec2::<f32>().unwrap());
    }
    out
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn the_cpu_attention_kernel_computes_candles_attention() {
    let vector = [Isa::Scalar, Isa::Avx2]
        .into_iter()
        .filter(|i| i.supported())
        .collect::<Vec<_>>();
    let candle = fixed_feed_logits(KvCacheDtype::F32, None);
    let range = candle.iter().flatten().fold(0f32, |m, x| m.max(x.abs()));
    for kv in [KvCacheDtype::F32, KvCacheDtype::F16] {
        let runs: Vec<_> = vector
            .iter()
            .map(|isa| fixed_feed_logits(kv, Some(*isa)))
            .collect();
        // The instruction sets agree to the bit on a whole model, prefill and decode.
        for r in &runs[1..] {
            assert_eq!(r, &runs[0], "{kv:?}");
        }
        // f32: only float reassociation apart from candle. f16: keys and values rounded to
        // 11 significant bits move logits by far less than a percent of their range.
        let bound = match kv {
            KvCacheDtype::F32 => 1e-4,
            KvCacheDtype::F16 => 1e-2,
        };
        let diff = max_abs_diff(&runs[0], &candle);
        assert!(diff <= bound * range, "{kv:?}: {diff} vs range {range}");
    }
    // Candle's path with an f16 cache (the accelerator's) agrees with the kernel's too.
    let candle16 = fixed_feed_logits(KvCacheDtype::F16, None);
    let kernel16 = fixed_feed_logits(KvCacheDtype::F16, Some(Isa::detect()));
    let diff = max_abs_diff(&candle16, &kernel16);
    assert!(diff <= 1e-2 * range, "{diff} vs range {range}");
}

#[test]
fn an_f16_cache_takes_half_the_memory_per_token() {
    let per_token = |kv| {
        let mut s = spec(
            ModelSource::Builtin(TinyShape::Tiny),
            QuantizationFlag::Auto,
        );
        s.kv_cache = kv;
        let m = load(&s).unwrap();
        let mut cache = m.model.new_cache();
        m.model
            .forward(&mut [SeqStep {
                tokens: &[0, 5, 6],
                cache: &mut cache,
            }])
            .unwrap();
        (m.info.kv_bytes_per_token, cache.bytes())
    };
    let (f32_token, f32_cache) = per_token(KvCacheDtype::F32);
    let (f16_token, f16_cache) = per_token(KvCacheDtype::F16);
    // 4 layers × K and V × 2 KV heads × 64 dims.
    assert_eq!(f32_token, 4 * 2 * 2 * 64 * 4);
    assert_eq!(f16_token * 2, f32_token);
    assert_eq!(f16_cache * 2, f32_cache);
}

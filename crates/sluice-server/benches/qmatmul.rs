//! The quantized matrix multiply alone: Sluice's weight-stationary integer kernels (q4_0, q8_0
//! and the K-quants Q4_K, Q5_K, Q6_K) on each instruction set this CPU has, against candle's
//! `QMatMul`, on TinyLlama's largest layer shape
//! (the 2048 → 5632 FFN projection) at 1, 4 and 16 rows. Prints a markdown table of
//! multiply-accumulates per second; the ratio column is relative to one row of the same kernel,
//! measured in this run — the batching gain a decode step can get from the linear layers.
//!
//! `cargo bench -p sluice-server --bench qmatmul -- [--iters 20]`
//!
//! `--streaming` instead measures one row — a single-stream decode step — on 24 different
//! matrices of that shape in turn (more than any cache holds), so the weights come from memory
//! as in a real model, against one matrix repeated (from cache): GB/s of weights read.

use std::time::Instant;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use sluice_server::model::qmm::{BlockMatrix, Isa, KMatrix};

/// A named kernel under test: multiplies one activation matrix.
type Kernel<'a> = (String, Box<dyn Fn(&Tensor) + 'a>);
/// One of our kernels on a chosen instruction set.
type Multiply = dyn Fn(&Tensor, Isa);

const N: usize = 5632;
const K: usize = 2048;

fn matrix(rows: usize, cols: usize, seed: u32) -> Tensor {
    let data = sluice_testkit::pseudo_random(rows * cols, seed);
    Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap()
}

/// Median seconds of `iters` calls after one warm-up.
fn time(iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut samples: Vec<f64> = (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[iters / 2]
}

fn main() {
    // SAFETY: first thing in `main`; no other thread exists yet.
    #[allow(unsafe_code)]
    unsafe {
        sluice_server::cli::set_compute_threads(None)
    };
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--test") {
        return; // `cargo test --benches` compiles benches; the timing run is opt-in.
    }
    let iters: usize = args
        .iter()
        .position(|a| a == "--iters")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(20usize)
        .max(1);
    if args.iter().any(|a| a == "--streaming") {
        return streaming();
    }
    let w = matrix(N, K, 1);
    println!("shape [{N}, {K}], median of {iters} calls");
    println!();
    println!("| weights | kernel | rows | GMAC/s | vs 1 row |");
    println!("|---|---|---:|---:|---:|");
    // Each weight type, and whether our K-quant kernel (rather than the q4_0/q8_0 one) runs it.
    let all = [
        (GgmlDType::Q4_0, false),
        (GgmlDType::Q8_0, false),
        (GgmlDType::Q4K, true),
        (GgmlDType::Q5K, true),
        (GgmlDType::Q6K, true),
    ];
    for (ggml, k_quant) in all {
        let format = format!("{ggml:?}");
        let qt = QTensor::quantize(&w, ggml).unwrap();
        let ours: Box<Multiply> = match k_quant {
            false => {
                let m = BlockMatrix::from_qtensor(&qt).unwrap();
                Box::new(move |x, isa| {
                    m.forward_on(x, isa).unwrap();
                })
            }
            true => {
                let m = KMatrix::from_qtensor(&qt).unwrap();
                Box::new(move |x, isa| {
                    m.forward_on(x, isa).unwrap();
                })
            }
        };
        let theirs = QMatMul::from_qtensor(qt).unwrap();
        let mut kernels: Vec<Kernel<'_>> = vec![(
            "candle QMatMul".into(),
            Box::new(|x: &Tensor| {
                theirs.forward(x).unwrap();
            }),
        )];
        for isa in [Isa::Scalar, Isa::Avx2, Isa::Vnni] {
            // K-quants have no 512-bit version: VNNI CPUs run their AVX2 one.
            if isa.supported() && !(k_quant && isa == Isa::Vnni) {
                let ours = &ours;
                kernels.push((
                    format!("sluice {isa:?}"),
                    Box::new(move |x: &Tensor| ours(x, isa)),
                ));
            }
        }
        for (name, run) in &kernels {
            let mut base = 0.0;
            for rows in [1usize, 4, 16] {
                let x = matrix(rows, K, 7);
                // The scalar reference is slow; fewer calls keep the run short.
                let n = if name.ends_with("Scalar") { 3 } else { iters };
                let secs = time(n, || run(&x));
                let gmacs = (rows * N * K) as f64 / secs / 1e9;
                if rows == 1 {
                    base = gmacs;
                }
                println!(
                    "| {format} | {name} | {rows} | {gmacs:.1} | {:.2}x |",
                    gmacs / base
                );
            }
        }
    }
}

/// One activation row through 24 distinct matrices per format: weight GB/s from memory
/// (streaming) and from cache (one matrix repeated).
fn streaming() {
    const COPIES: usize = 24;
    let x = matrix(1, K, 7);
    println!("shape [{N}, {K}], 1 row, {COPIES} matrices");
    println!();
    println!("| weights | MB per matrix | from cache GB/s | from memory GB/s |");
    println!("|---|---:|---:|---:|");
    for ggml in [
        GgmlDType::Q4_0,
        GgmlDType::Q8_0,
        GgmlDType::Q4K,
        GgmlDType::Q5K,
        GgmlDType::Q6K,
    ] {
        let mut bytes = 0;
        let kernels: Vec<Box<dyn Fn()>> = (0..COPIES)
            .map(|c| {
                let qt = QTensor::quantize(&matrix(N, K, c as u32 + 1), ggml).unwrap();
                let x = x.clone();
                let f: Box<dyn Fn()> = match ggml {
                    GgmlDType::Q4_0 | GgmlDType::Q8_0 => {
                        let m = BlockMatrix::from_qtensor(&qt).unwrap();
                        bytes += m.bytes();
                        Box::new(move || {
                            m.forward(&x).unwrap();
                        })
                    }
                    _ => {
                        let m = KMatrix::from_qtensor(&qt).unwrap();
                        bytes += m.bytes();
                        Box::new(move || {
                            m.forward(&x).unwrap();
                        })
                    }
                };
                f
            })
            .collect();
        let per = bytes as f64 / COPIES as f64;
        let hot = time(48, || kernels[0]());
        let cold = time(8, || kernels.iter().for_each(|k| k())) / COPIES as f64;
        println!(
            "| {ggml:?} | {:.2} | {:.1} | {:.1} |",
            per / 1e6,
            per / hot / 1e9,
            per / cold / 1e9
        );
    }
}

//! The kernel against candle's own quantized matmul, the SIMD versions against the reference to
//! the bit, and batch invariance.

use super::*;
use candle_core::quantized::QMatMul;

pub(super) fn matrix(rows: usize, cols: usize, seed: u32) -> Tensor {
    let data = sluice_testkit::pseudo_random(rows * cols, seed);
    Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap()
}

pub(super) fn bits(t: &Tensor) -> Vec<Vec<u32>> {
    t.to_vec2::<f32>()
        .unwrap()
        .into_iter()
        .map(|r| r.into_iter().map(f32::to_bits).collect())
        .collect()
}

pub(super) fn isas() -> Vec<Isa> {
    [Isa::Scalar, Isa::Avx2, Isa::Vnni]
        .into_iter()
        .filter(|i| i.supported())
        .collect()
}

#[test]
fn computes_the_exact_product_of_the_quantized_operands() {
    let (m, n, k) = (8, 64, 512);
    let x = matrix(m, k, 7);
    let xv: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
    for format in [Format::Q4_0, Format::Q8_0] {
        let qw = QTensor::quantize(&matrix(n, k, 1), format.ggml()).unwrap();
        let wd = qw
            .dequantize(&Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let acts = act::Acts::quantize(&xv, m, k, 0);
        let ours = BlockMatrix::from_qtensor(&qw).unwrap().forward(&x).unwrap();
        for (r, row) in ours.to_vec2::<f32>().unwrap().iter().enumerate() {
            for (c, &got) in row.iter().enumerate() {
                let want: f64 = (0..k)
                    .map(|i| {
                        f64::from(wd[c][i])
                            * f64::from(acts.q[r * k + i])
                            * f64::from(acts.d[r * (k / QK) + i / QK])
                    })
                    .sum();
                assert!(
                    (f64::from(got) - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "{format:?} [{r}, {c}]: {got} vs {want}"
                );
            }
        }
    }
}

/// Mean absolute difference between two tensors, relative to the mean magnitude of `exact`.
pub(super) fn relative_error(approx: &Tensor, exact: &Tensor) -> f32 {
    let scale = exact.abs().unwrap().mean_all().unwrap();
    let diff = (approx - exact).unwrap().abs().unwrap().mean_all().unwrap();
    diff.to_scalar::<f32>().unwrap() / scale.to_scalar::<f32>().unwrap()
}

#[test]
fn stays_as_close_to_full_precision_as_candles_quantized_matmul() {
    for format in [Format::Q4_0, Format::Q8_0] {
        let w = matrix(256, 512, 1);
        let x = matrix(8, 512, 7);
        let qw = QTensor::quantize(&w, format.ggml()).unwrap();
        // The product the quantized weights stand for, with f32 activations.
        let exact = x
            .matmul(&qw.dequantize(&Device::Cpu).unwrap().t().unwrap())
            .unwrap();
        let ours = BlockMatrix::from_qtensor(&qw).unwrap().forward(&x).unwrap();
        let theirs = candle_core::Module::forward(&QMatMul::from_qtensor(qw).unwrap(), &x).unwrap();
        // Sluice quantizes activations to 8-bit blocks as llama.cpp does; candle's q8_0 path
        // loses a little less, which is the price of integer dot products.
        let (ours, theirs) = (
            relative_error(&ours, &exact),
            relative_error(&theirs, &exact),
        );
        assert!(ours < 2e-3, "{format:?}: relative error {ours}");
        assert!(
            ours <= theirs * 2.0,
            "{format:?}: relative error {ours}, candle's {theirs}"
        );
    }
}

#[test]
fn every_instruction_set_gives_the_reference_bits() {
    // Widths that leave remainders for every tile shape and task split.
    for format in [Format::Q4_0, Format::Q8_0] {
        let w = BlockMatrix::quantize(&matrix(131, 96, 3), format).unwrap();
        for m in [1, 2, 3, 5, 16, 17] {
            let x = matrix(m, 96, 11 + m as u32);
            let reference = bits(&w.forward_on(&x, Isa::Scalar).unwrap());
            for isa in isas() {
                assert_eq!(
                    bits(&w.forward_on(&x, isa).unwrap()),
                    reference,
                    "{format:?} on {isa:?} with {m} rows"
                );
            }
        }
    }
}

#[test]
fn a_row_gives_the_same_bits_alone_and_in_a_batch() {
    for format in [Format::Q4_0, Format::Q8_0] {
        let w = BlockMatrix::quantize(&matrix(130, 64, 3), format).unwrap();
        let x = matrix(16, 64, 9);
        for isa in isas() {
            let batch = w.forward_on(&x, isa).unwrap();
            for (start, len) in [(6, 2), (0, 5), (0, 1), (7, 1), (15, 1), (3, 9)] {
                let part = w
                    .forward_on(&x.narrow(0, start, len).unwrap(), isa)
                    .unwrap();
                assert_eq!(
                    bits(&part),
                    bits(&batch.narrow(0, start, len).unwrap()),
                    "{format:?} on {isa:?}: rows {start}..{}",
                    start + len
                );
            }
        }
    }
}

/// One q8_0 tile of one block, `weight(e)` for element `e` of every column, against `x`; every
/// instruction set must give the exact product.
fn check_q8_tile(weight: impl Fn(usize) -> i32, x: &[f32]) {
    let data: Vec<u8> = (0..QK * COLS)
        .map(|i| {
            // Packed [group][column][4]: element = group * 4 + i % 4.
            let e = (i / (4 * COLS)) * 4 + i % 4;
            (weight(e) + 128) as u8
        })
        .collect();
    let scales = vec![1.0f32; COLS];
    let weights = kernel::Weights {
        format: Format::Q8_0,
        tiles: 1,
        kb: 1,
        scales: &scales,
        data: &data,
    };
    let acts = act::Acts::quantize(x, 1, QK, Format::Q8_0.offset());
    let exact: i32 = (0..QK).map(|e| weight(e) * i32::from(acts.q[e])).sum();
    let expected = exact as f32 * acts.d[0];
    for isa in isas() {
        let mut out = vec![0f32; COLS];
        let shared = kernel::Out::new(&mut out, 1, COLS);
        // SAFETY: this thread is the only writer.
        #[allow(unsafe_code)]
        unsafe {
            kernel::tiles(isa, &weights, &acts, 0, 1, &shared)
        };
        assert_eq!(out, vec![expected; COLS], "{isa:?}");
    }
}

#[test]
fn extreme_q8_bytes_do_not_saturate() {
    // The AVX2 path sums byte products in i16 pairs; these are the largest pairs possible:
    // -128 × -127 twice (32512), and mixed signs.
    check_q8_tile(|_| -128, &[-1.0; QK]);
    check_q8_tile(|e| if e % 2 == 0 { -128 } else { 127 }, &[1.0; QK]);
    let alternating: Vec<f32> = (0..QK)
        .map(|i| if i % 4 < 2 { -1.0 } else { 1.0 })
        .collect();
    check_q8_tile(|e| if e % 2 == 0 { -128 } else { 127 }, &alternating);
}

#[test]
fn rejects_mismatched_widths_and_other_block_types() {
    let w = BlockMatrix::quantize(&matrix(8, 64, 1), Format::Q4_0).unwrap();
    assert!(w.forward(&matrix(2, 32, 1)).is_err());
    let q4k = QTensor::quantize(&matrix(8, 256, 1), GgmlDType::Q4K).unwrap();
    let err = BlockMatrix::from_qtensor(&q4k).unwrap_err().to_string();
    assert!(err.contains("q4_0 or q8_0"), "{err}");
}

#[test]
fn sizes_count_scales_and_bytes() {
    // 16 columns, 2 blocks each: f32 scales plus the weight bytes.
    let q4 = BlockMatrix::quantize(&matrix(16, 64, 1), Format::Q4_0).unwrap();
    assert_eq!(q4.bytes(), 16 * 2 * (4 + 16));
    let q8 = BlockMatrix::quantize(&matrix(16, 64, 1), Format::Q8_0).unwrap();
    assert_eq!(q8.bytes(), 16 * 2 * (4 + 32));
    // A width that is not a whole tile is padded to one.
    let q4 = BlockMatrix::quantize(&matrix(5, 64, 1), Format::Q4_0).unwrap();
    assert_eq!(q4.bytes(), 8 * 2 * (4 + 16));
}

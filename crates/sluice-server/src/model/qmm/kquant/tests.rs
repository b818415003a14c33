//! The K-quant kernel: the decoder against candle's dequantization to the bit, the packed layout
//! against the decoder, the product against the exact product of the quantized operands, the
//! SIMD version against the reference to the bit, and batch invariance.

use super::super::tests::{bits, isas, matrix, relative_error};
use super::*;
use candle_core::Device;
use candle_core::quantized::QMatMul;

/// Weights with a wide dynamic range across rows and blocks, so scales and mins take many
/// values (including Q6_K's negative scales).
fn varied(rows: usize, cols: usize, seed: u32) -> Tensor {
    let base = sluice_testkit::pseudo_random(rows * cols, seed);
    let data: Vec<f32> = base
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let (r, c) = (i / cols, i % cols);
            let gain = 0.05 + ((r * 7 + c / 16) % 13) as f32 / 4.0;
            let shift = if (c / 32 + r) % 3 == 0 { 0.4 } else { 0.0 };
            (v + shift) * gain
        })
        .collect();
    Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap()
}

#[test]
fn decoding_gives_ggml_values_to_the_bit() {
    for format in KFormat::ALL {
        let q = QTensor::quantize(&varied(6, 512, 2), format.ggml()).unwrap();
        let want = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let raw = q.data().unwrap();
        let gb = format.ggml_bytes();
        let mut negative_scale = false;
        for (row, want) in want.iter().enumerate() {
            for sb in 0..2 {
                let at = row * 2 + sb;
                let c = decode(format, &raw[at * gb..(at + 1) * gb]);
                let len = QK_K / format.subs();
                for e in 0..QK_K {
                    let s = e / len;
                    let q = f32::from(c.q[e]);
                    // ggml's own order of operations, per type.
                    let v = match format {
                        KFormat::Q6K => c.d * f32::from(c.sc[s]) * (q - 32.0),
                        _ => c.d * f32::from(c.sc[s]) * q - c.dmin * f32::from(c.m[s]),
                    };
                    assert_eq!(v.to_bits(), want[sb * QK_K + e].to_bits(), "{format:?}");
                }
                negative_scale |= c.sc.iter().any(|&s| s < 0);
            }
        }
        if format == KFormat::Q6K {
            assert!(
                negative_scale,
                "the data should exercise negative Q6_K scales"
            );
        }
    }
}

#[test]
fn packing_keeps_every_value() {
    for format in KFormat::ALL {
        let q = QTensor::quantize(&varied(11, 256, 5), format.ggml()).unwrap();
        let m = KMatrix::from_qtensor(&q).unwrap();
        let raw = q.data().unwrap();
        let gb = format.ggml_bytes();
        let tb = format.tile_bytes();
        for col in 0..11 {
            let c = decode(format, &raw[col * gb..(col + 1) * gb]);
            let (t, lane) = (col / COLS, col % COLS);
            let block = &m.data[t * tb..(t + 1) * tb];
            for e in 0..QK_K {
                assert_eq!(
                    format.element(block, lane, e),
                    c.q[e],
                    "{format:?} {col} {e}"
                );
            }
            for s in 0..format.subs() {
                let want = (i32::from(c.sc[s]), i32::from(c.m[s]));
                assert_eq!(
                    format.scale_min(block, lane, s),
                    want,
                    "{format:?} {col} {s}"
                );
            }
            assert_eq!(m.scales[t * 2 * COLS + lane], c.d);
            assert_eq!(m.scales[t * 2 * COLS + COLS + lane], c.dmin);
        }
    }
}

#[test]
fn computes_the_exact_product_of_the_quantized_operands() {
    let (m, n, k) = (5, 24, 512);
    let x = matrix(m, k, 7);
    let xv: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
    for format in KFormat::ALL {
        let qw = QTensor::quantize(&varied(n, k, 1), format.ggml()).unwrap();
        let wd = qw
            .dequantize(&Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let acts = act::KActs::quantize(&xv, m, k, format);
        let ours = KMatrix::from_qtensor(&qw).unwrap().forward(&x).unwrap();
        for (r, row) in ours.to_vec2::<f32>().unwrap().iter().enumerate() {
            for (c, &got) in row.iter().enumerate() {
                let want: f64 = (0..k)
                    .map(|i| {
                        let (sb, e) = (i / QK_K, i % QK_K);
                        f64::from(wd[c][i])
                            * f64::from(acts.get(format, r, sb, e))
                            * f64::from(acts.d[r * (k / QK_K) + sb])
                    })
                    .sum();
                let scale: f64 = (0..k)
                    .map(|i| f64::from(wd[c][i]).abs() * f64::from(xv[r * k + i]).abs())
                    .sum();
                assert!(
                    (f64::from(got) - want).abs() <= 1e-5 * scale.max(1.0),
                    "{format:?} [{r}, {c}]: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn stays_as_close_to_full_precision_as_candles_quantized_matmul() {
    for format in KFormat::ALL {
        let w = matrix(256, 1024, 1);
        let x = matrix(8, 1024, 7);
        let qw = QTensor::quantize(&w, format.ggml()).unwrap();
        let exact = x
            .matmul(&qw.dequantize(&Device::Cpu).unwrap().t().unwrap())
            .unwrap();
        let ours = KMatrix::from_qtensor(&qw).unwrap().forward(&x).unwrap();
        // candle quantizes activations to Q8_K for K-quants too: the same scheme, so the same
        // loss is expected.
        let theirs = candle_core::Module::forward(&QMatMul::from_qtensor(qw).unwrap(), &x).unwrap();
        let (ours, theirs) = (
            relative_error(&ours, &exact),
            relative_error(&theirs, &exact),
        );
        assert!(ours < 1e-2, "{format:?}: relative error {ours}");
        assert!(
            ours <= theirs * 1.5,
            "{format:?}: relative error {ours}, candle's {theirs}"
        );
    }
}

#[test]
fn every_instruction_set_gives_the_reference_bits() {
    // Widths that leave remainders for every tile shape and task split.
    for format in KFormat::ALL {
        let w = KMatrix::quantize(&varied(131, 512, 3), format).unwrap();
        for m in [1, 2, 3, 4, 5, 9] {
            let x = matrix(m, 512, 11 + m as u32);
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
    for format in KFormat::ALL {
        let w = KMatrix::quantize(&varied(70, 256, 3), format).unwrap();
        let x = matrix(16, 256, 9);
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

/// The largest sums the i16 stage can see: every weight at its maximum against activations all
/// at +127 or all at -127, with the largest scales. Integer overflow would show as a wrong
/// product; every instruction set must give the exact one.
#[test]
fn extreme_weights_do_not_overflow_the_i16_sums() {
    for format in KFormat::ALL {
        let qmax: u8 = match format {
            KFormat::Q4K => 15,
            KFormat::Q5K => 31,
            KFormat::Q6K => 63,
        };
        let (scale, min): (i8, i8) = match format {
            KFormat::Q6K => (-128, -128),
            _ => (63, 63),
        };
        let canon = Canonical {
            q: [qmax; QK_K],
            sc: [scale; 16],
            m: [min; 16],
            d: 1.0,
            dmin: if format == KFormat::Q6K { 32.0 } else { 1.0 },
        };
        let mut data = vec![0u8; format.tile_bytes()];
        for c in 0..COLS {
            pack(format, &canon, c, &mut data);
        }
        let mut scales = vec![1.0f32; 2 * COLS];
        scales[COLS..].fill(canon.dmin);
        let weights = kernel::KWeights {
            format,
            tiles: 1,
            nsb: 1,
            scales: &scales,
            data: &data,
        };
        for sign in [1.0f32, -1.0] {
            let acts = act::KActs::quantize(&[sign; QK_K], 1, QK_K, format);
            let len = QK_K / format.subs();
            let a = i64::from(acts.get(format, 0, 0, 0));
            let per_sub = i64::from(scale) * i64::from(qmax) * a * len as i64
                - i64::from(min) * a * len as i64 * if format == KFormat::Q6K { 32 } else { 1 };
            let exact = per_sub * format.subs() as i64;
            let expected = exact as f64 * f64::from(acts.d[0]);
            for isa in isas() {
                let mut out = vec![0f32; COLS];
                let shared = super::super::kernel::Out::new(&mut out, 1, COLS);
                // SAFETY: this thread is the only writer.
                #[allow(unsafe_code)]
                unsafe {
                    kernel::tiles(isa, &weights, &acts, 0, 1, &shared)
                };
                for v in out {
                    assert!(
                        (f64::from(v) - expected).abs() <= 1e-6 * expected.abs(),
                        "{format:?} on {isa:?}, sign {sign}: {v} vs {expected}"
                    );
                }
            }
        }
    }
}

#[test]
fn rejects_mismatched_widths_and_other_block_types() {
    let w = KMatrix::quantize(&matrix(8, 256, 1), KFormat::Q4K).unwrap();
    assert!(w.forward(&matrix(2, 512, 1)).is_err());
    let q4 = QTensor::quantize(&matrix(8, 256, 1), GgmlDType::Q4_0).unwrap();
    let err = KMatrix::from_qtensor(&q4).unwrap_err().to_string();
    assert!(err.contains("q4k, q5k or q6k"), "{err}");
}

#[test]
fn sizes_follow_the_layout() {
    // 16 columns, 2 super-blocks: per column and super-block, d and dmin as f32, nibbles, high
    // bits and one byte per sub-block scale (and min).
    let sizes = [
        (KFormat::Q4K, 8 + 128 + 8 + 8),
        (KFormat::Q5K, 8 + 128 + 32 + 8 + 8),
        (KFormat::Q6K, 8 + 128 + 64 + 16),
    ];
    for (format, per) in sizes {
        let m = KMatrix::quantize(&matrix(16, 512, 1), format).unwrap();
        assert_eq!(m.bytes(), 16 * 2 * per, "{format:?}");
    }
}

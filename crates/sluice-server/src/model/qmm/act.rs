//! Activations quantized the way ggml's `q8_0` does it: each row is cut into 32-wide blocks, and
//! each block becomes 32 signed bytes in `-127..=127` plus one f32 scale. Every row is quantized on
//! its own, so a row's bytes never depend on its batch-mates.

use super::QK;

/// A quantized `[m, k]` activation matrix.
#[derive(Debug)]
pub struct Acts {
    pub m: usize,
    pub kb: usize,
    /// `[m][k]` signed bytes.
    pub q: Vec<i8>,
    /// `[m][kb]` block scales.
    pub d: Vec<f32>,
    /// `[m][kb]`: `-offset ×` the sum of the block's bytes. Weights are stored as unsigned bytes
    /// `w + offset`, and starting the integer sum here turns `Σ (w + offset)·a` back into the
    /// exact `Σ w·a` without touching the weights.
    pub init: Vec<i32>,
}

impl Acts {
    /// Quantizes `x` (`[m, k]` row-major, `k` a multiple of [`QK`]); `offset` is the bias the
    /// weight bytes carry (8 for q4_0 nibbles, 128 for q8_0).
    pub fn quantize(x: &[f32], m: usize, k: usize, offset: i32) -> Self {
        assert_eq!(x.len(), m * k, "activations are not [m, k]");
        let kb = k / QK;
        let mut a = Self {
            m,
            kb,
            q: vec![0i8; m * k],
            d: vec![0f32; m * kb],
            init: vec![0i32; m * kb],
        };
        // The same IEEE operations in every version (Rust never fuses them), so the bytes are
        // identical whichever runs; the wider ones only vectorize the loops.
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU has AVX-512 F/BW (checked just above).
            #[allow(unsafe_code)]
            unsafe {
                quantize_avx512(x, &mut a, offset)
            };
            return a;
        } else if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            #[allow(unsafe_code)]
            unsafe {
                quantize_avx2(x, &mut a, offset)
            };
            return a;
        }
        quantize_into(x, &mut a, offset);
        a
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx2")]
fn quantize_avx512(x: &[f32], a: &mut Acts, offset: i32) {
    quantize_into(x, a, offset);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn quantize_avx2(x: &[f32], a: &mut Acts, offset: i32) {
    quantize_into(x, a, offset);
}

#[inline(always)]
fn quantize_into(x: &[f32], a: &mut Acts, offset: i32) {
    for (((src, dst), scale), start) in x
        .chunks_exact(QK)
        .zip(a.q.chunks_exact_mut(QK))
        .zip(a.d.iter_mut())
        .zip(a.init.iter_mut())
    {
        // A compare-and-select rather than `f32::max`, whose NaN rules keep it scalar.
        let amax = src.iter().fold(0f32, |acc, v| {
            let m = v.abs();
            if m > acc { m } else { acc }
        });
        // Exactly 0 unless the block holds a NaN or an infinity, then NaN: added to the scale it
        // makes the block's output NaN rather than silently finite.
        let poison = src.iter().fold(0f32, |acc, v| acc + v * 0.0);
        let delta = amax / 127.0 + poison;
        let inv = if delta > 0.0 { 1.0 / delta } else { 0.0 };
        for (o, v) in dst.iter_mut().zip(src) {
            *o = round_to_i8(v * inv);
        }
        *scale = delta;
        *start = -offset * dst.iter().map(|&v| i32::from(v)).sum::<i32>();
    }
}

/// Rounds half to even, as llama.cpp's SIMD quantizers do, in two vectorizable operations:
/// adding 1.5 × 2²³ to an f32 of magnitude below 2²² rounds it to an integer with the FPU's own
/// rounding, and that integer is then the low bits of the sum's encoding (two's complement), so
/// its low byte is the answer — no libm call and no saturating float-to-int conversion. The clamp
/// keeps finite values in range; a NaN's payload could give any byte, so the result is clamped
/// to `-127..` as well (never -128, which the AVX2 kernel's sign trick cannot negate).
#[inline(always)]
pub(super) fn round_to_i8(x: f32) -> i8 {
    const MAGIC: f32 = 12_582_912.0;
    ((x.clamp(-127.0, 127.0) + MAGIC).to_bits() as u8 as i8).max(-127)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_within_half_a_step() {
        let x: Vec<f32> = (0..64).map(|i| (i as f32 - 20.0) * 0.37).collect();
        let a = Acts::quantize(&x, 1, 64, 8);
        for (blk, chunk) in x.chunks(QK).enumerate() {
            let d = a.d[blk];
            for (i, v) in chunk.iter().enumerate() {
                let back = f32::from(a.q[blk * QK + i]) * d;
                assert!((back - v).abs() <= d / 2.0 + 1e-6, "{back} vs {v}");
            }
            let max = a.q[blk * QK..(blk + 1) * QK]
                .iter()
                .map(|v| v.unsigned_abs())
                .max();
            assert_eq!(max, Some(127), "the largest element uses the full range");
        }
    }

    #[test]
    fn corrections_cancel_the_weight_offset() {
        let x: Vec<f32> = (0..32).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let a = Acts::quantize(&x, 1, 32, 8);
        let w: Vec<i32> = (0..32).map(|i| (i % 16) - 8).collect();
        let exact: i32 = w.iter().zip(&a.q).map(|(w, a)| w * i32::from(*a)).sum();
        let shifted: i32 = w
            .iter()
            .zip(&a.q)
            .map(|(w, a)| (w + 8) * i32::from(*a))
            .sum();
        assert_eq!(a.init[0] + shifted, exact);
    }

    #[test]
    fn every_version_quantizes_to_the_same_bytes() {
        let x: Vec<f32> = (0..4 * 96)
            .map(|i| ((i * 7919) % 1000) as f32 / 37.0 - 13.0)
            .collect();
        let fast = Acts::quantize(&x, 4, 96, 8);
        let mut reference = Acts {
            m: 4,
            kb: 3,
            q: vec![0; 4 * 96],
            d: vec![0.0; 12],
            init: vec![0; 12],
        };
        quantize_into(&x, &mut reference, 8);
        assert_eq!(fast.q, reference.q);
        assert_eq!(fast.d, reference.d);
        assert_eq!(fast.init, reference.init);
    }

    #[test]
    fn rounds_half_to_even_and_clamps() {
        let cases = [
            (0.5, 0),
            (1.5, 2),
            (-2.5, -2),
            (0.49, 0),
            (126.6, 127),
            (-126.6, -127),
            (300.0, 127),
            (f32::NEG_INFINITY, -127),
            (f32::NAN, 0),
        ];
        for (x, want) in cases {
            assert_eq!(round_to_i8(x), want, "{x}");
        }
        // A NaN whose payload's low byte is 0x80 must not become -128.
        assert!(round_to_i8(f32::from_bits(0x7FC0_0080)) >= -127);
    }

    #[test]
    fn a_nan_activation_makes_its_block_scale_nan() {
        let mut x = vec![1.0f32; 64];
        x[3] = f32::NAN;
        let a = Acts::quantize(&x, 1, 64, 8);
        assert!(a.d[0].is_nan());
        assert_eq!(a.d[1], 1.0 / 127.0);
        assert!(a.q.iter().all(|&v| v >= -127));
    }

    #[test]
    fn an_all_zero_block_has_zero_scale_and_bytes() {
        let a = Acts::quantize(&[0.0; 32], 1, 32, 128);
        assert_eq!(a.d, vec![0.0]);
        assert!(a.q.iter().all(|&v| v == 0));
        assert_eq!(a.init, vec![0]);
    }
}

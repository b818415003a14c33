//! Activations for the K-quant kernel, quantized as ggml's Q8_K: one f32 scale per 256-wide
//! super-block and signed bytes in `-127..=127`, laid out in the weights' interleaved group order
//! (see [`KFormat`]) with the sum of each sub-block's bytes beside them. Every row is quantized
//! on its own, so a row's bytes never depend on its batch-mates.

use super::super::act::round_to_i8;
use super::{KFormat, QK_K};

/// A quantized `[m, k]` activation matrix.
#[derive(Debug)]
pub struct KActs {
    pub m: usize,
    /// Super-blocks per row.
    pub nsb: usize,
    /// `[m][nsb][256]` signed bytes in interleaved group order.
    pub q: Vec<i8>,
    /// `[m][nsb]` scales.
    pub d: Vec<f32>,
    /// `[m][nsb][pair]`: the sums of the pair's two sub-blocks' bytes as two i16 (first in the
    /// low half), the form `madd` multiplies by a column's two mins.
    pub sums: Vec<i32>,
}

impl KActs {
    /// Quantizes `x` (`[m, k]` row-major, `k` a multiple of [`QK_K`]) for `format`'s layout.
    pub fn quantize(x: &[f32], m: usize, k: usize, format: KFormat) -> Self {
        assert_eq!(x.len(), m * k, "activations are not [m, k]");
        let nsb = k / QK_K;
        let pairs = format.subs() / 2;
        let mut a = Self {
            m,
            nsb,
            q: vec![0i8; m * k],
            d: vec![0f32; m * nsb],
            sums: vec![0i32; m * nsb * pairs],
        };
        let len = QK_K / format.subs();
        for (b, src) in x.chunks_exact(QK_K).enumerate() {
            let amax = src.iter().fold(0f32, |acc, v| acc.max(v.abs()));
            // Exactly 0 unless the block holds a NaN or an infinity, then NaN (see q8_0's).
            let poison = src.iter().fold(0f32, |acc, v| acc + v * 0.0);
            let delta = amax / 127.0 + poison;
            let inv = if delta > 0.0 { 1.0 / delta } else { 0.0 };
            a.d[b] = delta;
            let dst = &mut a.q[b * QK_K..(b + 1) * QK_K];
            let mut sub_sums = [0i32; 16];
            for (e, v) in src.iter().enumerate() {
                let q = round_to_i8(v * inv);
                let (g, j) = format.position(e);
                dst[g * 4 + j] = q;
                sub_sums[e / len] += i32::from(q);
            }
            for (p, sum) in a.sums[b * pairs..(b + 1) * pairs].iter_mut().enumerate() {
                // |sum| ≤ 32 · 127, so each fits an i16.
                let (lo, hi) = (sub_sums[2 * p] as i16, sub_sums[2 * p + 1] as i16);
                *sum = i32::from(lo as u16) | (i32::from(hi) << 16);
            }
        }
        a
    }

    /// Element `e` (natural order) of super-block `sb` of row `r`.
    pub fn get(&self, format: KFormat, r: usize, sb: usize, e: usize) -> i32 {
        let (g, j) = format.position(e);
        i32::from(self.q[(r * self.nsb + sb) * QK_K + g * 4 + j])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_follow_the_interleaved_order_and_sums_match() {
        let x: Vec<f32> = (0..2 * QK_K)
            .map(|i| ((i * 37) % 101) as f32 - 50.0)
            .collect();
        for format in KFormat::ALL {
            let a = KActs::quantize(&x, 1, 2 * QK_K, format);
            let len = QK_K / format.subs();
            for sb in 0..2 {
                let d = a.d[sb];
                for e in 0..QK_K {
                    let back = a.get(format, 0, sb, e) as f32 * d;
                    assert!((back - x[sb * QK_K + e]).abs() <= d / 2.0 + 1e-5);
                }
                for p in 0..format.subs() / 2 {
                    let packed = a.sums[sb * format.subs() / 2 + p];
                    let want = |s: usize| -> i32 {
                        (s * len..(s + 1) * len)
                            .map(|e| a.get(format, 0, sb, e))
                            .sum()
                    };
                    assert_eq!(i32::from(packed as i16), want(2 * p), "{format:?}");
                    assert_eq!(packed >> 16, want(2 * p + 1), "{format:?}");
                }
            }
        }
    }

    #[test]
    fn a_nan_poisons_only_its_super_block() {
        let mut x = vec![1.0f32; 2 * QK_K];
        x[300] = f32::NAN;
        let a = KActs::quantize(&x, 1, 2 * QK_K, KFormat::Q4K);
        assert_eq!(a.d[0], 1.0 / 127.0);
        assert!(a.d[1].is_nan());
        assert!(a.q.iter().all(|&v| v >= -127));
    }
}

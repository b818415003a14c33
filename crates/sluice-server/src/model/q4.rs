//! A weight-stationary q4_0 matrix multiply for CPU batches.
//!
//! Stock candle multiplies a q4_0 matrix one activation row at a time, so a decode step over 16
//! sequences reads every weight 16 times and a batch gains almost nothing. Here each 32-weight
//! block is unpacked once and applied to every row of the batch while it sits in registers: the
//! weights are read once per step, whatever the batch size. Activations stay f32 (candle
//! quantizes them to 8 bits), and every row is computed in the same order regardless of the
//! batch size, so a sequence's logits do not depend on its batch-mates.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Result, Tensor};
use half::f16;
use rayon::prelude::*;

const QK: usize = 32;
/// Bytes of one ggml `block_q4_0`: an f16 scale and 16 bytes of packed nibbles.
const BLOCK_BYTES: usize = 18;
/// Output columns per parallel work item; large enough to amortise scheduling.
const COLS_PER_TASK: usize = 64;

/// A `[n, k]` q4_0 weight matrix in ggml's block layout, split into scales and nibbles.
#[derive(Debug, Clone)]
pub struct Q4Matrix {
    n: usize,
    k: usize,
    scales: Vec<f32>,
    nibbles: Vec<u8>,
}

impl Q4Matrix {
    /// Takes the blocks of a q4_0 `QTensor` as they are (no requantization).
    pub fn from_qtensor(q: &QTensor) -> Result<Self> {
        if q.dtype() != GgmlDType::Q4_0 {
            candle_core::bail!("expected a q4_0 tensor, got {:?}", q.dtype());
        }
        let (n, k) = q.shape().dims2()?;
        if k % QK != 0 {
            candle_core::bail!("q4_0 rows must be a multiple of {QK} wide, got {k}");
        }
        let data = q.data()?;
        let blocks = n * k / QK;
        if data.len() != blocks * BLOCK_BYTES {
            candle_core::bail!(
                "q4_0 tensor holds {} bytes, expected {}",
                data.len(),
                blocks * BLOCK_BYTES
            );
        }
        let mut scales = Vec::with_capacity(blocks);
        let mut nibbles = Vec::with_capacity(blocks * QK / 2);
        for b in data.chunks_exact(BLOCK_BYTES) {
            scales.push(f16::from_le_bytes([b[0], b[1]]).to_f32());
            nibbles.extend_from_slice(&b[2..]);
        }
        Ok(Self {
            n,
            k,
            scales,
            nibbles,
        })
    }

    /// Quantizes a full-precision `[n, k]` matrix with ggml's q4_0 rounding.
    pub fn quantize(w: &Tensor) -> Result<Self> {
        Self::from_qtensor(&QTensor::quantize(
            &w.to_dtype(candle_core::DType::F32)?,
            GgmlDType::Q4_0,
        )?)
    }

    pub fn bytes(&self) -> usize {
        self.scales.len() * 2 + self.nibbles.len()
    }

    /// `x`: `[m, k]` f32 → `[m, n]` f32.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (m, k) = x.dims2()?;
        if k != self.k {
            candle_core::bail!(
                "q4_0 matmul: input width {k} does not match weight width {}",
                self.k
            );
        }
        let x = x
            .to_dtype(candle_core::DType::F32)?
            .contiguous()?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let kb = k / QK;
        // Column-major scratch so each task writes one contiguous chunk.
        let mut out_t = vec![0f32; self.n * m];
        out_t
            .par_chunks_mut(COLS_PER_TASK * m)
            .enumerate()
            .for_each(|(task, chunk)| {
                let first = task * COLS_PER_TASK;
                let cols = chunk.len() / m;
                let mut wbuf = vec![0f32; TILE * k];
                let mut c = 0;
                while c < cols {
                    let width = TILE.min(cols - c);
                    let col = first + c;
                    let scales = &self.scales[col * kb..(col + width) * kb];
                    let nibbles = &self.nibbles[col * kb * QK / 2..(col + width) * kb * QK / 2];
                    let out = &mut chunk[c * m..(c + width) * m];
                    if m <= DIRECT_MAX_ROWS {
                        direct(scales, nibbles, &x, kb, width, out);
                    } else {
                        unpack(scales, nibbles, kb, width, &mut wbuf);
                        tile(&wbuf, &x, kb, width, out);
                    }
                    c += width;
                }
            });
        let mut out = vec![0f32; m * self.n];
        for (col, vals) in out_t.chunks_exact(m).enumerate() {
            for (row, v) in vals.iter().enumerate() {
                out[row * self.n + col] = *v;
            }
        }
        Tensor::from_vec(out, (m, self.n), &Device::Cpu)
    }
}

/// Output columns computed together: each activation block is loaded once for all of them.
const TILE: usize = 4;
/// Accumulator lanes per (row, column): one 256-bit vector of f32.
const LANES: usize = 8;
/// Rows computed together, sized so the accumulators stay in registers.
const ROWS: usize = 2;
/// Up to this many rows, unpacking each block per row beats staging a dequantized strip.
const DIRECT_MAX_ROWS: usize = 2;

/// Small batches: dequantize each block in registers as it is used. Computes exactly what
/// [`tile`] computes (same values, same order), so the choice never changes a row's result.
fn direct(scales: &[f32], nibbles: &[u8], x: &[f32], kb: usize, width: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        #[allow(unsafe_code)]
        unsafe {
            return direct_avx2(scales, nibbles, x, kb, width, out);
        }
    }
    direct_body(scales, nibbles, x, kb, width, out, |a, b, c| a * b + c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn direct_avx2(
    scales: &[f32],
    nibbles: &[u8],
    x: &[f32],
    kb: usize,
    width: usize,
    out: &mut [f32],
) {
    direct_body(scales, nibbles, x, kb, width, out, f32::mul_add)
}

#[inline(always)]
fn direct_body(
    scales: &[f32],
    nibbles: &[u8],
    x: &[f32],
    kb: usize,
    width: usize,
    out: &mut [f32],
    fma: impl Fn(f32, f32, f32) -> f32 + Copy,
) {
    let m = out.len() / width;
    let k = kb * QK;
    for r in 0..m {
        let mut acc = [[0f32; LANES]; TILE];
        for b in 0..kb {
            let a: &[f32; QK] = x[r * k + b * QK..r * k + b * QK + QK]
                .try_into()
                .expect("32-wide block");
            for (c, lanes) in acc.iter_mut().enumerate().take(width) {
                let block = c * kb + b;
                let d = scales[block];
                let packed: &[u8; 16] = nibbles[block * 16..block * 16 + 16]
                    .try_into()
                    .expect("16-byte block");
                let mut w = [0f32; QK];
                dequantize_block(packed, d, &mut w);
                for j in 0..QK / LANES {
                    for l in 0..LANES {
                        lanes[l] = fma(w[j * LANES + l], a[j * LANES + l], lanes[l]);
                    }
                }
            }
        }
        for c in 0..width {
            out[c * m + r] = acc[c].iter().sum();
        }
    }
}

/// ggml's q4_0 block: low nibbles are elements 0..16, high nibbles 16..32, offset by 8.
#[inline(always)]
fn dequantize_block(packed: &[u8], d: f32, w: &mut [f32; QK]) {
    for i in 0..16 {
        w[i] = ((packed[i] & 0x0F) as i32 - 8) as f32 * d;
        w[i + 16] = ((packed[i] >> 4) as i32 - 8) as f32 * d;
    }
}

/// Dequantizes `width` columns into `wbuf`, laid out `[block][column][32]` so one block of all
/// the tile's columns is contiguous. Done once per column strip, whatever the batch size.
fn unpack(scales: &[f32], nibbles: &[u8], kb: usize, width: usize, wbuf: &mut [f32]) {
    wbuf.fill(0.0);
    for c in 0..width {
        for b in 0..kb {
            let block = c * kb + b;
            let d = scales[block];
            let packed = &nibbles[block * 16..block * 16 + 16];
            let w: &mut [f32; QK] = (&mut wbuf[(b * TILE + c) * QK..(b * TILE + c + 1) * QK])
                .try_into()
                .expect("32-wide block");
            dequantize_block(packed, d, w);
        }
    }
}

/// `width` (≤ [`TILE`]) output columns for every row, written column-major into `out`.
fn tile(wbuf: &[f32], x: &[f32], kb: usize, width: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above); the function only changes
        // how the same safe code is compiled.
        #[allow(unsafe_code)]
        unsafe {
            return tile_avx2(wbuf, x, kb, width, out);
        }
    }
    tile_body(wbuf, x, kb, width, out, |a, b, c| a * b + c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn tile_avx2(wbuf: &[f32], x: &[f32], kb: usize, width: usize, out: &mut [f32]) {
    tile_body(wbuf, x, kb, width, out, f32::mul_add)
}

/// The weight-stationary loop: rows stream past the unpacked weights in pairs, accumulating in
/// registers. Each row accumulates in its own lanes in a fixed order, so its result does not
/// depend on how many rows share the batch (an odd last row is paired with itself and the
/// duplicate discarded).
#[inline(always)]
fn tile_body(
    wbuf: &[f32],
    x: &[f32],
    kb: usize,
    width: usize,
    out: &mut [f32],
    fma: impl Fn(f32, f32, f32) -> f32 + Copy,
) {
    let m = out.len() / width;
    let k = kb * QK;
    let mut r0 = 0;
    while r0 < m {
        let rows = [r0, (r0 + 1).min(m - 1)];
        let mut acc = [[[0f32; LANES]; TILE]; ROWS];
        for b in 0..kb {
            let w: &[f32; TILE * QK] = wbuf[b * TILE * QK..(b + 1) * TILE * QK]
                .try_into()
                .expect("tile block");
            for (ri, &r) in rows.iter().enumerate() {
                let a: &[f32; QK] = x[r * k + b * QK..r * k + b * QK + QK]
                    .try_into()
                    .expect("32-wide block");
                for c in 0..TILE {
                    for j in 0..QK / LANES {
                        for l in 0..LANES {
                            acc[ri][c][l] =
                                fma(w[c * QK + j * LANES + l], a[j * LANES + l], acc[ri][c][l]);
                        }
                    }
                }
            }
        }
        for (ri, &r) in rows.iter().enumerate() {
            if ri > 0 && r == rows[0] {
                break;
            }
            for c in 0..width {
                out[c * m + r] = acc[ri][c].iter().sum();
            }
        }
        r0 += ROWS;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(rows: usize, cols: usize, seed: u32) -> Tensor {
        let data: Vec<f32> = (0..rows * cols)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 2001) as f32
                    / 1000.0
                    - 1.0
            })
            .collect();
        Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap()
    }

    #[test]
    fn matches_candles_q4_0_matmul_closely() {
        let w = matrix(96, 256, 1);
        let x = matrix(5, 256, 7);
        let ours = Q4Matrix::quantize(&w).unwrap().forward(&x).unwrap();
        let q = candle_core::quantized::QMatMul::from_qtensor(
            QTensor::quantize(&w, GgmlDType::Q4_0).unwrap(),
        )
        .unwrap();
        let theirs = candle_core::Module::forward(&q, &x).unwrap();
        let scale = theirs
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let diff = (ours - theirs)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        // candle quantizes the activations to 8 bits; we keep them f32.
        assert!(
            diff / scale < 1e-2,
            "max abs difference {diff} at scale {scale}"
        );
    }

    #[test]
    fn a_row_gives_the_same_bits_alone_and_in_a_batch() {
        let w = Q4Matrix::quantize(&matrix(130, 64, 3)).unwrap();
        let x = matrix(16, 64, 9);
        let batch = w.forward(&x).unwrap();
        let pair = w.forward(&x.narrow(0, 6, 2).unwrap()).unwrap();
        assert_eq!(
            pair.narrow(0, 1, 1).unwrap().to_vec2::<f32>().unwrap(),
            batch.narrow(0, 7, 1).unwrap().to_vec2::<f32>().unwrap()
        );
        let odd = w.forward(&x.narrow(0, 0, 5).unwrap()).unwrap();
        assert_eq!(
            odd.narrow(0, 4, 1).unwrap().to_vec2::<f32>().unwrap(),
            batch.narrow(0, 4, 1).unwrap().to_vec2::<f32>().unwrap()
        );
        for r in [0, 7, 15] {
            let alone = w.forward(&x.narrow(0, r, 1).unwrap()).unwrap();
            let same = batch.narrow(0, r, 1).unwrap();
            assert_eq!(
                alone.to_vec2::<f32>().unwrap(),
                same.to_vec2::<f32>().unwrap()
            );
        }
    }

    #[test]
    fn rejects_mismatched_widths() {
        let w = Q4Matrix::quantize(&matrix(8, 64, 1)).unwrap();
        assert!(w.forward(&matrix(2, 32, 1)).is_err());
    }
}

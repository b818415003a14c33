//! The weight-stationary integer kernel for ggml's K-quants: Q4_K, Q5_K and Q6_K (and so the
//! `_M`/`_S` mixes, which are made of them).
//!
//! A K-quant super-block holds 256 weights of one row: one f16 scale `d` (and for Q4_K/Q5_K a
//! second, `dmin`) plus small integer scales per sub-block — eight of 32 weights with a 6-bit
//! scale and a 6-bit min (Q4_K, Q5_K), or sixteen of 16 weights with an 8-bit signed scale
//! (Q6_K). Every weight is `d·sc·q − dmin·m` with `q` unsigned (4, 5 or 6 bits); Q6_K's
//! `d·sc·(q − 32)` is the same form with `m = sc` and `dmin = 32·d` (a power of two: exact).
//!
//! So a super-block's dot product with an activation row quantized per 256 (`a = ad·qa`, as
//! ggml's Q8_K) is `d·ad·Σₛ scₛ·(Σ q·qa) − dmin·ad·Σₛ mₛ·(Σ qa)`: two exact integer sums and two
//! fused multiply-adds per 256 weights. At load the blocks are repacked, as for q4_0 (see
//! [`super::Format`]), into tiles of [`COLS`] columns side by side, and the two sub-blocks of a
//! pair are interleaved two bytes at a time, so `maddubs` leaves one sub-block's partial sum in
//! each i16 half of a column's lane and a single `madd` by the pair's two scales finishes both.
//! The per-format layout is in [`KFormat`]; the values are those of the file (no requantization).

mod act;
mod kernel;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Result, Tensor};
use half::f16;

use super::{COLS, Isa};

/// Weights per super-block (ggml's `QK_K`).
pub const QK_K: usize = 256;
/// Packed nibble bytes per tile per super-block: two groups per 32-byte register.
const NIB_BYTES: usize = QK_K / 2 * COLS;

/// A K-quant type and its packed layout, per tile of [`COLS`] columns and per super-block:
///
/// 1. nibbles, `[pair][register][column][4]`: within a pair of sub-blocks, group `gi`'s low
///    four bits sit in register `gi % half` (low nibble for `gi < half`, high nibble after),
///    `half` being half the pair's groups;
/// 2. high bits (Q5_K: one per weight, Q6_K: two), `[register][column][4]`: group `G` of the
///    super-block in bit `G % 8` of register `G / 8` (Q5_K) or bits `2·(G % 4)..` of register
///    `G / 4` (Q6_K);
/// 3. sub-block scales as i8 pairs, `[pair][column][2]`, then (Q4_K, Q5_K) the mins likewise.
///
/// A group is four bytes of one column: two consecutive weights of the pair's first sub-block,
/// then the same two of its second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KFormat {
    Q4K,
    Q5K,
    Q6K,
}

impl KFormat {
    pub const ALL: [KFormat; 3] = [KFormat::Q4K, KFormat::Q5K, KFormat::Q6K];

    pub fn ggml(self) -> GgmlDType {
        match self {
            KFormat::Q4K => GgmlDType::Q4K,
            KFormat::Q5K => GgmlDType::Q5K,
            KFormat::Q6K => GgmlDType::Q6K,
        }
    }

    /// Sub-blocks per super-block.
    pub const fn subs(self) -> usize {
        match self {
            KFormat::Q4K | KFormat::Q5K => 8,
            KFormat::Q6K => 16,
        }
    }

    /// Weights per sub-block.
    const fn sub_len(self) -> usize {
        QK_K / self.subs()
    }

    /// Groups per pair of sub-blocks.
    const fn pair_groups(self) -> usize {
        self.sub_len() / 2
    }

    /// Groups whose `maddubs` pairs can be summed in i16 before they could overflow: each i16
    /// is at most `2 · qmax · 127` (15 → 3,810; 31 → 7,874; 63 → 16,002).
    const fn i16_groups(self) -> usize {
        match self {
            KFormat::Q4K => 8,
            KFormat::Q5K => 4,
            KFormat::Q6K => 2,
        }
    }

    const fn high_bytes(self) -> usize {
        match self {
            KFormat::Q4K => 0,
            KFormat::Q5K => QK_K / 8 * COLS,
            KFormat::Q6K => QK_K / 4 * COLS,
        }
    }

    const fn has_mins(self) -> bool {
        !matches!(self, KFormat::Q6K)
    }

    /// Packed bytes per tile per super-block.
    pub const fn tile_bytes(self) -> usize {
        let scale_bytes = self.subs() * COLS;
        NIB_BYTES + self.high_bytes() + scale_bytes * if self.has_mins() { 2 } else { 1 }
    }

    /// ggml's bytes per super-block.
    const fn ggml_bytes(self) -> usize {
        match self {
            KFormat::Q4K => 144,
            KFormat::Q5K => 176,
            KFormat::Q6K => 210,
        }
    }

    /// Where weight `e` (0..256) of a super-block goes in the interleaved stream: its group and
    /// its byte within the group.
    const fn position(self, e: usize) -> (usize, usize) {
        let len = self.sub_len();
        let (s, off) = (e / len, e % len);
        let group = (s / 2) * self.pair_groups() + off / 2;
        (group, (s % 2) * 2 + off % 2)
    }

    /// The nibble register and whether the group is in its high nibble.
    const fn nibble_register(self, group: usize) -> (usize, bool) {
        let pg = self.pair_groups();
        let half = pg / 2;
        let (pair, gi) = (group / pg, group % pg);
        (pair * half + gi % half, gi >= half)
    }

    /// Weight `e`'s unsigned value in one packed tile super-block of column `c`.
    fn element(self, block: &[u8], c: usize, e: usize) -> u8 {
        let (g, j) = self.position(e);
        let (reg, high) = self.nibble_register(g);
        let byte = block[(reg * COLS + c) * 4 + j];
        let low = if high { byte >> 4 } else { byte & 0x0F };
        let hb = &block[NIB_BYTES..];
        low | match self {
            KFormat::Q4K => 0,
            KFormat::Q5K => ((hb[((g / 8) * COLS + c) * 4 + j] >> (g % 8)) & 1) << 4,
            KFormat::Q6K => ((hb[((g / 4) * COLS + c) * 4 + j] >> (2 * (g % 4))) & 3) << 4,
        }
    }

    /// Sub-block `s`'s scale (and min) for column `c`, from one packed tile super-block.
    fn scale_min(self, block: &[u8], c: usize, s: usize) -> (i32, i32) {
        let at = NIB_BYTES + self.high_bytes();
        let idx = ((s / 2) * COLS + c) * 2 + s % 2;
        let sc = i32::from(block[at + idx] as i8);
        let m = if self.has_mins() {
            i32::from(block[at + self.subs() * COLS + idx] as i8)
        } else {
            sc
        };
        (sc, m)
    }
}

/// One super-block of one row as integers: `w[e] = d·sc[s]·q[e] − dmin·m[s]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Canonical {
    pub q: [u8; QK_K],
    /// Per sub-block (the first [`KFormat::subs`] entries).
    pub sc: [i8; 16],
    pub m: [i8; 16],
    pub d: f32,
    pub dmin: f32,
}

/// ggml's 12-byte packing of eight 6-bit scales and mins (`get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

fn read_f16(b: &[u8]) -> f32 {
    f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// Decodes one ggml super-block (`src` is exactly [`KFormat::ggml_bytes`] long), following
/// ggml's `dequantize_row_q{4,5,6}_K`.
pub(crate) fn decode(format: KFormat, src: &[u8]) -> Canonical {
    let mut out = Canonical {
        q: [0; QK_K],
        sc: [0; 16],
        m: [0; 16],
        d: 0.0,
        dmin: 0.0,
    };
    match format {
        KFormat::Q4K | KFormat::Q5K => {
            out.d = read_f16(&src[0..2]);
            out.dmin = read_f16(&src[2..4]);
            let scales = &src[4..16];
            for s in 0..8 {
                let (sc, m) = scale_min_k4(s, scales);
                // 6-bit values: always in i8 range.
                (out.sc[s], out.m[s]) = (sc as i8, m as i8);
            }
            let (qh, qs) = if format == KFormat::Q5K {
                (Some(&src[16..48]), &src[48..176])
            } else {
                (None, &src[16..144])
            };
            for j in 0..4 {
                for l in 0..32 {
                    let byte = qs[32 * j + l];
                    let (mut lo, mut hi) = (byte & 0xF, byte >> 4);
                    if let Some(qh) = qh {
                        lo |= ((qh[l] >> (2 * j)) & 1) << 4;
                        hi |= ((qh[l] >> (2 * j + 1)) & 1) << 4;
                    }
                    out.q[64 * j + l] = lo;
                    out.q[64 * j + 32 + l] = hi;
                }
            }
        }
        KFormat::Q6K => {
            let (ql, qh) = (&src[0..128], &src[128..192]);
            for (s, &b) in src[192..208].iter().enumerate() {
                out.sc[s] = b as i8;
                out.m[s] = b as i8;
            }
            out.d = read_f16(&src[208..210]);
            // d·sc·(q − 32) = d·sc·q − (32·d)·sc; scaling by 32 is exact in f32.
            out.dmin = 32.0 * out.d;
            for n in 0..2 {
                let (ql, qh) = (&ql[64 * n..], &qh[32 * n..]);
                let y = &mut out.q[128 * n..];
                for l in 0..32 {
                    y[l] = (ql[l] & 0xF) | ((qh[l] & 3) << 4);
                    y[l + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
                    y[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                    y[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                }
            }
        }
    }
    out
}

/// A `[n, k]` K-quant weight matrix, repacked into tiles of [`COLS`] columns.
#[derive(Debug, Clone)]
pub struct KMatrix {
    format: KFormat,
    n: usize,
    k: usize,
    /// `[tile][super-block][d; COLS, dmin; COLS]`; padding columns hold 0.
    scales: Vec<f32>,
    /// `[tile][super-block][format.tile_bytes()]`.
    data: Vec<u8>,
}

impl KMatrix {
    /// Repacks the blocks of a Q4_K, Q5_K or Q6_K `QTensor` (same values, no requantization).
    pub fn from_qtensor(q: &QTensor) -> Result<Self> {
        let format = match q.dtype() {
            GgmlDType::Q4K => KFormat::Q4K,
            GgmlDType::Q5K => KFormat::Q5K,
            GgmlDType::Q6K => KFormat::Q6K,
            other => candle_core::bail!("expected a q4k, q5k or q6k tensor, got {other:?}"),
        };
        let (n, k) = q.shape().dims2()?;
        if k % QK_K != 0 {
            candle_core::bail!("{format:?} rows must be a multiple of {QK_K} wide, got {k}");
        }
        let raw = q.data()?;
        let nsb = k / QK_K;
        let gb = format.ggml_bytes();
        if raw.len() != n * nsb * gb {
            candle_core::bail!(
                "{format:?} tensor holds {} bytes, expected {}",
                raw.len(),
                n * nsb * gb
            );
        }
        let tiles = n.div_ceil(COLS);
        let tb = format.tile_bytes();
        let mut scales = vec![0f32; tiles * nsb * 2 * COLS];
        let mut data = vec![0u8; tiles * nsb * tb];
        for col in 0..n {
            let (t, c) = (col / COLS, col % COLS);
            for sb in 0..nsb {
                let at = col * nsb + sb;
                let canon = decode(format, &raw[at * gb..(at + 1) * gb]);
                let tsb = t * nsb + sb;
                scales[tsb * 2 * COLS + c] = canon.d;
                scales[tsb * 2 * COLS + COLS + c] = canon.dmin;
                pack(format, &canon, c, &mut data[tsb * tb..(tsb + 1) * tb]);
            }
        }
        Ok(Self {
            format,
            n,
            k,
            scales,
            data,
        })
    }

    /// Quantizes a full-precision `[n, k]` matrix with ggml's K-quant rounding.
    pub fn quantize(w: &Tensor, format: KFormat) -> Result<Self> {
        Self::from_qtensor(&QTensor::quantize(
            &w.to_dtype(candle_core::DType::F32)?,
            format.ggml(),
        )?)
    }

    pub fn format(&self) -> KFormat {
        self.format
    }

    /// Bytes held in memory.
    pub fn bytes(&self) -> usize {
        self.scales.len() * std::mem::size_of::<f32>() + self.data.len()
    }

    /// `x`: `[m, k]` → `[m, n]` f32, on the best instruction set this CPU has.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_on(x, Isa::detect())
    }

    /// [`Self::forward`] on a chosen instruction set. K-quants have no 512-bit version: on a
    /// VNNI CPU they run the AVX2 one (which every such CPU has).
    pub fn forward_on(&self, x: &Tensor, isa: Isa) -> Result<Tensor> {
        let (m, x) = super::input_rows(x, self.k, self.format)?;
        let acts = act::KActs::quantize(&x, m, self.k, self.format);
        let weights = kernel::KWeights {
            format: self.format,
            tiles: self.n.div_ceil(COLS),
            nsb: self.k / QK_K,
            scales: &self.scales,
            data: &self.data,
        };
        super::run_tiles(m, self.n, |tile0, count, out| {
            // SAFETY: `run_tiles` hands each tile range to one task only.
            #[allow(unsafe_code)]
            unsafe {
                kernel::tiles(isa, &weights, &acts, tile0, count, out)
            }
        })
    }
}

/// Writes column `c` of one canonical super-block into its packed tile super-block.
fn pack(format: KFormat, canon: &Canonical, c: usize, dst: &mut [u8]) {
    for (e, &q) in canon.q.iter().enumerate() {
        let (g, j) = format.position(e);
        let (reg, high) = format.nibble_register(g);
        let at = (reg * COLS + c) * 4 + j;
        dst[at] |= if high { (q & 0xF) << 4 } else { q & 0xF };
        let hb = &mut dst[NIB_BYTES..];
        match format {
            KFormat::Q4K => {}
            KFormat::Q5K => hb[((g / 8) * COLS + c) * 4 + j] |= ((q >> 4) & 1) << (g % 8),
            KFormat::Q6K => hb[((g / 4) * COLS + c) * 4 + j] |= ((q >> 4) & 3) << (2 * (g % 4)),
        }
    }
    let at = NIB_BYTES + format.high_bytes();
    let mins_at = at + format.subs() * COLS;
    for s in 0..format.subs() {
        let idx = ((s / 2) * COLS + c) * 2 + s % 2;
        dst[at + idx] = canon.sc[s] as u8;
        if format.has_mins() {
            dst[mins_at + idx] = canon.m[s] as u8;
        }
    }
}

#[cfg(test)]
mod tests;

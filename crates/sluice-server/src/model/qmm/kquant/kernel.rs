//! The K-quant inner loops: a portable reference and an AVX2 version, picked at run time.
//!
//! Both compute, for one (row, column) pair and per super-block, the same two exact integer sums
//! — `Σₛ scₛ·(Σ q·qa)` and `Σₛ mₛ·(Σ qa)` — converted to f32 and fused-multiply-added with
//! `d × ad` and subtracted with `dmin × ad`, in the same order. Integer sums are exact whatever
//! order produces them, so the versions agree to the bit, and a row's result never depends on
//! how many rows are tiled with it.

use super::super::kernel::Out;
use super::super::{COLS, Isa};
use super::act::KActs;
use super::{KFormat, QK_K};

/// A borrowed, packed K-quant weight matrix (see [`KFormat`] for the layout).
#[derive(Debug, Clone, Copy)]
pub struct KWeights<'a> {
    pub format: KFormat,
    /// Tiles of [`COLS`] columns.
    pub tiles: usize,
    /// Super-blocks per row.
    pub nsb: usize,
    /// `[tile][super-block][d; COLS, dmin; COLS]`.
    pub scales: &'a [f32],
    /// `[tile][super-block][format.tile_bytes()]`.
    pub data: &'a [u8],
}

/// Computes tiles `tile0..tile0 + count` for every row of `acts` into `out`.
///
/// # Safety
/// No other thread may be computing any of these tiles into the same `out`.
#[allow(unsafe_code)]
pub unsafe fn tiles(
    isa: Isa,
    w: &KWeights<'_>,
    acts: &KActs,
    tile0: usize,
    count: usize,
    out: &Out<'_>,
) {
    let m = acts.m;
    assert_eq!(out.m(), m, "output rows differ from activation rows");
    assert!(out.n() <= w.tiles * COLS, "output wider than the weights");
    assert!(tile0 + count <= w.tiles, "tiles out of range");
    assert_eq!(acts.nsb, w.nsb, "activation and weight widths differ");
    assert_eq!(w.scales.len(), w.tiles * w.nsb * 2 * COLS);
    assert_eq!(w.data.len(), w.tiles * w.nsb * w.format.tile_bytes());
    assert_eq!(acts.q.len(), m * w.nsb * QK_K);
    assert_eq!(acts.d.len(), m * w.nsb);
    assert_eq!(acts.sums.len(), m * w.nsb * w.format.subs() / 2);
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Vnni if Isa::Avx2.supported() => {
            // SAFETY: the CPU has AVX2 and FMA (checked just above), and the asserts above
            // bound every index the kernel forms.
            unsafe {
                match w.format {
                    KFormat::Q4K => x86::tiles_avx2::<0>(w, acts, tile0, count, out),
                    KFormat::Q5K => x86::tiles_avx2::<1>(w, acts, tile0, count, out),
                    KFormat::Q6K => x86::tiles_avx2::<2>(w, acts, tile0, count, out),
                }
            }
        }
        // SAFETY: the caller's exclusivity carries over.
        _ => unsafe { tiles_scalar(w, acts, tile0, count, out) },
    }
}

/// The reference: one (row, column) at a time, every weight read through the layout's
/// definition ([`KFormat::element`]) in natural order.
#[allow(unsafe_code)]
unsafe fn tiles_scalar(w: &KWeights<'_>, acts: &KActs, tile0: usize, count: usize, out: &Out<'_>) {
    let f = w.format;
    let tb = f.tile_bytes();
    let len = QK_K / f.subs();
    for t in tile0..tile0 + count {
        for c in 0..COLS {
            for r in 0..acts.m {
                let mut acc = 0f32;
                for sb in 0..w.nsb {
                    let tsb = t * w.nsb + sb;
                    let block = &w.data[tsb * tb..(tsb + 1) * tb];
                    let (mut isc, mut imin) = (0i32, 0i32);
                    for s in 0..f.subs() {
                        let (sc, m) = f.scale_min(block, c, s);
                        let (mut dot, mut sum) = (0i32, 0i32);
                        for e in s * len..(s + 1) * len {
                            let a = acts.get(f, r, sb, e);
                            dot += i32::from(f.element(block, c, e)) * a;
                            sum += a;
                        }
                        isc += sc * dot;
                        imin += m * sum;
                    }
                    let ad = acts.d[r * w.nsb + sb];
                    let d = w.scales[tsb * 2 * COLS + c];
                    let dmin = w.scales[tsb * 2 * COLS + COLS + c];
                    acc = (isc as f32).mul_add(d * ad, acc);
                    acc = (-(imin as f32)).mul_add(dmin * ad, acc);
                }
                // SAFETY: the caller owns these tiles' columns.
                unsafe { out.write(r, t * COLS + c, acc) };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    //! AVX2: per row and pair of sub-blocks, `maddubs` of the unpacked weight bytes with four
    //! broadcast activation bytes, summed in i16 for as many groups as cannot overflow, then one
    //! `madd` by the pair's two scales into the i32 sum.

    use std::arch::x86_64::*;

    use super::super::super::COLS;
    use super::super::{KFormat, NIB_BYTES, QK_K};
    use super::{KActs, KWeights, Out};

    /// Super-blocks ahead that [`micro`] prefetches.
    const PREFETCH_AHEAD: usize = 2;

    const fn format(f: u8) -> KFormat {
        match f {
            0 => KFormat::Q4K,
            1 => KFormat::Q5K,
            _ => KFormat::Q6K,
        }
    }

    /// Group `g`'s 32 unsigned weight bytes (8 columns × 4) from a packed tile super-block.
    #[inline(always)]
    unsafe fn group<const F: u8>(block: *const u8, g: usize) -> __m256i {
        let f = format(F);
        let (reg, high) = f.nibble_register(g);
        // SAFETY (for the callers): `block` points at a whole packed tile super-block.
        unsafe {
            let mask = _mm256_set1_epi8(0x0F);
            let v = _mm256_loadu_si256(block.add(reg * 32).cast());
            let low = if high {
                _mm256_and_si256(_mm256_srli_epi16::<4>(v), mask)
            } else {
                _mm256_and_si256(v, mask)
            };
            let hb = block.add(NIB_BYTES);
            // Move the group's high bit(s) to bit 4 (and 5); 16-bit shifts spill bits across
            // the byte boundary only below bit 4 or above bit 5, which the mask drops.
            let (reg, bit, keep) = match f {
                KFormat::Q4K => return low,
                KFormat::Q5K => (g / 8, g % 8, 0x10),
                KFormat::Q6K => (g / 4, 2 * (g % 4), 0x30),
            };
            let h = _mm256_loadu_si256(hb.add(reg * 32).cast());
            let moved = if bit <= 4 {
                _mm256_sll_epi16(h, _mm_cvtsi32_si128((4 - bit) as i32))
            } else {
                _mm256_srl_epi16(h, _mm_cvtsi32_si128((bit - 4) as i32))
            };
            _mm256_or_si256(low, _mm256_and_si256(moved, _mm256_set1_epi8(keep)))
        }
    }

    /// Q6_K's eight groups of pair `p` at once, with immediate shifts: the pair's four nibble
    /// registers hold two groups each (low nibble, then high), and its two high-bit registers
    /// four groups each, in bits `2·(g % 4)..`. [`group`] computes the same bytes one group at a
    /// time with a shift count in a register and a reload of the high bits per group, which
    /// made Q6_K cost twice Q4_K per byte.
    ///
    /// # Safety
    /// `block` must point at a whole packed Q6_K tile super-block and `p < 8`.
    #[inline(always)]
    unsafe fn q6k_pair(block: *const u8, p: usize) -> [__m256i; 8] {
        // SAFETY (for the callers): the pair's registers lie inside the tile super-block.
        unsafe {
            let mask = _mm256_set1_epi8(0x0F);
            let keep = _mm256_set1_epi8(0x30);
            let nib = |i: usize| _mm256_loadu_si256(block.add((p * 4 + i) * 32).cast());
            let hb = block.add(NIB_BYTES);
            let high = |i: usize| _mm256_loadu_si256(hb.add((2 * p + i) * 32).cast());
            let (n, h) = ([nib(0), nib(1), nib(2), nib(3)], [high(0), high(1)]);
            // Bits 2·(g % 4) and up of the high register, moved to bits 4 and 5.
            let bits = |h: __m256i, j: usize| {
                let moved = match j {
                    0 => _mm256_slli_epi16::<4>(h),
                    1 => _mm256_slli_epi16::<2>(h),
                    2 => h,
                    _ => _mm256_srli_epi16::<2>(h),
                };
                _mm256_and_si256(moved, keep)
            };
            let mut out = [_mm256_setzero_si256(); 8];
            for j in 0..4 {
                let low = _mm256_and_si256(n[j], mask);
                let upper = _mm256_and_si256(_mm256_srli_epi16::<4>(n[j]), mask);
                out[j] = _mm256_or_si256(low, bits(h[0], j));
                out[4 + j] = _mm256_or_si256(upper, bits(h[1], j));
            }
            out
        }
    }

    /// `R` rows × one tile of 8 columns; each group's weights are unpacked once for all `R`
    /// rows.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; rows `r..r + R` and tile `t` must lie inside the
    /// shapes `kernel::tiles` checked, and no other thread may write that tile.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn micro<const R: usize, const F: u8>(
        w: &KWeights<'_>,
        acts: &KActs,
        t: usize,
        r: usize,
        out: &Out<'_>,
    ) {
        let f = format(F);
        let (nsb, tb) = (w.nsb, f.tile_bytes());
        let pairs = f.subs() / 2;
        let pg = f.pair_groups();
        let chunk = f.i16_groups();
        let scales_at = NIB_BYTES + f.high_bytes();
        let mins_at = if f.has_mins() {
            scales_at + f.subs() * COLS
        } else {
            scales_at
        };
        let mut acc = [_mm256_setzero_ps(); R];
        // SAFETY: in bounds per the contract above.
        unsafe {
            for sb in 0..nsb {
                let tsb = t * nsb + sb;
                let block = w.data.as_ptr().add(tsb * tb);
                // The weights stream from memory once per step: ask for the super-block after
                // next now, so its lines arrive while this one computes (the hardware
                // prefetcher alone stops at each 4 KiB page). A prefetch never faults, so past
                // the end it is merely wasted.
                let ahead = block.wrapping_add(PREFETCH_AHEAD * tb);
                for line in (0..tb).step_by(64) {
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line).cast());
                }
                let mut isc = [_mm256_setzero_si256(); R];
                for p in 0..pairs {
                    let sc = _mm256_cvtepi8_epi16(_mm_loadu_si128(
                        block.add(scales_at + p * 2 * COLS).cast(),
                    ));
                    let q6 = if f == KFormat::Q6K {
                        q6k_pair(block, p)
                    } else {
                        [_mm256_setzero_si256(); 8]
                    };
                    for c0 in (0..pg).step_by(chunk) {
                        let mut wg = [_mm256_setzero_si256(); 8];
                        for (i, v) in wg.iter_mut().take(chunk).enumerate() {
                            *v = if f == KFormat::Q6K {
                                q6[c0 + i]
                            } else {
                                group::<F>(block, p * pg + c0 + i)
                            };
                        }
                        for (i, sum) in isc.iter_mut().enumerate() {
                            let a = acts
                                .q
                                .as_ptr()
                                .add(((r + i) * nsb + sb) * QK_K + (p * pg + c0) * 4)
                                .cast::<i32>();
                            let mut p16 = _mm256_setzero_si256();
                            for (g, wv) in wg.iter().take(chunk).enumerate() {
                                let a4 = _mm256_set1_epi32(a.add(g).read_unaligned());
                                p16 = _mm256_add_epi16(p16, _mm256_maddubs_epi16(*wv, a4));
                            }
                            *sum = _mm256_add_epi32(*sum, _mm256_madd_epi16(p16, sc));
                        }
                    }
                }
                let dv = _mm256_loadu_ps(w.scales.as_ptr().add(tsb * 2 * COLS));
                let dminv = _mm256_loadu_ps(w.scales.as_ptr().add(tsb * 2 * COLS + COLS));
                for (i, row_acc) in acc.iter_mut().enumerate() {
                    let ab = (r + i) * nsb + sb;
                    let mut imin = _mm256_setzero_si256();
                    for p in 0..pairs {
                        let mins = _mm256_cvtepi8_epi16(_mm_loadu_si128(
                            block.add(mins_at + p * 2 * COLS).cast(),
                        ));
                        let s = _mm256_set1_epi32(*acts.sums.as_ptr().add(ab * pairs + p));
                        imin = _mm256_add_epi32(imin, _mm256_madd_epi16(mins, s));
                    }
                    let ad = _mm256_set1_ps(*acts.d.as_ptr().add(ab));
                    *row_acc = _mm256_fmadd_ps(
                        _mm256_cvtepi32_ps(isc[i]),
                        _mm256_mul_ps(dv, ad),
                        *row_acc,
                    );
                    *row_acc = _mm256_fnmadd_ps(
                        _mm256_cvtepi32_ps(imin),
                        _mm256_mul_ps(dminv, ad),
                        *row_acc,
                    );
                }
            }
        }
        for (i, lanes) in acc.iter().enumerate() {
            let mut v = [0f32; COLS];
            // SAFETY: `v` is exactly one 256-bit vector wide.
            unsafe { _mm256_storeu_ps(v.as_mut_ptr(), *lanes) };
            for (c, value) in v.into_iter().enumerate() {
                // SAFETY: the caller owns this tile's columns.
                unsafe { out.write(r + i, t * COLS + c, value) };
            }
        }
    }

    /// Every tile, four rows at a time, then single rows.
    ///
    /// # Safety
    /// As for `kernel::tiles`, and the CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tiles_avx2<const F: u8>(
        w: &KWeights<'_>,
        acts: &KActs,
        tile0: usize,
        count: usize,
        out: &Out<'_>,
    ) {
        for t in tile0..tile0 + count {
            let mut r = 0;
            // SAFETY: inside the checked shapes; the caller owns these tiles.
            unsafe {
                while acts.m - r >= 4 {
                    micro::<4, F>(w, acts, t, r, out);
                    r += 4;
                }
                while r < acts.m {
                    micro::<1, F>(w, acts, t, r, out);
                    r += 1;
                }
            }
        }
    }
}

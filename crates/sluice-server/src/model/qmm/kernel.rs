//! The integer inner loops: a portable reference and two x86 versions (AVX2 `maddubs` on
//! 256-bit registers, and AVX-512 VNNI `dpbusd` on 512-bit ones), picked at run time.
//!
//! Every version computes, for one (row, column) pair, exactly the same thing in the same order:
//! per 32-wide block an exact integer dot product, converted to f32 and fused-multiply-added with
//! `weight scale × activation scale` into one f32 accumulator. Integer sums are exact whatever
//! instructions produce them, so the versions agree to the bit, and a row's result never depends
//! on how many rows are tiled with it.

use super::act::Acts;
use super::{COLS, Format, QK};

/// The instruction set the kernel runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Portable Rust; the reference the others are tested against.
    Scalar,
    /// AVX2 + FMA: `vpmaddubsw` + `vpmaddwd` per block.
    Avx2,
    /// AVX-512 VNNI (+F/BW/VL): `vpdpbusd` on 512-bit registers, 16 columns at a time.
    Vnni,
}

impl Isa {
    /// The best instruction set this CPU supports.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512vnni")
                && std::is_x86_feature_detected!("avx512vl")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("fma")
            {
                return Isa::Vnni;
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Scalar
    }

    /// Whether this CPU can run `self`.
    pub fn supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            Isa::Avx2 => matches!(Self::detect(), Isa::Avx2 | Isa::Vnni),
            Isa::Vnni => Self::detect() == Isa::Vnni,
        }
    }
}

/// A borrowed, packed block-quantized weight matrix (see [`Format`] for the layout).
#[derive(Debug, Clone, Copy)]
pub struct Weights<'a> {
    pub format: Format,
    /// Tiles of [`COLS`] columns.
    pub tiles: usize,
    pub kb: usize,
    /// `[tile][block][column]` scales.
    pub scales: &'a [f32],
    /// `[tile][block][format.tile_block_bytes()]`.
    pub data: &'a [u8],
}

/// The row-major `[m, n]` output, shared by the parallel tasks: each task owns a disjoint range
/// of column tiles and writes only those columns, so no element is written twice.
#[derive(Debug)]
pub struct Out<'a> {
    ptr: *mut f32,
    m: usize,
    n: usize,
    _buf: std::marker::PhantomData<&'a mut [f32]>,
}

// SAFETY: `Out` is a `&mut [f32]` split by columns; `write`'s contract keeps the tasks'
// columns disjoint, so sharing it between threads cannot race.
#[allow(unsafe_code)]
unsafe impl Send for Out<'_> {}
#[allow(unsafe_code)]
unsafe impl Sync for Out<'_> {}

impl<'a> Out<'a> {
    pub fn new(buf: &'a mut [f32], m: usize, n: usize) -> Self {
        assert_eq!(buf.len(), m * n, "output is not [m, n]");
        Self {
            ptr: buf.as_mut_ptr(),
            m,
            n,
            _buf: std::marker::PhantomData,
        }
    }

    /// Rows.
    pub(super) fn m(&self) -> usize {
        self.m
    }

    /// Columns.
    pub(super) fn n(&self) -> usize {
        self.n
    }

    /// Stores row `r` of column `col`; columns past `n` (a tile's padding) are dropped.
    ///
    /// # Safety
    /// No other thread may write column `col` at the same time.
    #[allow(unsafe_code)]
    #[inline(always)]
    pub(super) unsafe fn write(&self, r: usize, col: usize, v: f32) {
        if col < self.n {
            assert!(r < self.m, "row out of range");
            // SAFETY: in bounds (checked above); exclusive per the contract.
            unsafe { *self.ptr.add(r * self.n + col) = v };
        }
    }
}

/// Computes tiles `tile0..tile0 + count` for every row of `acts` into `out`.
///
/// # Safety
/// No other thread may be computing any of these tiles into the same `out`.
#[allow(unsafe_code)]
pub unsafe fn tiles(
    isa: Isa,
    w: &Weights<'_>,
    acts: &Acts,
    tile0: usize,
    count: usize,
    out: &Out<'_>,
) {
    let m = acts.m;
    assert_eq!(out.m, m, "output rows differ from activation rows");
    assert!(out.n <= w.tiles * COLS, "output wider than the weights");
    assert!(tile0 + count <= w.tiles, "tiles out of range");
    assert_eq!(acts.kb, w.kb, "activation and weight widths differ");
    assert_eq!(w.scales.len(), w.tiles * w.kb * COLS);
    assert_eq!(w.data.len(), w.tiles * w.kb * w.format.tile_block_bytes());
    assert_eq!(acts.q.len(), m * w.kb * QK);
    assert_eq!(acts.d.len(), m * w.kb);
    assert_eq!(acts.init.len(), m * w.kb);
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Vnni if Isa::Vnni.supported() => {
            // SAFETY: the CPU has AVX-512 F/BW/VL/VNNI and FMA (checked just above), and the
            // asserts above bound every index the kernel forms.
            #[allow(unsafe_code)]
            unsafe {
                x86::tiles_vnni(w, acts, tile0, count, out)
            }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Vnni if Isa::Avx2.supported() => {
            // SAFETY: as above, for AVX2 and FMA.
            #[allow(unsafe_code)]
            unsafe {
                x86::tiles_avx2(w, acts, tile0, count, out)
            }
        }
        // SAFETY: the caller's exclusivity carries over.
        _ => unsafe { tiles_scalar(w, acts, tile0, count, out) },
    }
}

/// The reference: one (row, column) at a time.
#[allow(unsafe_code)]
unsafe fn tiles_scalar(w: &Weights<'_>, acts: &Acts, tile0: usize, count: usize, out: &Out<'_>) {
    let kb = w.kb;
    let tbb = w.format.tile_block_bytes();
    for t in tile0..tile0 + count {
        for c in 0..COLS {
            for r in 0..acts.m {
                let mut acc = 0f32;
                for b in 0..kb {
                    let tb = t * kb + b;
                    let block = &w.data[tb * tbb..(tb + 1) * tbb];
                    let ab = r * kb + b;
                    let a = &acts.q[ab * QK..(ab + 1) * QK];
                    let mut dot = acts.init[ab];
                    for (e, &av) in a.iter().enumerate() {
                        dot += i32::from(w.format.element(block, c, e)) * i32::from(av);
                    }
                    acc = (dot as f32).mul_add(w.scales[tb * COLS + c] * acts.d[ab], acc);
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
    //! The SIMD kernels: one macro expansion per instruction set so the loop is written once;
    //! only the integer dot step differs.

    use std::arch::x86_64::*;

    use super::super::act::Acts;
    use super::super::{COLS, Format, QK};
    use super::{Out, Weights};

    /// Groups of four weights per block: one register each.
    const GROUPS: usize = QK / 4;

    /// One tile block as eight registers of unsigned bytes, group `g` in `w[g]`.
    #[inline(always)]
    unsafe fn load_tile_block<const Q4: bool>(p: *const u8) -> [__m256i; GROUPS] {
        // SAFETY (for the callers): `p` points at a whole packed tile block.
        unsafe {
            let mut w = [_mm256_setzero_si256(); GROUPS];
            if Q4 {
                let mask = _mm256_set1_epi8(0x0F);
                for p4 in 0..GROUPS / 2 {
                    let v = _mm256_loadu_si256(p.add(p4 * 32).cast());
                    w[p4] = _mm256_and_si256(v, mask);
                    w[p4 + GROUPS / 2] = _mm256_and_si256(_mm256_srli_epi16::<4>(v), mask);
                }
            } else {
                for (g, wg) in w.iter_mut().enumerate() {
                    *wg = _mm256_loadu_si256(p.add(g * 32).cast());
                }
            }
            w
        }
    }

    /// AVX2 starts q4_0 from the offset correction; q8_0 starts from zero (see [`dot_avx2`]).
    #[inline(always)]
    unsafe fn start_avx2<const Q4: bool>(init: i32) -> __m256i {
        unsafe {
            if Q4 {
                _mm256_set1_epi32(init)
            } else {
                _mm256_setzero_si256()
            }
        }
    }

    /// AVX2: `maddubs` multiplies unsigned by signed bytes into saturating i16 pairs. q4_0
    /// nibbles (≤ 15) can never saturate; q8_0 bytes could, so they are turned back into signed
    /// values and their sign moved onto the activations — the exact `Σ w·a` with no offset,
    /// which is why q8_0 starts from zero.
    #[inline(always)]
    unsafe fn dot_avx2<const Q4: bool>(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
        unsafe {
            let ones = _mm256_set1_epi16(1);
            let pairs = if Q4 {
                _mm256_maddubs_epi16(w, a)
            } else {
                let ws = _mm256_xor_si256(w, _mm256_set1_epi8(i8::MIN));
                _mm256_maddubs_epi16(_mm256_sign_epi8(ws, ws), _mm256_sign_epi8(a, ws))
            };
            _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ones))
        }
    }

    #[inline(always)]
    unsafe fn start_vnni<const Q4: bool>(init: i32) -> __m256i {
        unsafe { _mm256_set1_epi32(init) }
    }

    /// VNNI: `dpbusd` adds four u8×i8 products into each i32 lane with no intermediate
    /// saturation.
    #[inline(always)]
    unsafe fn dot_vnni<const Q4: bool>(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
        unsafe { _mm256_dpbusd_epi32(acc, w, a) }
    }

    /// Walks `m` rows in blocks of `$big`, then fours, then singles, calling `$call!(R, row)`.
    /// Each row's arithmetic is the same whichever block size computes it.
    macro_rules! walk_rows {
        ($m:expr, $big:literal, $call:ident) => {{
            let mut r = 0;
            while $m - r >= $big {
                $call!($big, r);
                r += $big;
            }
            while $m - r >= 4 {
                $call!(4, r);
                r += 4;
            }
            while r < $m {
                $call!(1, r);
                r += 1;
            }
        }};
    }

    /// How far ahead of the block being computed the 256-bit kernels prefetch weights.
    const PREFETCH_BYTES: usize = 2048;

    macro_rules! micro_256 {
        ($micro:ident, $features:literal, $start:ident, $dot:ident) => {
            /// `R` rows × one tile of 8 columns in 256-bit registers, accumulating across the
            /// whole width; each tile block is loaded (and unpacked) once for all `R` rows.
            ///
            /// # Safety
            /// The CPU must support the enabled features; rows `r..r + R` and tile
            /// `tile0 + t` must lie inside the shapes `kernel::tiles` checked, and no other
            /// thread may write that tile.
            #[target_feature(enable = $features)]
            unsafe fn $micro<const R: usize, const Q4: bool>(
                w: &Weights<'_>,
                acts: &Acts,
                tile0: usize,
                t: usize,
                r: usize,
                out: &Out<'_>,
            ) {
                let kb = w.kb;
                let tbb = w.format.tile_block_bytes();
                let wdata = w.data.as_ptr();
                let wscale = w.scales.as_ptr();
                let aq = acts.q.as_ptr();
                let ad = acts.d.as_ptr();
                let ainit = acts.init.as_ptr();
                let mut acc = [_mm256_setzero_ps(); R];
                // SAFETY: in bounds per the contract above.
                unsafe {
                    for b in 0..kb {
                        let tb = (tile0 + t) * kb + b;
                        // Ask for the weights PREFETCH_BYTES ahead (this tile's later blocks,
                        // then the next tile's), so they arrive while this block computes: the
                        // hardware prefetcher alone stops at each 4 KiB page. A prefetch never
                        // faults, so past the end it is merely wasted.
                        let ahead = tb + PREFETCH_BYTES / tbb;
                        for line in (0..tbb).step_by(64) {
                            _mm_prefetch::<_MM_HINT_T0>(
                                wdata.wrapping_add(ahead * tbb + line).cast(),
                            );
                        }
                        _mm_prefetch::<_MM_HINT_T0>(wscale.wrapping_add(ahead * COLS).cast());
                        let wg = load_tile_block::<Q4>(wdata.add(tb * tbb));
                        let dw = _mm256_loadu_ps(wscale.add(tb * COLS));
                        for (i, row_acc) in acc.iter_mut().enumerate() {
                            let ab = (r + i) * kb + b;
                            let a = aq.add(ab * QK).cast::<i32>();
                            let mut isum = $start::<Q4>(*ainit.add(ab));
                            for (g, wv) in wg.iter().enumerate() {
                                let a4 = _mm256_set1_epi32(a.add(g).read_unaligned());
                                isum = $dot::<Q4>(isum, *wv, a4);
                            }
                            let s = _mm256_mul_ps(dw, _mm256_set1_ps(*ad.add(ab)));
                            *row_acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), s, *row_acc);
                        }
                    }
                }
                for (i, lanes) in acc.iter().enumerate() {
                    let mut v = [0f32; COLS];
                    // SAFETY: `v` is exactly one 256-bit vector wide.
                    unsafe { _mm256_storeu_ps(v.as_mut_ptr(), *lanes) };
                    for (c, value) in v.into_iter().enumerate() {
                        // SAFETY: the caller owns this tile's columns.
                        unsafe { out.write(r + i, (tile0 + t) * COLS + c, value) };
                    }
                }
            }
        };
    }

    micro_256!(micro_avx2, "avx2,fma", start_avx2, dot_avx2);
    micro_256!(
        micro_vnni,
        "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni",
        start_vnni,
        dot_vnni
    );

    /// AVX2: every tile in 256-bit registers, four rows at a time (16 registers).
    ///
    /// # Safety
    /// As for `kernel::tiles`, and the CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tiles_avx2(
        w: &Weights<'_>,
        acts: &Acts,
        tile0: usize,
        count: usize,
        out: &Out<'_>,
    ) {
        let q4 = w.format == Format::Q4_0;
        for t in 0..count {
            macro_rules! call {
                ($r:literal, $row:expr) => {
                    // SAFETY: inside the checked shapes; the caller owns these tiles.
                    unsafe {
                        if q4 {
                            micro_avx2::<$r, true>(w, acts, tile0, t, $row, out)
                        } else {
                            micro_avx2::<$r, false>(w, acts, tile0, t, $row, out)
                        }
                    }
                };
            }
            walk_rows!(acts.m, 4, call);
        }
    }

    /// AVX-512 VNNI: from 4 rows up, tiles in pairs, 16 columns per 512-bit register and up to
    /// 16 rows per weight load; an odd last tile, and batches under 4 rows (where streaming one
    /// tile at a time measured faster), in 256-bit registers.
    ///
    /// # Safety
    /// As for `kernel::tiles`, and the CPU must support AVX-512 F/BW/VL/VNNI and FMA.
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub unsafe fn tiles_vnni(
        w: &Weights<'_>,
        acts: &Acts,
        tile0: usize,
        count: usize,
        out: &Out<'_>,
    ) {
        let q4 = w.format == Format::Q4_0;
        let mut t = 0;
        while acts.m >= 4 && count - t >= 2 {
            macro_rules! call {
                ($r:literal, $row:expr) => {
                    // SAFETY: inside the checked shapes; the caller owns these tiles.
                    unsafe {
                        if q4 {
                            micro_vnni_512::<$r, true>(w, acts, tile0, t, $row, out)
                        } else {
                            micro_vnni_512::<$r, false>(w, acts, tile0, t, $row, out)
                        }
                    }
                };
            }
            walk_rows!(acts.m, 16, call);
            t += 2;
        }
        while t < count {
            macro_rules! call {
                ($r:literal, $row:expr) => {
                    // SAFETY: as above.
                    unsafe {
                        if q4 {
                            micro_vnni::<$r, true>(w, acts, tile0, t, $row, out)
                        } else {
                            micro_vnni::<$r, false>(w, acts, tile0, t, $row, out)
                        }
                    }
                };
            }
            walk_rows!(acts.m, 8, call);
            t += 1;
        }
    }

    /// Two adjacent packed tile blocks (16 columns) as one 512-bit register per weight group.
    #[inline(always)]
    unsafe fn load_tile_pair<const Q4: bool>(p0: *const u8, p1: *const u8) -> [__m512i; GROUPS] {
        // SAFETY (for the callers): both point at whole packed tile blocks.
        unsafe {
            let pair = |off: usize| {
                _mm512_inserti64x4::<1>(
                    _mm512_castsi256_si512(_mm256_loadu_si256(p0.add(off).cast())),
                    _mm256_loadu_si256(p1.add(off).cast()),
                )
            };
            let mut w = [_mm512_setzero_si512(); GROUPS];
            if Q4 {
                let mask = _mm512_set1_epi8(0x0F);
                for p4 in 0..GROUPS / 2 {
                    let v = pair(p4 * 32);
                    w[p4] = _mm512_and_si512(v, mask);
                    w[p4 + GROUPS / 2] = _mm512_and_si512(_mm512_srli_epi16::<4>(v), mask);
                }
            } else {
                for (g, wg) in w.iter_mut().enumerate() {
                    *wg = pair(g * 32);
                }
            }
            w
        }
    }

    /// `R` rows × tiles `t` and `t + 1` (16 columns) in 512-bit registers: the same arithmetic
    /// per column as [`micro_vnni`], half the instructions per row.
    ///
    /// # Safety
    /// As for [`micro_vnni`], for both tiles.
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn micro_vnni_512<const R: usize, const Q4: bool>(
        w: &Weights<'_>,
        acts: &Acts,
        tile0: usize,
        t: usize,
        r: usize,
        out: &Out<'_>,
    ) {
        let kb = w.kb;
        let tbb = w.format.tile_block_bytes();
        let wdata = w.data.as_ptr();
        let wscale = w.scales.as_ptr();
        let aq = acts.q.as_ptr();
        let ad = acts.d.as_ptr();
        let ainit = acts.init.as_ptr();
        let mut acc = [_mm512_setzero_ps(); R];
        // SAFETY: in bounds per the contract above.
        unsafe {
            for b in 0..kb {
                let tb0 = (tile0 + t) * kb + b;
                let tb1 = tb0 + kb;
                let wg = load_tile_pair::<Q4>(wdata.add(tb0 * tbb), wdata.add(tb1 * tbb));
                let dw = _mm512_castsi512_ps(_mm512_inserti64x4::<1>(
                    _mm512_castsi256_si512(_mm256_castps_si256(_mm256_loadu_ps(
                        wscale.add(tb0 * COLS),
                    ))),
                    _mm256_castps_si256(_mm256_loadu_ps(wscale.add(tb1 * COLS))),
                ));
                for (i, row_acc) in acc.iter_mut().enumerate() {
                    let ab = (r + i) * kb + b;
                    let a = aq.add(ab * QK).cast::<i32>();
                    let mut isum = _mm512_set1_epi32(*ainit.add(ab));
                    for (g, wv) in wg.iter().enumerate() {
                        let a4 = _mm512_set1_epi32(a.add(g).read_unaligned());
                        isum = _mm512_dpbusd_epi32(isum, *wv, a4);
                    }
                    let s = _mm512_mul_ps(dw, _mm512_set1_ps(*ad.add(ab)));
                    *row_acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), s, *row_acc);
                }
            }
        }
        for (i, lanes) in acc.iter().enumerate() {
            let mut v = [0f32; 2 * COLS];
            // SAFETY: `v` is exactly one 512-bit vector wide.
            unsafe { _mm512_storeu_ps(v.as_mut_ptr(), *lanes) };
            for (c, value) in v.into_iter().enumerate() {
                // SAFETY: the caller owns both tiles' columns (they are adjacent).
                unsafe { out.write(r + i, (tile0 + t) * COLS + c, value) };
            }
        }
    }
}

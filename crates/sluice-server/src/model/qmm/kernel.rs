//! The integer inner loops: a portable reference and two x86 versions (AVX2 `maddubs`, and
//! AVX-512 VNNI `dpbusd` on 256-bit registers), picked at run time.
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
    /// AVX-512 VNNI (+VL): one `vpdpbusd` per block, and 32 vector registers for bigger tiles.
    Vnni,
}

impl Isa {
    /// The best instruction set this CPU supports.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512vnni")
                && std::is_x86_feature_detected!("avx512vl")
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

    /// Stores row `r` of column `col`; columns past `n` (a tile's padding) are dropped.
    ///
    /// # Safety
    /// No other thread may write column `col` at the same time.
    #[allow(unsafe_code)]
    #[inline(always)]
    unsafe fn write(&self, r: usize, col: usize, v: f32) {
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
            // SAFETY: the CPU has AVX-512 F/VL/VNNI and FMA (checked just above), and the
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

    macro_rules! kernels {
        ($tiles:ident, $micro:ident, $features:literal, $start:ident, $dot:ident, $rows:literal, $cols:literal) => {
            /// Walks the output in blocks of rows × tiles and hands each to the micro-kernel.
            ///
            /// # Safety
            /// The CPU must support the enabled features, the caller must have checked the
            /// shapes, and no other thread may write these tiles (see `kernel::tiles`).
            #[target_feature(enable = $features)]
            pub unsafe fn $tiles(
                w: &Weights<'_>,
                acts: &Acts,
                tile0: usize,
                count: usize,
                out: &Out<'_>,
            ) {
                let q4 = w.format == Format::Q4_0;
                let m = acts.m;
                let mut t = 0;
                while t < count {
                    let full_t = count - t >= $cols;
                    let mut r = 0;
                    while r < m {
                        let full_r = m - r >= $rows;
                        // SAFETY: the block lies inside the checked shapes.
                        unsafe {
                            match (q4, full_r, full_t) {
                                (true, true, true) => {
                                    $micro::<$rows, $cols, true>(w, acts, tile0, t, r, out)
                                }
                                (true, true, false) => {
                                    $micro::<$rows, 1, true>(w, acts, tile0, t, r, out)
                                }
                                (true, false, true) => {
                                    $micro::<1, $cols, true>(w, acts, tile0, t, r, out)
                                }
                                (true, false, false) => {
                                    $micro::<1, 1, true>(w, acts, tile0, t, r, out)
                                }
                                (false, true, true) => {
                                    $micro::<$rows, $cols, false>(w, acts, tile0, t, r, out)
                                }
                                (false, true, false) => {
                                    $micro::<$rows, 1, false>(w, acts, tile0, t, r, out)
                                }
                                (false, false, true) => {
                                    $micro::<1, $cols, false>(w, acts, tile0, t, r, out)
                                }
                                (false, false, false) => {
                                    $micro::<1, 1, false>(w, acts, tile0, t, r, out)
                                }
                            }
                        }
                        r += if full_r { $rows } else { 1 };
                    }
                    t += if full_t { $cols } else { 1 };
                }
            }

            /// `R` rows × `T` tiles, accumulating in registers across the whole width; each tile
            /// block is loaded (and unpacked) once for all `R` rows.
            #[target_feature(enable = $features)]
            unsafe fn $micro<const R: usize, const T: usize, const Q4: bool>(
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
                let mut acc = [[_mm256_setzero_ps(); T]; R];
                // SAFETY: rows r..r+R ≤ m and tiles tile0+t..tile0+t+T ≤ w.tiles (checked by
                // the caller), so every block index below is in bounds of its slice.
                unsafe {
                    for b in 0..kb {
                        for tt in 0..T {
                            let tb = (tile0 + t + tt) * kb + b;
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
                                row_acc[tt] =
                                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), s, row_acc[tt]);
                            }
                        }
                    }
                }
                for (i, row_acc) in acc.iter().enumerate() {
                    for (tt, lanes) in row_acc.iter().enumerate() {
                        let mut v = [0f32; COLS];
                        // SAFETY: `v` is exactly one 256-bit vector wide.
                        unsafe { _mm256_storeu_ps(v.as_mut_ptr(), *lanes) };
                        for (c, value) in v.into_iter().enumerate() {
                            // SAFETY: the caller owns these tiles' columns.
                            unsafe { out.write(r + i, (tile0 + t + tt) * COLS + c, value) };
                        }
                    }
                }
            }
        };
    }

    kernels!(
        tiles_avx2, micro_avx2, "avx2,fma", start_avx2, dot_avx2, 4, 1
    );
    kernels!(
        tiles_vnni,
        micro_vnni,
        "avx2,fma,avx512f,avx512vl,avx512vnni",
        start_vnni,
        dot_vnni,
        4,
        2
    );
}

//! The float inner loops of attention: a portable reference and an AVX2 + FMA + F16C version,
//! picked at run time.
//!
//! Both versions do the same operations in the same order, so they agree to the bit:
//! - a key's dot product accumulates in 8 lanes (lane `l` takes elements `l, l + 8, …`), which
//!   are then summed by one fixed tree ([`hsum`]), the leftover `head_dim % 8` elements after it;
//! - `exp` is one polynomial ([`exp`]) evaluated with fused multiply-adds, which round the same
//!   in a register and in `f32::mul_add`;
//! - the softmax denominator accumulates in 8 lanes the same way;
//! - each output element is one chain of fused multiply-adds over the keys, in key order.
//!
//! The reference stores its lanes in arrays; it is slow (`mul_add` may be a library call) and
//! only runs where the CPU has no AVX2, and in the tests that hold the fast version to it.

use half::f16;

/// Lanes of one 256-bit register of f32.
pub const LANES: usize = 8;

/// The instruction set the kernel runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Portable Rust; the reference.
    Scalar,
    /// AVX2 + FMA + F16C (every AVX2 CPU has F16C).
    Avx2,
}

impl Isa {
    /// The best instruction set this CPU supports.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("f16c")
            {
                return Isa::Avx2;
            }
        }
        Isa::Scalar
    }

    /// Whether this CPU can run `self`.
    pub fn supported(self) -> bool {
        self == Isa::Scalar || Self::detect() == Isa::Avx2
    }
}

/// An element of the KV cache: f32, or f16 (half the memory, widened to f32 as it is read).
pub trait KvElem: Copy + Send + Sync + 'static {
    fn to_f32(self) -> f32;
    /// Eight consecutive elements as f32.
    ///
    /// # Safety
    /// `p` must point at 8 readable elements and the CPU must have AVX2 and F16C.
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;
}

impl KvElem for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }

    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        // SAFETY: per the contract, 8 readable f32.
        unsafe { std::arch::x86_64::_mm256_loadu_ps(p) }
    }
}

impl KvElem for f16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }

    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // SAFETY: per the contract, 8 readable f16 (16 bytes) and F16C; the conversion is
        // exact, as `f16::to_f32` is.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast::<__m128i>())) }
    }
}

// exp(x) = 2^n · e^r with n = round(x · log2 e) and |r| ≤ ln2 / 2; e^r by Cephes' expf
// polynomial (relative error about 1e-7). x is clamped so 2^n stays a normal float.
const EXP_LO: f32 = -87.336_55;
const EXP_HI: f32 = 88.376_26;
const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// `e^x`, the reference for the vector version (same operations, same rounding).
#[inline]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(EXP_LO, EXP_HI);
    let n = (x * LOG2E).round_ties_even();
    let r = n.mul_add(-LN2_HI, x);
    let r = n.mul_add(-LN2_LO, r);
    let mut p = P[0];
    for c in &P[1..] {
        p = p.mul_add(r, *c);
    }
    let y = p.mul_add(r * r, r) + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// The fixed summation tree of 8 lanes: halves, then pairs, then the last two.
#[inline]
pub fn hsum(l: [f32; LANES]) -> f32 {
    let s4 = [l[0] + l[4], l[1] + l[5], l[2] + l[6], l[3] + l[7]];
    let s2 = [s4[0] + s4[2], s4[1] + s4[3]];
    s2[0] + s2[1]
}

/// The keys and values one query row attends to: `n` rows of `head_dim` elements, row `j` at
/// `j * stride` in `k` and in `v` (a token-major cache interleaves the KV heads, so one head's
/// rows are `n_kv_heads * head_dim` apart).
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a, T> {
    pub k: &'a [T],
    pub v: &'a [T],
    pub n: usize,
    pub stride: usize,
}

/// Attention of one query row over its keys: `out = softmax(scale · K q) V`. `scores` is
/// scratch of at least `rows.n`.
pub fn attend_row<T: KvElem>(
    isa: Isa,
    q: &[f32],
    rows: Rows<'_, T>,
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let (hd, n) = (q.len(), rows.n);
    assert!(n > 0, "a query sees at least its own key");
    assert!(rows.stride >= hd, "rows overlap");
    let span = (n - 1) * rows.stride + hd;
    assert!(
        rows.k.len() >= span && rows.v.len() >= span,
        "cache shorter than {n} keys"
    );
    assert!(
        scores.len() >= n && out.len() == hd,
        "scratch or output mis-sized"
    );
    match isa {
        Isa::Scalar => scalar::row(q, rows, scale, &mut scores[..n], out),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            assert!(Isa::Avx2.supported(), "this CPU has no AVX2/FMA/F16C");
            // SAFETY: the features were checked above; lengths were checked above and the
            // vector code reads only within them.
            #[allow(unsafe_code)]
            unsafe {
                avx2::row(q, rows, scale, &mut scores[..n], out)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2 => unreachable!("AVX2 is never detected off x86_64"),
    }
}

mod scalar {
    use super::{KvElem, LANES, Rows, exp, hsum};

    fn dot<T: KvElem>(q: &[f32], k: &[T]) -> f32 {
        let hd = q.len();
        let full = hd / LANES * LANES;
        let mut acc = [0f32; LANES];
        for c in (0..full).step_by(LANES) {
            for l in 0..LANES {
                acc[l] = q[c + l].mul_add(k[c + l].to_f32(), acc[l]);
            }
        }
        let mut s = hsum(acc);
        for d in full..hd {
            s = q[d].mul_add(k[d].to_f32(), s);
        }
        s
    }

    pub fn row<T: KvElem>(
        q: &[f32],
        rows: Rows<'_, T>,
        scale: f32,
        scores: &mut [f32],
        out: &mut [f32],
    ) {
        let (hd, n, stride, v) = (q.len(), rows.n, rows.stride, rows.v);
        for (j, s) in scores.iter_mut().enumerate() {
            *s = dot(q, &rows.k[j * stride..j * stride + hd]) * scale;
        }
        let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
        let full = n / LANES * LANES;
        let mut acc = [0f32; LANES];
        for c in (0..full).step_by(LANES) {
            for l in 0..LANES {
                scores[c + l] = exp(scores[c + l] - max);
                acc[l] += scores[c + l];
            }
        }
        let mut sum = hsum(acc);
        for s in &mut scores[full..] {
            *s = exp(*s - max);
            sum += *s;
        }
        let inv = 1.0 / sum;
        for (d, o) in out.iter_mut().enumerate() {
            let mut a = 0f32;
            for (j, &p) in scores.iter().enumerate() {
                a = p.mul_add(v[j * stride + d].to_f32(), a);
            }
            *o = a * inv;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx2 {
    use super::{EXP_HI, EXP_LO, KvElem, LANES, LN2_HI, LN2_LO, LOG2E, P, Rows, exp};
    use std::arch::x86_64::*;

    /// [`super::hsum`]'s tree on a register.
    #[target_feature(enable = "avx2,fma")]
    fn hsum(a: __m256) -> f32 {
        let s4 = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps::<1>(s2, s2)))
    }

    /// [`super::exp`] on 8 lanes.
    #[target_feature(enable = "avx2,fma")]
    fn exp8(x: __m256) -> __m256 {
        // max/min return their second operand when either is NaN: x second, so a NaN stays NaN
        // (as `f32::clamp` keeps it) rather than becoming a bound.
        let x = _mm256_min_ps(
            _mm256_set1_ps(EXP_HI),
            _mm256_max_ps(_mm256_set1_ps(EXP_LO), x),
        );
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(x, _mm256_set1_ps(LOG2E)),
        );
        let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_HI), x);
        let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_LO), r);
        let mut p = _mm256_set1_ps(P[0]);
        for c in &P[1..] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(*c));
        }
        let y = _mm256_add_ps(
            _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r),
            _mm256_set1_ps(1.0),
        );
        let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(n),
            _mm256_set1_epi32(127),
        ));
        _mm256_mul_ps(y, _mm256_castsi256_ps(bits))
    }

    /// Dot products of `q` with 4 keys at once (4 independent accumulator chains), `stride`
    /// elements apart.
    ///
    /// # Safety
    /// The 4 keys of `q.len()` elements each must be readable from `k0`.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot4<T: KvElem>(q: &[f32], k0: *const T, stride: usize) -> [f32; 4] {
        let hd = q.len();
        let full = hd / LANES * LANES;
        let mut acc = [_mm256_setzero_ps(); 4];
        for c in (0..full).step_by(LANES) {
            // SAFETY: c + 8 <= full <= hd.
            let qv = unsafe { _mm256_loadu_ps(q.as_ptr().add(c)) };
            for (i, a) in acc.iter_mut().enumerate() {
                // SAFETY: key i's elements c..c + 8 are within the 4 keys the caller vouches for.
                *a = _mm256_fmadd_ps(qv, unsafe { T::load8(k0.add(i * stride + c)) }, *a);
            }
        }
        let mut s = [0f32; 4];
        for (i, si) in s.iter_mut().enumerate() {
            *si = hsum(acc[i]);
            for (d, qd) in q.iter().enumerate().skip(full) {
                // SAFETY: within key i.
                *si = qd.mul_add(unsafe { *k0.add(i * stride + d) }.to_f32(), *si);
            }
        }
        s
    }

    /// One key's dot product, for the keys left after the groups of 4.
    ///
    /// # Safety
    /// `k` must hold `q.len()` elements from `k0`.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot1<T: KvElem>(q: &[f32], k0: *const T) -> f32 {
        let hd = q.len();
        let full = hd / LANES * LANES;
        let mut acc = _mm256_setzero_ps();
        for c in (0..full).step_by(LANES) {
            // SAFETY: c + 8 <= full <= hd, within q and the key.
            acc = unsafe {
                _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add(c)), T::load8(k0.add(c)), acc)
            };
        }
        let mut s = hsum(acc);
        for (d, qd) in q.iter().enumerate().skip(full) {
            // SAFETY: within the key.
            s = qd.mul_add(unsafe { *k0.add(d) }.to_f32(), s);
        }
        s
    }

    /// Output columns computed per pass over the values: 4 registers of accumulators.
    const OUT_BLOCK: usize = 4 * LANES;

    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `rows` spans its `n` rows of `q.len()`, `scores`
    /// is `n` long and `out` is `q.len()` long (checked by the caller).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn row<T: KvElem>(
        q: &[f32],
        rows: Rows<'_, T>,
        scale: f32,
        scores: &mut [f32],
        out: &mut [f32],
    ) {
        let (hd, n, stride) = (q.len(), rows.n, rows.stride);
        let (k, v) = (rows.k, rows.v);
        let mut j = 0;
        while j + 4 <= n {
            // SAFETY: keys j..j + 4 are within the n rows of k.
            let s = unsafe { dot4(q, k.as_ptr().add(j * stride), stride) };
            for (i, si) in s.iter().enumerate() {
                scores[j + i] = si * scale;
            }
            j += 4;
        }
        while j < n {
            // SAFETY: key j is within the n rows of k.
            scores[j] = unsafe { dot1(q, k.as_ptr().add(j * stride)) } * scale;
            j += 1;
        }
        let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
        let full = n / LANES * LANES;
        let maxv = _mm256_set1_ps(max);
        let mut acc = _mm256_setzero_ps();
        for c in (0..full).step_by(LANES) {
            // SAFETY: c + 8 <= full <= n = scores.len().
            unsafe {
                let p = scores.as_mut_ptr().add(c);
                let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p), maxv));
                _mm256_storeu_ps(p, e);
                acc = _mm256_add_ps(acc, e);
            }
        }
        let mut sum = hsum(acc);
        for s in &mut scores[full..] {
            *s = exp(*s - max);
            sum += *s;
        }
        let inv = 1.0 / sum;
        let vec_cols = hd / LANES * LANES;
        let mut d0 = 0;
        while d0 < vec_cols {
            let width = (vec_cols - d0).min(OUT_BLOCK) / LANES;
            let mut a = [_mm256_setzero_ps(); OUT_BLOCK / LANES];
            for (jj, &p) in scores.iter().enumerate() {
                let pv = _mm256_set1_ps(p);
                let row = v[jj * stride + d0..].as_ptr();
                for (r, ar) in a.iter_mut().enumerate().take(width) {
                    // SAFETY: columns d0 + 8r .. d0 + 8r + 8 <= vec_cols <= hd, within row jj.
                    *ar = _mm256_fmadd_ps(pv, unsafe { T::load8(row.add(r * LANES)) }, *ar);
                }
            }
            for (r, ar) in a.iter().enumerate().take(width) {
                let o = _mm256_mul_ps(*ar, _mm256_set1_ps(inv));
                // SAFETY: within out (hd long).
                unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(d0 + r * LANES), o) };
            }
            d0 += width * LANES;
        }
        for (d, o) in out.iter_mut().enumerate().skip(vec_cols) {
            let mut a = 0f32;
            for (jj, &p) in scores.iter().enumerate() {
                a = p.mul_add(v[jj * stride + d].to_f32(), a);
            }
            *o = a * inv;
        }
    }
}

//! The vector kernel against the reference to the bit, both against exact (f64) attention, and
//! the batch: causal rows, batch invariance and the output layout.

use super::kernel::{Isa, Rows, attend_row, exp};
use super::*;

fn isas() -> Vec<Isa> {
    [Isa::Scalar, Isa::Avx2]
        .into_iter()
        .filter(|i| i.supported())
        .collect()
}

fn values(n: usize, seed: u32) -> Vec<f32> {
    // Scaled so scores spread over a few units, as real attention logits do.
    sluice_testkit::pseudo_random(n, seed)
        .into_iter()
        .map(|x| x * 3.0)
        .collect()
}

fn halves(x: &[f32]) -> Vec<f16> {
    x.iter().map(|&v| f16::from_f32(v)).collect()
}

/// softmax(scale · K q) V in f64, over the first `n` rows.
fn exact(q: &[f32], k: &[f32], v: &[f32], n: usize, scale: f32) -> Vec<f64> {
    let hd = q.len();
    let s: Vec<f64> = (0..n)
        .map(|j| {
            (0..hd)
                .map(|d| f64::from(q[d]) * f64::from(k[j * hd + d]))
                .sum::<f64>()
                * f64::from(scale)
        })
        .collect();
    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
    let sum: f64 = e.iter().sum();
    (0..hd)
        .map(|d| (0..n).map(|j| e[j] * f64::from(v[j * hd + d])).sum::<f64>() / sum)
        .collect()
}

#[test]
fn exp_is_within_a_few_ulp_of_exact() {
    assert_eq!(exp(0.0), 1.0);
    let mut worst = 0f64;
    for i in 0..=87_000 {
        let x = -(i as f32) / 1000.0;
        let want = f64::from(x).exp();
        let rel = (f64::from(exp(x)) - want).abs() / want;
        worst = worst.max(rel);
    }
    assert!(worst < 4e-7, "worst relative error {worst}");
    // Far below the clamp, a weight of zero for all practical purposes (and never a NaN).
    assert!(exp(-1e4) < 1e-37 && exp(f32::NEG_INFINITY) < 1e-37);
}

#[test]
fn vector_rows_equal_the_reference_to_the_bit() {
    // Head widths with and without a tail past the 8 lanes, key counts around the groups of 4
    // and of 8, rows packed and interleaved with other heads' (stride 3 × hd, one head in).
    for hd in [8, 20, 64, 128] {
        for n in [1, 3, 4, 7, 8, 9, 33, 100] {
            for (stride, start) in [(hd, 0), (3 * hd, hd)] {
                let q = values(hd, 1);
                let k = values(n * stride, 2);
                let v = values(n * stride, 3);
                let (k16, v16) = (halves(&k), halves(&v));
                let mut results = Vec::new();
                for isa in isas() {
                    let mut scores = vec![0f32; n];
                    let mut a = vec![0f32; hd];
                    let mut b = vec![0f32; hd];
                    let rows = |k, v| Rows { k, v, n, stride };
                    attend_row(
                        isa,
                        &q,
                        rows(&k[start..], &v[start..]),
                        0.125,
                        &mut scores,
                        &mut a,
                    );
                    let half = Rows {
                        k: &k16[start..],
                        v: &v16[start..],
                        n,
                        stride,
                    };
                    attend_row(isa, &q, half, 0.125, &mut scores, &mut b);
                    let bits = |x: &[f32]| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    results.push((isa, bits(&a), bits(&b)));
                }
                for (isa, a, b) in &results[1..] {
                    let at = format!("{isa:?}, hd {hd}, n {n}, stride {stride}");
                    assert_eq!(a, &results[0].1, "f32 cache, {at}");
                    assert_eq!(b, &results[0].2, "f16 cache, {at}");
                }
            }
        }
    }
}

#[test]
fn a_nan_query_gives_a_nan_row_on_every_instruction_set() {
    // A broken row must show as broken (the engine then fails that request alone), never as
    // plausible numbers.
    let (hd, n) = (64, 40);
    let mut q = values(hd, 1);
    q[5] = f32::NAN;
    let (k, v) = (values(n * hd, 2), values(n * hd, 3));
    for isa in isas() {
        let mut scores = vec![0f32; n];
        let mut out = vec![0f32; hd];
        let rows = Rows {
            k: &k,
            v: &v,
            n,
            stride: hd,
        };
        attend_row(isa, &q, rows, 0.125, &mut scores, &mut out);
        assert!(out.iter().all(|x| x.is_nan()), "{isa:?}: {out:?}");
    }
    assert!(exp(f32::NAN).is_nan());
}

#[test]
fn rows_match_exact_attention() {
    let (hd, n) = (64, 300);
    let q = values(hd, 4);
    let k = values(n * hd, 5);
    let v = values(n * hd, 6);
    let (k16, v16) = (halves(&k), halves(&v));
    let widened = |x: &[f16]| x.iter().map(|h| h.to_f32()).collect::<Vec<_>>();
    for isa in isas() {
        let mut scores = vec![0f32; n];
        let mut got = vec![0f32; hd];
        let rows = Rows {
            k: &k,
            v: &v,
            n,
            stride: hd,
        };
        attend_row(isa, &q, rows, 0.125, &mut scores, &mut got);
        let want = exact(&q, &k, &v, n, 0.125);
        for d in 0..hd {
            let err = (f64::from(got[d]) - want[d]).abs();
            assert!(err < 1e-5, "{isa:?} f32 [{d}]: {} vs {}", got[d], want[d]);
        }
        // An f16 cache computes exactly on the rounded keys and values.
        let rows = Rows {
            k: &k16,
            v: &v16,
            n,
            stride: hd,
        };
        attend_row(isa, &q, rows, 0.125, &mut scores, &mut got);
        let want = exact(&q, &widened(&k16), &widened(&v16), n, 0.125);
        for d in 0..hd {
            let err = (f64::from(got[d]) - want[d]).abs();
            assert!(err < 1e-5, "{isa:?} f16 [{d}]: {} vs {}", got[d], want[d]);
        }
    }
}

/// A test sequence's owned data: queries `[t, n_heads, hd]` and a `[capacity, n_kv, hd]` cache.
struct Owned {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    k16: Vec<f16>,
    v16: Vec<f16>,
    t: usize,
    past: usize,
    capacity: usize,
}

fn owned(dims: Dims, t: usize, past: usize, seed: u32) -> Owned {
    let capacity = (past + t).next_power_of_two().max(8);
    let cache = dims.n_kv_heads * capacity * dims.head_dim;
    let (k, v) = (values(cache, seed), values(cache, seed + 1));
    Owned {
        q: values(dims.n_heads * t * dims.head_dim, seed + 2),
        k16: halves(&k),
        v16: halves(&v),
        k,
        v,
        t,
        past,
        capacity,
    }
}

impl Owned {
    fn seq(&self, half: bool) -> Seq<'_> {
        Seq {
            q: &self.q,
            t: self.t,
            past: self.past,
            cache: if half {
                Cache::F16 {
                    k: &self.k16,
                    v: &self.v16,
                }
            } else {
                Cache::F32 {
                    k: &self.k,
                    v: &self.v,
                }
            },
            capacity: self.capacity,
        }
    }
}

const DIMS: Dims = Dims {
    n_heads: 8,
    n_kv_heads: 2,
    head_dim: 16,
    scale: 0.25,
};

#[test]
fn each_output_row_is_its_heads_causal_attention() {
    let hd = DIMS.head_dim;
    let n_rep = DIMS.n_heads / DIMS.n_kv_heads;
    let s = owned(DIMS, 3, 5, 10);
    for isa in isas() {
        let out = attend(isa, DIMS, &[s.seq(false)]);
        assert_eq!(out.len(), s.t * DIMS.n_heads * hd);
        for i in 0..s.t {
            for head in 0..DIMS.n_heads {
                let kvh = head / n_rep;
                // This head's keys and values, packed.
                let head_rows = |x: &[f32]| -> Vec<f32> {
                    (0..s.capacity)
                        .flat_map(|j| x[(j * DIMS.n_kv_heads + kvh) * hd..][..hd].to_vec())
                        .collect()
                };
                let (k, v) = (head_rows(&s.k), head_rows(&s.v));
                let q = &s.q[(i * DIMS.n_heads + head) * hd..][..hd];
                let want = exact(q, &k, &v, s.past + i + 1, DIMS.scale);
                let got = &out[(i * DIMS.n_heads + head) * hd..][..hd];
                for d in 0..hd {
                    assert!(
                        (f64::from(got[d]) - want[d]).abs() < 1e-5,
                        "{isa:?} row {i} head {head} [{d}]"
                    );
                }
            }
        }
    }
}

#[test]
fn a_sequence_gets_the_same_bits_alone_and_in_any_batch() {
    let seqs = [
        owned(DIMS, 1, 40, 20),
        owned(DIMS, 5, 0, 30),
        owned(DIMS, 1, 7, 40),
        owned(DIMS, 2, 100, 50),
    ];
    for isa in isas() {
        for half in [false, true] {
            let alone: Vec<Vec<f32>> = seqs
                .iter()
                .map(|s| attend(isa, DIMS, &[s.seq(half)]))
                .collect();
            let batch: Vec<Seq<'_>> = seqs.iter().map(|s| s.seq(half)).collect();
            let together = attend(isa, DIMS, &batch);
            let reversed: Vec<Seq<'_>> = batch.iter().rev().copied().collect();
            let backwards = attend(isa, DIMS, &reversed);
            let mut at = 0;
            for (i, a) in alone.iter().enumerate() {
                assert_eq!(&together[at..at + a.len()], a.as_slice(), "seq {i}");
                at += a.len();
            }
            let mut at = 0;
            for a in alone.iter().rev() {
                assert_eq!(&backwards[at..at + a.len()], a.as_slice());
                at += a.len();
            }
        }
    }
}

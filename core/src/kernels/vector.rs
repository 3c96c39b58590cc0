//! Vector kernels with runtime dispatch; each names its scalar reference.

use crate::quant::{BlockQ4_0, BlockQ8_0, Q8Acts};
#[cfg(not(feature = "std"))]
use crate::{ops::linalg, quant};

/// Σ a·b. Reference: `ops::linalg::dot`.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(feature = "std")]
    return super::simd::dot(a, b);
    #[cfg(not(feature = "std"))]
    return linalg::dot(a, b);
}

/// y += alpha·x. Reference: `ops::linalg::axpy`.
#[inline]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    #[cfg(feature = "std")]
    super::simd::axpy(alpha, x, y);
    #[cfg(not(feature = "std"))]
    linalg::axpy(alpha, x, y);
}

/// Σ x: a pure streaming read, the yardstick for memory bandwidth.
#[inline]
pub fn sum(x: &[f32]) -> f32 {
    #[cfg(feature = "std")]
    return super::simd::sum(x);
    #[cfg(not(feature = "std"))]
    return x.iter().sum();
}

/// out[r·t + i] = w_r · x_i for the rows w_r (k long) of `w` and the t rows x_i of `x`.
/// Reference: `ops::linalg::dot` per pair.
pub fn rows_dot_f32(w: &[f32], x: &[f32], k: usize, out: &mut [f32]) {
    #[cfg(feature = "std")]
    super::simd::rows_dot_f32(w, x, k, out);
    #[cfg(not(feature = "std"))]
    {
        let t = x.len() / k;
        for (wr, o) in w.chunks_exact(k).zip(out.chunks_exact_mut(t)) {
            for (xi, oi) in x.chunks_exact(k).zip(o) {
                *oi = linalg::dot(wr, xi);
            }
        }
    }
}

/// out[i, ..] += Σ_j s[i, j] · v[j, cols] for each row i of the scores `s` ([t, n]); `v` has rows
/// of `stride` values, `out` rows of `cols.len()`. Zero scores skip their row of `v`.
/// Reference: `ops::linalg::matmul_nn` (over all columns).
pub fn scores_times_values(
    s: &[f32],
    v: &[f32],
    stride: usize,
    cols: core::ops::Range<usize>,
    out: &mut [f32],
) {
    #[cfg(feature = "std")]
    super::simd::scores_times_values(s, v, stride, cols, out);
    #[cfg(not(feature = "std"))]
    {
        let n = v.len() / stride;
        for (srow, orow) in s.chunks_exact(n).zip(out.chunks_exact_mut(cols.len())) {
            for (j, &a) in srow.iter().enumerate() {
                if a != 0.0 {
                    linalg::axpy(a, &v[j * stride + cols.start..j * stride + cols.end], orow);
                }
            }
        }
    }
}

/// out[r·t + i] = w_r · x_i with Q8_0 weight rows of `row_blocks` blocks and the t rows of `x`.
/// Reference: `quant::vec_dot_q8_0_q8_0` per pair.
pub fn rows_dot_q8_0(w: &[BlockQ8_0], row_blocks: usize, x: &Q8Acts, out: &mut [f32]) {
    #[cfg(feature = "std")]
    super::simd::rows_dot_q8_0(w, row_blocks, &x.blocks, &x.scales, &x.sums, out);
    #[cfg(not(feature = "std"))]
    {
        let t = x.rows();
        for (wr, o) in w.chunks_exact(row_blocks).zip(out.chunks_exact_mut(t)) {
            for (i, oi) in o.iter_mut().enumerate() {
                *oi = quant::vec_dot_q8_0_q8_0(wr, x.row(i).0);
            }
        }
    }
}

/// As [`rows_dot_q8_0`] with Q4_0 weights. Reference: `quant::vec_dot_q4_0_q8_0` per pair.
pub fn rows_dot_q4_0(w: &[BlockQ4_0], row_blocks: usize, x: &Q8Acts, out: &mut [f32]) {
    #[cfg(feature = "std")]
    super::simd::rows_dot_q4_0(w, row_blocks, &x.blocks, &x.scales, &x.sums, out);
    #[cfg(not(feature = "std"))]
    {
        let t = x.rows();
        for (wr, o) in w.chunks_exact(row_blocks).zip(out.chunks_exact_mut(t)) {
            for (i, oi) in o.iter_mut().enumerate() {
                *oi = quant::vec_dot_q4_0_q8_0(wr, x.row(i).0);
            }
        }
    }
}

/// One Q8_0·Q8_0 row dot through the dispatched kernel. Reference: `quant::vec_dot_q8_0_q8_0`.
pub fn dot_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    let acts = acts_of(x);
    let mut out = [0.0];
    rows_dot_q8_0(w, w.len(), &acts, &mut out);
    out[0]
}

/// One Q4_0·Q8_0 row dot through the dispatched kernel. Reference: `quant::vec_dot_q4_0_q8_0`.
pub fn dot_q4_0(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    let acts = acts_of(x);
    let mut out = [0.0];
    rows_dot_q4_0(w, w.len(), &acts, &mut out);
    out[0]
}

fn acts_of(x: &[BlockQ8_0]) -> Q8Acts {
    Q8Acts::from_blocks(x.to_vec(), x.len())
}

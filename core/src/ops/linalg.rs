//! Dot products and matrix products over row-major slices, each row loop written once over a
//! [`Vector`] primitive: [`Scalar`] here (the reference, what no_std runs), a SIMD one per
//! instruction set in `kernels`.
//!
//! The scalar dot keeps independent accumulators so that the compiler vectorises it on any
//! target without reassociation flags; it never fuses a multiply and an add, so the host's scalar
//! path and a microcontroller's agree bit for bit.

use super::activation::{gelu, gelu_grad};

/// The primitive every row loop is written over.
pub trait Vector: Copy {
    /// `Σ a[i]·b[i]`.
    fn dot(self, a: &[f32], b: &[f32]) -> f32;
    /// y += alpha · x.
    fn axpy(self, alpha: f32, x: &[f32], y: &mut [f32]);
    /// Σ x.
    fn sum(self, x: &[f32]) -> f32;
    /// `x[i] = GELU(f·x[i])` (`activation::gelu`).
    fn gelu(self, f: f32, x: &mut [f32]);
    /// `g[i] *= GELU'(f·a[i])` (`activation::gelu_grad`).
    fn gelu_grad_mul(self, f: f32, a: &[f32], g: &mut [f32]);
    /// `Σ a[i]·b[i]` in f64 (each product exact).
    fn dot_f64(self, a: &[f32], b: &[f32]) -> f64;
    /// `out[i] = e^(x[i] − shift)`; returns `Σ out[i]` in f64.
    fn exp_sum(self, shift: f32, x: &[f32], out: &mut [f32]) -> f64;
}

/// The scalar reference primitive.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scalar;

impl Vector for Scalar {
    #[inline]
    fn dot(self, a: &[f32], b: &[f32]) -> f32 {
        dot(a, b)
    }
    #[inline]
    fn axpy(self, alpha: f32, x: &[f32], y: &mut [f32]) {
        axpy(alpha, x, y)
    }
    #[inline]
    fn sum(self, x: &[f32]) -> f32 {
        x.iter().sum()
    }
    #[inline]
    fn gelu(self, f: f32, x: &mut [f32]) {
        x.iter_mut().for_each(|a| *a = gelu(*a * f));
    }
    #[inline]
    fn gelu_grad_mul(self, f: f32, a: &[f32], g: &mut [f32]) {
        debug_assert_eq!(a.len(), g.len());
        for (gi, &x) in g.iter_mut().zip(a) {
            *gi *= gelu_grad(x * f);
        }
    }
    /// In order, one sum: the reference.
    #[inline]
    fn dot_f64(self, a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
    }
    #[inline]
    fn exp_sum(self, shift: f32, x: &[f32], out: &mut [f32]) -> f64 {
        let mut sum = 0.0f64;
        for (o, &xi) in out.iter_mut().zip(x) {
            *o = super::exp_train(xi - shift);
            sum += *o as f64;
        }
        sum
    }
}

/// `Σ a[i]·b[i]`, eight independent partial sums.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let (ac, ar) = a.split_at(a.len() / 8 * 8);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(8).zip(bc.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ar.iter().zip(br) {
        s += x * y;
    }
    s
}

/// y += alpha · x.
#[inline]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    debug_assert_eq!(x.len(), y.len());
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// out[r·t + i] = w_r · x_i for the rows w_r (k long) of `w` and the t rows x_i of `x`: one
/// weight row streams once for all activation rows.
#[inline(always)]
pub fn rows_dot<V: Vector>(v: V, w: &[f32], x: &[f32], k: usize, out: &mut [f32]) {
    let t = x.len() / k;
    for (wr, o) in w.chunks_exact(k).zip(out.chunks_exact_mut(t)) {
        for (xi, oi) in x.chunks_exact(k).zip(o) {
            *oi = v.dot(wr, xi);
        }
    }
}

/// out[i, ..] += Σ_j s[i, j] · vals[j, cols] for each row i of the scores `s` ([t, n]); `vals`
/// has rows of `stride` values, `out` rows of `cols.len()`. Zero scores (common after GELU) skip
/// their row.
#[inline(always)]
pub fn scores_times_values<V: Vector>(
    v: V,
    s: &[f32],
    vals: &[f32],
    stride: usize,
    cols: core::ops::Range<usize>,
    out: &mut [f32],
) {
    let n = vals.len() / stride;
    for (srow, orow) in s.chunks_exact(n).zip(out.chunks_exact_mut(cols.len())) {
        for (j, &a) in srow.iter().enumerate() {
            if a != 0.0 {
                v.axpy(
                    a,
                    &vals[j * stride + cols.start..j * stride + cols.end],
                    orow,
                );
            }
        }
    }
}

/// out[t, n] = x[t, k] · w[n, k]ᵀ: every output is a row-by-row dot product.
pub fn matmul_nt(x: &[f32], w: &[f32], k: usize, out: &mut [f32]) {
    let n = w.len() / k;
    debug_assert_eq!(out.len(), x.len() / k * n);
    for (xr, o) in x.chunks_exact(k).zip(out.chunks_exact_mut(n)) {
        rows_dot(Scalar, w, xr, k, o);
    }
}

/// out[t, m] = s[t, n] · v[n, m]: each output row accumulates the score-weighted rows of `v`.
pub fn matmul_nn(s: &[f32], v: &[f32], m: usize, out: &mut [f32]) {
    debug_assert_eq!(out.len(), s.len() / (v.len() / m) * m);
    out.fill(0.0);
    scores_times_values(Scalar, s, v, m, 0..m, out);
}

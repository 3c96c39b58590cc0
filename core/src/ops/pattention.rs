//! Pattention: token-parameter attention. `O = Θ(X·K_Pᵀ) · V_P` (spec: "Pattention").

use super::activation::gelu;
use super::linalg::{matmul_nn, matmul_nt};
use crate::config::Norm;
use alloc::vec;

/// Θ on one row of scores, in place. `scale_n` is the token count whose square root scales the
/// L2-normalised variants (the layer's own n unless the model was grown with its scale kept).
///
/// An all-zero row gives zeros for the L2 variants (the eps-free reference would give NaN);
/// the sum of squares is accumulated in f64, which cannot overflow for finite f32 scores.
pub fn theta(row: &mut [f32], norm: Norm, scale_n: usize) {
    let sqrt_n = libm::sqrt(scale_n as f64);
    match norm {
        Norm::L2NormGelu => {
            let ss: f64 = row.iter().map(|&a| a as f64 * a as f64).sum();
            if ss == 0.0 {
                row.fill(0.0);
                return;
            }
            let f = (sqrt_n / libm::sqrt(ss)) as f32;
            for a in row.iter_mut() {
                *a = gelu(*a * f);
            }
        }
        Norm::GeluL2Norm => {
            for a in row.iter_mut() {
                *a = gelu(*a);
            }
            let ss: f64 = row.iter().map(|&g| g as f64 * g as f64).sum();
            if ss == 0.0 {
                row.fill(0.0);
                return;
            }
            let f = (sqrt_n / libm::sqrt(ss)) as f32;
            for g in row.iter_mut() {
                *g *= f;
            }
        }
        Norm::Softmax => {
            // exp(a)/Σexp(a)·n, with the max subtracted so huge scores cannot overflow.
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f64;
            for a in row.iter_mut() {
                *a = libm::expf(*a - m);
                sum += *a as f64;
            }
            let f = (row.len() as f64 / sum) as f32;
            for a in row.iter_mut() {
                *a *= f;
            }
        }
    }
}

/// out[t, d_out] = Θ(x[t, d_in] · keys[n, d_in]ᵀ) · values[n, d_out].
pub fn pattention(
    x: &[f32],
    keys: &[f32],
    values: &[f32],
    d_in: usize,
    norm: Norm,
    scale_n: usize,
    out: &mut [f32],
) {
    let n = keys.len() / d_in;
    let d_out = values.len() / n;
    let t = x.len() / d_in;
    let mut scores = vec![0.0f32; t * n];
    matmul_nt(x, keys, d_in, &mut scores);
    for row in scores.chunks_exact_mut(n) {
        theta(row, norm, scale_n);
    }
    matmul_nn(&scores, values, d_out, out);
}

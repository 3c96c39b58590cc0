//! Pattention: token-parameter attention. `O = Θ(X·K_Pᵀ) · V_P` (spec: "Pattention").

use super::linalg::{matmul_nn, matmul_nt};
pub use super::theta::theta;
use crate::config::ThetaKind;
use alloc::vec;

/// out[t, d_out] = Θ(x[t, d_in] · keys[n, d_in]ᵀ) · values[n, d_out].
pub fn pattention(
    x: &[f32],
    keys: &[f32],
    values: &[f32],
    d_in: usize,
    norm: ThetaKind,
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

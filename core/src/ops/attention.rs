//! Causal multi-head softmax attention (ordinary softmax, scale 1/√head_dim): inference over a
//! KV history, written once over a [`Vector`] primitive, and the row maths of training's
//! forward and backward (whose products run as gemm in the training backend).

use super::linalg::Vector;
use alloc::vec;

/// q: [t, d] at positions pos0..pos0+t; k, v: [pos0 + t, d] (the history plus these rows).
/// Head h owns dims [h·hd, (h+1)·hd). out: [t, d].
#[allow(clippy::too_many_arguments)]
pub fn causal_attention<V: Vector>(
    vec_ops: V,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    d: usize,
    n_heads: usize,
    pos0: usize,
    out: &mut [f32],
) {
    let hd = d / n_heads;
    let scale = 1.0 / libm::sqrtf(hd as f32);
    let total = k.len() / d;
    let mut p = vec![0.0f32; total];
    out.fill(0.0);
    for (i, (qrow, orow)) in q.chunks_exact(d).zip(out.chunks_exact_mut(d)).enumerate() {
        let len = pos0 + i + 1;
        for h in 0..n_heads {
            let r = h * hd..(h + 1) * hd;
            let qh = &qrow[r.clone()];
            let mut m = f32::NEG_INFINITY;
            for (j, pj) in p[..len].iter_mut().enumerate() {
                *pj = vec_ops.dot(qh, &k[j * d + r.start..j * d + r.end]) * scale;
                m = m.max(*pj);
            }
            let mut sum = 0.0f32;
            for pj in p[..len].iter_mut() {
                *pj = libm::expf(*pj - m);
                sum += *pj;
            }
            let oh = &mut orow[r.clone()];
            for (j, pj) in p[..len].iter().enumerate() {
                vec_ops.axpy(pj / sum, &v[j * d + r.start..j * d + r.end], oh);
            }
        }
    }
}

/// Training's forward, row i of one head's [t, t] scores q·kᵀ, in place: the causal softmax of
/// row·scale over columns 0..=i, zeros after.
pub fn softmax_row(row: &mut [f32], i: usize, scale: f32) {
    let live = &mut row[..=i];
    let m = live
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| m.max(x * scale));
    let mut sum = 0.0f32;
    for x in live.iter_mut() {
        *x = super::exp_train(*x * scale - m);
        sum += *x;
    }
    let inv = 1.0 / sum;
    live.iter_mut().for_each(|x| *x *= inv);
    row[i + 1..].fill(0.0);
}

/// Training's backward, row i: the score gradient from dP (in `ds`, replaced in place) and the
/// probabilities P: dS = P ⊙ (dP − Σ_j P dP) · scale over 0..=i, zeros after.
pub fn softmax_backward_row(ds: &mut [f32], p: &[f32], i: usize, scale: f32) {
    let dot: f32 = ds[..=i].iter().zip(&p[..=i]).map(|(a, b)| a * b).sum();
    for (x, &pj) in ds[..=i].iter_mut().zip(&p[..=i]) {
        *x = pj * (*x - dot) * scale;
    }
    ds[i + 1..].fill(0.0);
}

//! Cross-entropy of the next token over one row of logits, with its gradient.

use super::linalg::{Scalar, Vector};

/// Loss `−log softmax(z)[target]` (accumulated in f64) and, in `g`, its gradient times
/// `grad_scale`: (softmax(z) − onehot(target))·grad_scale.
pub fn cross_entropy_row(z: &[f32], target: usize, grad_scale: f32, g: &mut [f32]) -> f64 {
    cross_entropy_row_with(Scalar, z, target, grad_scale, g)
}

/// [`cross_entropy_row`] over a [`Vector`] primitive (`kernels::vector::cross_entropy_row`).
#[inline(always)]
pub fn cross_entropy_row_with<V: Vector>(
    v: V,
    z: &[f32],
    target: usize,
    grad_scale: f32,
    g: &mut [f32],
) -> f64 {
    let m = z.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let sum = v.exp_sum(m, z, g);
    let loss = super::ln_train(sum) + m as f64 - z[target] as f64;
    let inv = (1.0 / sum) as f32 * grad_scale;
    g.iter_mut().for_each(|gi| *gi *= inv);
    g[target] -= grad_scale;
    loss
}

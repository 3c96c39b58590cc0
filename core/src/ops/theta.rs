//! Θ, the normalisation inside Pattention, in its three variants (spec: "Pattention"), with
//! the scale √n kept from the layer's own token count or from before growth: forward and
//! backward of one row of scores.

use super::linalg::{Scalar, Vector};
use crate::config::ThetaKind;

/// Θ on one row of scores, in place. `scale_n` is the token count whose square root scales the
/// L2-normalised variants (the layer's own n unless the model was grown with its scale kept).
///
/// An all-zero row gives zeros for the L2 variants (the eps-free reference would give NaN);
/// the sum of squares is accumulated in f64, which cannot overflow for finite f32 scores.
pub fn theta(row: &mut [f32], norm: ThetaKind, scale_n: usize) {
    theta_with(Scalar, row, norm, scale_n)
}

/// [`theta`] over a [`Vector`] primitive (`kernels::vector::theta` runs it at the kernel level).
#[inline(always)]
pub fn theta_with<V: Vector>(v: V, row: &mut [f32], norm: ThetaKind, scale_n: usize) {
    let sqrt_n = libm::sqrt(scale_n as f64);
    match norm {
        ThetaKind::L2NormGelu => match l2_scale(v, row, sqrt_n) {
            Some(f) => v.gelu(f, row),
            None => row.fill(0.0),
        },
        ThetaKind::GeluL2Norm => {
            v.gelu(1.0, row);
            match l2_scale(v, row, sqrt_n) {
                Some(f) => row.iter_mut().for_each(|g| *g *= f),
                None => row.fill(0.0),
            }
        }
        ThetaKind::Softmax => {
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

/// √n/‖x‖, the sum of squares accumulated in f64; `None` for an all-zero x.
#[inline(always)]
fn l2_scale<V: Vector>(v: V, x: &[f32], sqrt_n: f64) -> Option<f32> {
    let ss = v.dot_f64(x, x);
    (ss != 0.0).then(|| (sqrt_n / libm::sqrt(ss)) as f32)
}

/// Backward of Θ for one row of scores `a` with output `s` and upstream `ds`.
pub fn theta_backward_row(
    a: &[f32],
    s: &[f32],
    ds: &[f32],
    norm: ThetaKind,
    scale_n: usize,
    da: &mut [f32],
) {
    theta_backward_row_with(Scalar, a, s, ds, norm, scale_n, da)
}

/// [`theta_backward_row`] over a [`Vector`] primitive.
#[inline(always)]
pub fn theta_backward_row_with<V: Vector>(
    v: V,
    a: &[f32],
    s: &[f32],
    ds: &[f32],
    norm: ThetaKind,
    scale_n: usize,
    da: &mut [f32],
) {
    let sqrt_n = libm::sqrt(scale_n as f64);
    match norm {
        ThetaKind::L2NormGelu => {
            // u = a·√n/‖a‖, s = GELU(u); da = (√n/‖a‖)·(gu − â(â·gu)), gu = ds·GELU'(u).
            let ss = v.dot_f64(a, a);
            if ss == 0.0 {
                da.fill(0.0);
                return;
            }
            let r = libm::sqrt(ss);
            let f = (sqrt_n / r) as f32;
            da.copy_from_slice(ds);
            v.gelu_grad_mul(f, a, da);
            let c = (v.dot_f64(da, a) / ss) as f32; // (â·gu)/‖a‖ folded with the second â
            for (o, &x) in da.iter_mut().zip(a) {
                *o = f * (*o - x * c);
            }
        }
        ThetaKind::GeluL2Norm => {
            // g = GELU(a), s = g·√n/‖g‖; dg = (√n/‖g‖)(ds − ĝ(ĝ·ds)); da = dg·GELU'(a).
            // da holds g until it is overwritten with dg.
            da.copy_from_slice(a);
            v.gelu(1.0, da);
            let ss = v.dot_f64(da, da);
            if ss == 0.0 {
                da.fill(0.0);
                return;
            }
            let f = (sqrt_n / libm::sqrt(ss)) as f32;
            let c = (v.dot_f64(da, ds) / ss) as f32;
            for (o, &h) in da.iter_mut().zip(ds) {
                *o = f * (h - *o * c);
            }
            v.gelu_grad_mul(1.0, a, da);
        }
        ThetaKind::Softmax => {
            // s = n·softmax(a): da_j = s_j·(ds_j − (1/n)·Σ_i ds_i s_i).
            let n = a.len() as f64;
            let dot: f64 = s.iter().zip(ds).map(|(&x, &g)| x as f64 * g as f64).sum();
            let c = (dot / n) as f32;
            for ((o, &x), &g) in da.iter_mut().zip(s).zip(ds) {
                *o = x * (g - c);
            }
        }
    }
}

//! Θ, the normalisation inside Pattention, in its three variants (spec: "Pattention"), with
//! the scale √n kept from the layer's own token count or from before growth: forward and
//! backward of one row of scores.

use super::activation::{gelu, gelu_grad};
use crate::config::ThetaKind;

/// Θ on one row of scores, in place. `scale_n` is the token count whose square root scales the
/// L2-normalised variants (the layer's own n unless the model was grown with its scale kept).
///
/// An all-zero row gives zeros for the L2 variants (the eps-free reference would give NaN);
/// the sum of squares is accumulated in f64, which cannot overflow for finite f32 scores.
pub fn theta(row: &mut [f32], norm: ThetaKind, scale_n: usize) {
    let sqrt_n = libm::sqrt(scale_n as f64);
    match norm {
        ThetaKind::L2NormGelu => match l2_scale(row, sqrt_n) {
            Some(f) => row.iter_mut().for_each(|a| *a = gelu(*a * f)),
            None => row.fill(0.0),
        },
        ThetaKind::GeluL2Norm => {
            row.iter_mut().for_each(|a| *a = gelu(*a));
            match l2_scale(row, sqrt_n) {
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

/// √n/‖v‖, the sum of squares accumulated in f64; `None` for an all-zero v.
fn l2_scale(v: &[f32], sqrt_n: f64) -> Option<f32> {
    let ss: f64 = v.iter().map(|&a| a as f64 * a as f64).sum();
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
    let sqrt_n = libm::sqrt(scale_n as f64);
    match norm {
        ThetaKind::L2NormGelu => {
            // u = a·√n/‖a‖, s = GELU(u); da = (√n/‖a‖)·(gu − â(â·gu)), gu = ds·GELU'(u).
            let ss: f64 = a.iter().map(|&x| x as f64 * x as f64).sum();
            if ss == 0.0 {
                da.fill(0.0);
                return;
            }
            let r = libm::sqrt(ss);
            let f = (sqrt_n / r) as f32;
            let mut proj = 0.0f64;
            for ((o, &x), &g) in da.iter_mut().zip(a).zip(ds) {
                let gu = g * gelu_grad(x * f);
                *o = gu;
                proj += gu as f64 * x as f64;
            }
            let c = (proj / ss) as f32; // (â·gu)/‖a‖ folded with the second â
            for (o, &x) in da.iter_mut().zip(a) {
                *o = f * (*o - x * c);
            }
        }
        ThetaKind::GeluL2Norm => {
            // g = GELU(a), s = g·√n/‖g‖; dg = (√n/‖g‖)(ds − ĝ(ĝ·ds)); da = dg·GELU'(a).
            let gs: alloc::vec::Vec<f32> = a.iter().map(|&x| gelu(x)).collect();
            let ss: f64 = gs.iter().map(|&x| x as f64 * x as f64).sum();
            if ss == 0.0 {
                da.fill(0.0);
                return;
            }
            let f = (sqrt_n / libm::sqrt(ss)) as f32;
            let proj: f64 = gs.iter().zip(ds).map(|(&g, &h)| g as f64 * h as f64).sum();
            let c = (proj / ss) as f32;
            for (((o, &x), &g), &h) in da.iter_mut().zip(a).zip(&gs).zip(ds) {
                *o = f * (h - g * c) * gelu_grad(x);
            }
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

//! The vector primitive and the row loops of `ops::linalg` at the kernel level in force
//! ([`super::level`]). Each dispatches once per call and runs its whole loop inside the chosen
//! instruction set, so the per-row cost is the loop, not the dispatch.

use crate::config::ThetaKind;
#[cfg(not(feature = "std"))]
use crate::ops::linalg::Scalar;
use crate::ops::linalg::{self, Vector};
use crate::ops::theta;

/// A computation over a [`Vector`] primitive, run at the level in force by [`run`].
pub(crate) trait Kernel {
    type Output;
    fn run<V: Vector>(self, v: V) -> Self::Output;
}

#[inline]
fn run<K: Kernel>(k: K) -> K::Output {
    #[cfg(feature = "std")]
    return super::simd::run(k);
    #[cfg(not(feature = "std"))]
    return k.run(Scalar);
}

/// [`Vector`] at the level in force, dispatched per call: `Dispatch.dot(a, b)`, and for loops
/// that do more than products between them (attention). References: `ops::linalg::{dot, axpy}`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Dispatch;

impl Vector for Dispatch {
    fn dot(self, a: &[f32], b: &[f32]) -> f32 {
        struct Op<'a>(&'a [f32], &'a [f32]);
        impl Kernel for Op<'_> {
            type Output = f32;
            #[inline(always)]
            fn run<V: Vector>(self, v: V) -> f32 {
                v.dot(self.0, self.1)
            }
        }
        run(Op(a, b))
    }

    fn axpy(self, alpha: f32, x: &[f32], y: &mut [f32]) {
        struct Op<'a>(f32, &'a [f32], &'a mut [f32]);
        impl Kernel for Op<'_> {
            type Output = ();
            #[inline(always)]
            fn run<V: Vector>(self, v: V) {
                v.axpy(self.0, self.1, self.2)
            }
        }
        run(Op(alpha, x, y))
    }

    /// A pure streaming read: the yardstick for memory bandwidth.
    fn sum(self, x: &[f32]) -> f32 {
        struct Op<'a>(&'a [f32]);
        impl Kernel for Op<'_> {
            type Output = f32;
            #[inline(always)]
            fn run<V: Vector>(self, v: V) -> f32 {
                v.sum(self.0)
            }
        }
        run(Op(x))
    }

    fn gelu(self, f: f32, x: &mut [f32]) {
        struct Op<'a>(f32, &'a mut [f32]);
        impl Kernel for Op<'_> {
            type Output = ();
            #[inline(always)]
            fn run<V: Vector>(self, v: V) {
                v.gelu(self.0, self.1)
            }
        }
        run(Op(f, x))
    }

    fn gelu_grad_mul(self, f: f32, a: &[f32], g: &mut [f32]) {
        struct Op<'a>(f32, &'a [f32], &'a mut [f32]);
        impl Kernel for Op<'_> {
            type Output = ();
            #[inline(always)]
            fn run<V: Vector>(self, v: V) {
                v.gelu_grad_mul(self.0, self.1, self.2)
            }
        }
        run(Op(f, a, g))
    }

    fn dot_f64(self, a: &[f32], b: &[f32]) -> f64 {
        struct Op<'a>(&'a [f32], &'a [f32]);
        impl Kernel for Op<'_> {
            type Output = f64;
            #[inline(always)]
            fn run<V: Vector>(self, v: V) -> f64 {
                v.dot_f64(self.0, self.1)
            }
        }
        run(Op(a, b))
    }

    fn exp_sum(self, shift: f32, x: &[f32], out: &mut [f32]) -> f64 {
        struct Op<'a>(f32, &'a [f32], &'a mut [f32]);
        impl Kernel for Op<'_> {
            type Output = f64;
            #[inline(always)]
            fn run<V: Vector>(self, v: V) -> f64 {
                v.exp_sum(self.0, self.1, self.2)
            }
        }
        run(Op(shift, x, out))
    }
}

/// `x[i] = erf(x[i])` at the level in force: `libm::erff` at `scalar`, the vector port of its
/// algorithm elsewhere (within 1 ulp of the true erf; `core/tests/kernels.rs`).
pub fn erf(x: &mut [f32]) {
    #[cfg(feature = "std")]
    return super::simd::erf(x);
    #[cfg(not(feature = "std"))]
    x.iter_mut().for_each(|v| *v = libm::erff(*v));
}

/// Cross-entropy of one row of logits and its gradient at the level in force. Reference:
/// `ops::cross_entropy::cross_entropy_row`.
pub fn cross_entropy_row(z: &[f32], target: usize, grad_scale: f32, g: &mut [f32]) -> f64 {
    struct Op<'a>(&'a [f32], usize, f32, &'a mut [f32]);
    impl Kernel for Op<'_> {
        type Output = f64;
        #[inline(always)]
        fn run<V: Vector>(self, v: V) -> f64 {
            crate::ops::cross_entropy::cross_entropy_row_with(v, self.0, self.1, self.2, self.3)
        }
    }
    run(Op(z, target, grad_scale, g))
}

/// Θ on one row of scores, in place, at the level in force. Reference: `ops::theta::theta`.
pub fn theta(row: &mut [f32], norm: ThetaKind, scale_n: usize) {
    struct Op<'a>(&'a mut [f32], ThetaKind, usize);
    impl Kernel for Op<'_> {
        type Output = ();
        #[inline(always)]
        fn run<V: Vector>(self, v: V) {
            theta::theta_with(v, self.0, self.1, self.2)
        }
    }
    run(Op(row, norm, scale_n))
}

/// Θ's backward for one row at the level in force. Reference: `ops::theta::theta_backward_row`.
pub fn theta_backward_row(
    a: &[f32],
    s: &[f32],
    ds: &[f32],
    norm: ThetaKind,
    scale_n: usize,
    da: &mut [f32],
) {
    struct Op<'a>([&'a [f32]; 3], ThetaKind, usize, &'a mut [f32]);
    impl Kernel for Op<'_> {
        type Output = ();
        #[inline(always)]
        fn run<V: Vector>(self, v: V) {
            let Op([a, s, ds], norm, n, da) = self;
            theta::theta_backward_row_with(v, a, s, ds, norm, n, da)
        }
    }
    run(Op([a, s, ds], norm, scale_n, da))
}

/// out[r·t + i] = w_r · x_i for the rows w_r (k long) of `w` and the t rows x_i of `x`.
/// Reference: `ops::linalg::rows_dot` over `Scalar`.
pub fn rows_dot_f32(w: &[f32], x: &[f32], k: usize, out: &mut [f32]) {
    struct Op<'a>(&'a [f32], &'a [f32], usize, &'a mut [f32]);
    impl Kernel for Op<'_> {
        type Output = ();
        #[inline(always)]
        fn run<V: Vector>(self, v: V) {
            linalg::rows_dot(v, self.0, self.1, self.2, self.3)
        }
    }
    run(Op(w, x, k, out))
}

/// out[i, ..] += Σ_j s[i, j] · v[j, cols] for each row i of the scores `s` ([t, n]); `v` has rows
/// of `stride` values, `out` rows of `cols.len()`. Zero scores skip their row of `v`.
/// Reference: `ops::linalg::scores_times_values` over `Scalar`.
pub fn scores_times_values(
    s: &[f32],
    v: &[f32],
    stride: usize,
    cols: core::ops::Range<usize>,
    out: &mut [f32],
) {
    struct Op<'a>(
        &'a [f32],
        &'a [f32],
        usize,
        core::ops::Range<usize>,
        &'a mut [f32],
    );
    impl Kernel for Op<'_> {
        type Output = ();
        #[inline(always)]
        fn run<V: Vector>(self, v: V) {
            let Op(s, vals, stride, cols, out) = self;
            linalg::scores_times_values(v, s, vals, stride, cols, out)
        }
    }
    run(Op(s, v, stride, cols, out))
}

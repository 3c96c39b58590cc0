//! The f32 SIMD bodies (std builds), generic over `pulp::Simd`, each entered once per call at the
//! kernel level in force (the integer block dots are in `qdot`).

use super::gelu;
use super::vector::Kernel;
use super::Level;
use crate::ops::linalg::{Scalar, Vector};
use pulp::{Arch, Simd, WithSimd};

/// The pulp dispatcher of a (non-scalar, available) level.
fn arch(l: Level) -> Arch {
    match l {
        #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
        Level::Avx512 => pulp::x86::V4::try_new().map_or(Arch::Scalar, Arch::V4),
        #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
        Level::Avx2 => pulp::x86::V3::try_new().map_or(Arch::Scalar, Arch::V3),
        _ => Arch::new(),
    }
}

/// Run a kernel at the level in force: the scalar reference itself, or inside pulp's dispatch.
#[inline(always)]
pub(crate) fn run<K: Kernel>(k: K) -> K::Output {
    struct Op<K>(K);
    impl<K: Kernel> WithSimd for Op<K> {
        type Output = K::Output;
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) -> K::Output {
            self.0.run(SimdVector(simd))
        }
    }
    match super::level() {
        Level::Scalar => k.run(Scalar),
        l => arch(l).dispatch(Op(k)),
    }
}

/// x[i] = erf(x[i]) at the level in force (`libm::erff` at `scalar`).
pub(crate) fn erf(x: &mut [f32]) {
    struct Op<'a>(&'a mut [f32]);
    impl WithSimd for Op<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) {
            gelu::map(
                s,
                self.0,
                #[inline(always)]
                |v| gelu::erf(s, v),
            )
        }
    }
    match super::level() {
        Level::Scalar => x.iter_mut().for_each(|v| *v = libm::erff(*v)),
        l => arch(l).dispatch(Op(x)),
    }
}

/// The [`Vector`] primitive in one instruction set.
#[derive(Clone, Copy)]
struct SimdVector<S>(S);

impl<S: Simd> Vector for SimdVector<S> {
    #[inline(always)]
    fn dot(self, a: &[f32], b: &[f32]) -> f32 {
        dot_s(self.0, a, b)
    }
    #[inline(always)]
    fn axpy(self, alpha: f32, x: &[f32], y: &mut [f32]) {
        axpy_s(self.0, alpha, x, y)
    }
    #[inline(always)]
    fn sum(self, x: &[f32]) -> f32 {
        sum_s(self.0, x)
    }
    #[inline(always)]
    fn gelu(self, f: f32, x: &mut [f32]) {
        let (s, f) = (self.0, self.0.splat_f32s(f));
        gelu::map(
            s,
            x,
            #[inline(always)]
            |v| gelu::gelu(s, s.mul_f32s(v, f)),
        )
    }
    #[inline(always)]
    fn gelu_grad_mul(self, f: f32, a: &[f32], g: &mut [f32]) {
        let (s, f) = (self.0, self.0.splat_f32s(f));
        gelu::zip_map(
            s,
            a,
            g,
            #[inline(always)]
            |x, gi| s.mul_f32s(gi, gelu::gelu_grad(s, s.mul_f32s(x, f))),
        )
    }
    #[inline(always)]
    fn dot_f64(self, a: &[f32], b: &[f32]) -> f64 {
        dot_f64(a, b)
    }
    #[inline(always)]
    fn exp_sum(self, shift: f32, x: &[f32], out: &mut [f32]) -> f64 {
        out.copy_from_slice(x);
        let (s, m) = (self.0, self.0.splat_f32s(shift));
        gelu::map(
            s,
            out,
            #[inline(always)]
            |v| gelu::exp(s, s.sub_f32s(v, m)),
        );
        let mut acc = [0.0f64; 8];
        let (o8, ot) = pulp::as_arrays::<8, _>(out);
        for o in o8 {
            for i in 0..8 {
                acc[i] += o[i] as f64;
            }
        }
        let s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        ot.iter().fold(s, |s, &o| s + o as f64)
    }
}

/// Σ a·b in f64 over eight partial sums (the compiler vectorises it in the caller's instruction
/// set): each product is exact in f64, so only the order of the additions differs from the
/// reference's one running sum.
#[inline(always)]
fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mut acc = [0.0f64; 8];
    let (a8, at) = pulp::as_arrays::<8, _>(a);
    let (b8, bt) = pulp::as_arrays::<8, _>(b);
    for (x, y) in a8.iter().zip(b8) {
        for i in 0..8 {
            acc[i] += x[i] as f64 * y[i] as f64;
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (&x, &y) in at.iter().zip(bt) {
        s += x as f64 * y as f64;
    }
    s
}

// ---------- f32, generic over the instruction set ----------

#[inline(always)]
fn dot_s<S: Simd>(simd: S, a: &[f32], b: &[f32]) -> f32 {
    let (av, at) = S::as_simd_f32s(a);
    let (bv, bt) = S::as_simd_f32s(b);
    let (a4, a1) = pulp::as_arrays::<4, _>(av);
    let (b4, b1) = pulp::as_arrays::<4, _>(bv);
    let z = simd.splat_f32s(0.0);
    let (mut s0, mut s1, mut s2, mut s3) = (z, z, z, z);
    for ([x0, x1, x2, x3], [y0, y1, y2, y3]) in a4.iter().zip(b4) {
        s0 = simd.mul_add_e_f32s(*x0, *y0, s0);
        s1 = simd.mul_add_e_f32s(*x1, *y1, s1);
        s2 = simd.mul_add_e_f32s(*x2, *y2, s2);
        s3 = simd.mul_add_e_f32s(*x3, *y3, s3);
    }
    for (x, y) in a1.iter().zip(b1) {
        s0 = simd.mul_add_e_f32s(*x, *y, s0);
    }
    let s = simd.add_f32s(simd.add_f32s(s0, s1), simd.add_f32s(s2, s3));
    let mut r = simd.reduce_sum_f32s(s);
    for (x, y) in at.iter().zip(bt) {
        r += x * y;
    }
    r
}

#[inline(always)]
fn axpy_s<S: Simd>(simd: S, alpha: f32, x: &[f32], y: &mut [f32]) {
    let (xv, xt) = S::as_simd_f32s(x);
    let (yv, yt) = S::as_mut_simd_f32s(y);
    let a = simd.splat_f32s(alpha);
    for (yi, xi) in yv.iter_mut().zip(xv) {
        *yi = simd.mul_add_e_f32s(a, *xi, *yi);
    }
    for (yi, xi) in yt.iter_mut().zip(xt) {
        *yi += alpha * xi;
    }
}

#[inline(always)]
fn sum_s<S: Simd>(simd: S, x: &[f32]) -> f32 {
    let (xv, xt) = S::as_simd_f32s(x);
    let (x4, x1) = pulp::as_arrays::<4, _>(xv);
    let z = simd.splat_f32s(0.0);
    let (mut s0, mut s1, mut s2, mut s3) = (z, z, z, z);
    for [a, b, c, d] in x4 {
        s0 = simd.add_f32s(s0, *a);
        s1 = simd.add_f32s(s1, *b);
        s2 = simd.add_f32s(s2, *c);
        s3 = simd.add_f32s(s3, *d);
    }
    for a in x1 {
        s0 = simd.add_f32s(s0, *a);
    }
    let s = simd.add_f32s(simd.add_f32s(s0, s1), simd.add_f32s(s2, s3));
    simd.reduce_sum_f32s(s) + xt.iter().sum::<f32>()
}

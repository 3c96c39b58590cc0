//! The model's operations, one module per op, as plain scalar code over row-major f32 slices:
//! each forward (the reference every faster kernel is tested against, and what the no_std
//! target runs) beside its backward row functions (which the training backends orchestrate).
//! Row loops are written once over [`linalg::Vector`]; `kernels` supplies its SIMD twins.

pub mod activation;
pub mod attention;
pub mod cross_entropy;
pub mod embedding;
pub mod linalg;
pub mod norm;
pub mod pattention;
pub mod rotary;
pub mod theta;

/// e^x and ln x for the training rows: the platform's under std, so training computes what it
/// did before these rows moved here from the CPU backend; libm's without std.
#[inline]
pub(crate) fn exp_train(x: f32) -> f32 {
    #[cfg(feature = "std")]
    return x.exp();
    #[cfg(not(feature = "std"))]
    return libm::expf(x);
}

#[inline]
pub(crate) fn ln_train(x: f64) -> f64 {
    #[cfg(feature = "std")]
    return x.ln();
    #[cfg(not(feature = "std"))]
    return libm::log(x);
}

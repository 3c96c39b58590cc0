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

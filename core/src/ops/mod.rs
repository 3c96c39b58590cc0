//! The model's operations as plain scalar code over row-major f32 slices: the reference that every
//! faster kernel is tested against, and what the no_std target runs.

pub mod activation;
pub mod attention;
pub mod linalg;
pub mod norm;
pub mod pattention;
pub mod rotary;

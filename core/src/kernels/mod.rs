//! Fast kernels: SIMD twins of the scalar references in `ops` and `quant`, chosen at run time,
//! and the threaded products the inference session runs.
//!
//! - [`vector`]: f32 dot, axpy and streaming sum; Q8_0·Q8_0 and Q4_0·Q8_0 integer block dots.
//!   In std builds each dispatches through `pulp` to the best instruction set the CPU has
//!   (AVX-512, AVX2+FMA, NEON; the integer dots use AVX2 intrinsics on x86 and NEON-vectorised
//!   integer code elsewhere). Without `std` (the embedded target) each is the scalar reference.
//! - [`matmul`]: the two Pattention products and the logits over any [`Matrix`] format, split
//!   across rows with `rayon` and, for large f32 prompt blocks, handed to `gemm` (std only).
//! - [`attention`]: causal attention over the KV cache with the SIMD dot and axpy.
//!
//! Every kernel is tested against its scalar reference (`core/tests/kernels.rs`).
//!
//! [`Matrix`]: crate::model::Matrix

pub mod attention;
pub mod matmul;
pub mod vector;

#[cfg(feature = "std")]
mod simd;

/// The instruction set the dispatched kernels use on this CPU, for reports.
pub fn instruction_set() -> &'static str {
    #[cfg(feature = "std")]
    {
        simd::instruction_set()
    }
    #[cfg(not(feature = "std"))]
    {
        "scalar"
    }
}

/// Threads the kernels split rows across (1 without std).
pub fn threads() -> usize {
    #[cfg(feature = "std")]
    {
        rayon::current_num_threads()
    }
    #[cfg(not(feature = "std"))]
    {
        1
    }
}

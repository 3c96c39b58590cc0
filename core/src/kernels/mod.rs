//! Fast kernels: SIMD twins of the scalar references in `ops` and `formats`, chosen at run time,
//! and the threaded products the inference session runs.
//!
//! - [`vector`]: f32 dot, axpy, streaming sum and the row loops of `ops::linalg` at the kernel
//!   level in force ([`level`]): pulp's AVX-512 / AVX2+FMA / NEON bodies, or the scalar
//!   reference itself.
//! - `qdot`: the block formats' rows-dots (`formats::Block::rows_dot`), four weight rows per
//!   pass: AVX-512 VNNI (rows interleaved), AVX2 or NEON (`sdot` where the CPU has it).
//! - [`matmul`]: the two Pattention products and the logits over any [`Matrix`] format, split
//!   across rows with `rayon`; prompt blocks (≥ 4 rows) are GEMMs: f32 through [`gemm`], Q8_0 and
//!   Q4_0 through the integer GEMM of `qgemm` (AVX-512 VNNI, bit-identical to the scalar
//!   reference) where the level is avx512 and the CPU has VNNI, else the rows-dots (std only).
//! - `quantize`: the Q8_0 quantization of activation rows with AVX-512 (bit-identical).
//!
//! Without `std` (the embedded target) every kernel is the scalar reference. With it, the level
//! is the best the CPU has unless forced by `TOKENFORMER_KERNELS=scalar|avx2|avx512|neon` or
//! [`set_level`]; `scalar` runs exactly the no_std code, for bit-for-bit comparisons with
//! firmware. Every level is tested against the scalar reference (`core/tests/kernels.rs`).
//!
//! [`Matrix`]: crate::model::Matrix

#[cfg(feature = "std")]
mod gelu;
#[cfg(feature = "std")]
pub mod gemm;
mod level;
pub mod matmul;
#[cfg(feature = "std")]
pub(crate) mod qdot;
#[cfg(feature = "std")]
mod qgemm;
#[cfg(feature = "std")]
pub(crate) mod quantize;
#[cfg(feature = "std")]
pub(crate) mod simd;
#[cfg(feature = "std")]
mod team;
pub mod vector;

pub use level::{
    available_levels, best_level, level, level_from_env, set_level, Level, LevelError, LEVEL_ENV,
};

/// The instruction set the kernels use (the level in force), for reports.
pub fn instruction_set() -> &'static str {
    level().name()
}

/// The instruction set of the quantized rows-dots at the level in force (`avx512-vnni`, `avx2`,
/// `neon-sdot`, `neon` or `scalar`), for reports.
pub fn block_dots() -> &'static str {
    #[cfg(feature = "std")]
    return qdot::Isa::at(level()).name();
    #[cfg(not(feature = "std"))]
    "scalar"
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

//! TokenFormer inference core: `#![no_std]` + `alloc`.
//!
//! - [`config`]: sizes, presets, validation, parameter and FLOP counts.
//! - [`graph`]: the model, written once over the [`graph::Ops`] trait.
//! - [`ops`]: one module per op, scalar forward and backward rows (the reference).
//! - [`formats`]: the Q8_0 / Q4_0 block formats, one `Block` impl each; [`kernels`]: the SIMD
//!   twins at a run-time level and the threaded products inference runs (scalar without `std`).
//! - [`checkpoint`]: safetensors with the config in its metadata; zero-copy, fully validated.
//! - [`session`]: KV-cache decoding; [`sample`]: greedy / temperature / top-k / top-p.
//! - [`torch`]: `torch.save` zip + bounded pickle reader; [`convert`]: the authors' official
//!   tensor names → our model.
//! - `file` (feature `std`): memory-mapped loading and atomic writes.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod checkpoint;
pub mod config;
pub mod convert;
pub mod dtype;
#[cfg(feature = "std")]
pub mod file;
pub mod formats;
pub mod graph;
pub mod init;
pub mod kernels;
pub mod model;
pub mod ops;
pub mod sample;
pub mod session;
pub mod torch;

pub use checkpoint::{Dtype, LoadError};
pub use config::{Config, ConfigError, Norm};
pub use dtype::DType;
pub use model::{Matrix, Model};
// Transitional names for code not yet moved to `formats` and `DType` (checkpoint.rs, fuzz):
// drop them when the merge is done.
pub use dtype::DType as Format;
pub use formats as quant;
pub use sample::{Rng, Sampler, SamplerConfig};
pub use session::{Session, SessionError};

#[cfg(feature = "std")]
mod std_errors {
    use super::*;
    impl std::error::Error for LoadError {}
    impl std::error::Error for ConfigError {}
    impl std::error::Error for SessionError {}
    impl std::error::Error for model::ModelError {}
    impl std::error::Error for convert::ConvertError {}
    impl std::error::Error for torch::TorchError {}
}

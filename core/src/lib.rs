//! TokenFormer inference core: `#![no_std]` + `alloc`.
//!
//! - [`config`]: sizes, presets, validation, parameter and FLOP counts.
//! - [`graph`]: the model, written once over the [`graph::Ops`] trait.
//! - [`ops`]: one module per op, scalar forward and backward rows (the reference).
//! - [`formats`]: the Q8_0 / Q4_0 block formats, one `Block` impl each; [`kernels`]: the SIMD
//!   twins at a run-time level and the threaded products inference runs (scalar without `std`).
//! - `init` and [`grow`]: fresh weights, and progressive scaling by appending parameter tokens.
//! - [`layout`]: the tensors of a model (names, shapes, order), defined once.
//! - [`checkpoint`]: safetensors (the crate) with the config in its metadata; zero-copy, fully
//!   validated.
//! - [`session`]: KV-cache decoding; [`sample`]: greedy / temperature / top-k / top-p.
//! - `file`, `torch`, `convert` (feature `std`): memory-mapped loading and atomic writes;
//!   `torch.save` files (zip crate + bounded pickle reader); the authors' official tensor names →
//!   our model.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod checkpoint;
pub mod config;
#[cfg(feature = "std")]
pub mod convert;
pub mod dtype;
#[cfg(feature = "std")]
pub mod file;
pub mod formats;
pub mod graph;
pub mod grow;
pub mod init;
pub mod kernels;
pub mod layout;
pub mod model;
pub mod ops;
pub mod sample;
pub mod session;
#[cfg(feature = "std")]
pub mod torch;

pub use checkpoint::LoadError;
pub use config::{Config, ConfigError, ThetaKind};
pub use dtype::DType;
pub use model::{Matrix, Model};
pub use sample::{Rng, Sampler, SamplerConfig};
pub use session::{Session, SessionError};

#[cfg(feature = "std")]
mod std_errors {
    use super::*;
    impl std::error::Error for LoadError {}
    impl std::error::Error for ConfigError {}
    impl std::error::Error for SessionError {}
    impl std::error::Error for model::ModelError {}
    impl std::error::Error for grow::GrowError {}
    impl std::error::Error for convert::ConvertError {}
    impl std::error::Error for torch::TorchError {}
}

//! TokenFormer inference: a `#![no_std]` + `alloc` core for applications and firmware.
//!
//! [TokenFormer](https://arxiv.org/abs/2410.23168) is a Transformer whose every linear projection
//! is token-parameter attention (Pattention): scores of the input against *key parameter tokens*,
//! normalised, weight a sum of *value parameter tokens*. A model grows by appending parameter
//! tokens ([`grow`]). This crate loads checkpoints (safetensors with the [`Config`] in its
//! metadata, f32 / f16 / bf16 or quantized to Q8_0 / Q4_0), runs them with a KV cache
//! ([`Session`]), samples ([`Sampler`]), scores, quantizes ([`Model::quantize`]) and grows them.
//! Training is in the `tokenformer-train` crate; tokenizers are not part of this crate (the
//! examples use the `tokenizers` crate with the `tokenizer.json` that comes with a model).
//!
//! # Load a checkpoint
//!
//! From a file (feature `std`): the file is memory-mapped and validated; aligned weights are
//! borrowed from the map, never copied.
//!
//! ```
//! use tokenformer_core::file::ModelFile;
//!
//! let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/tiny-q8_0.safetensors");
//! let file = ModelFile::open(path)?;
//! let model = file.model()?;
//! println!("{} layers, d_model {}, {} parameters", model.config.n_layers,
//!          model.config.d_model, model.config.param_count());
//! assert_eq!(model.borrowed_bytes(), model.weight_bytes()); // nothing was copied
//! # Ok::<(), tokenformer_core::file::FileError>(())
//! ```
//!
//! From bytes compiled into the program (no file system needed: the firmware's way). f32 weights
//! need 4-byte alignment and quantized blocks 2-byte alignment to be borrowed; `include_bytes!`
//! promises none, so the bytes are wrapped in an aligned type (misaligned weights are copied).
//!
//! ```
//! use tokenformer_core::checkpoint;
//!
//! #[repr(C, align(16))]
//! struct Aligned<T: ?Sized>(T);
//! static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
//!     env!("CARGO_MANIFEST_DIR"),
//!     "/../models/tiny-q8_0.safetensors"
//! )));
//!
//! let model = checkpoint::load(&MODEL.0)?; // a typed `LoadError` names what is wrong
//! assert_eq!(model.borrowed_bytes(), model.weight_bytes());
//! # Ok::<(), tokenformer_core::LoadError>(())
//! ```
//!
//! # Generate
//!
//! A [`Session`] holds the KV cache: feed the prompt once, then one token at a time. Each
//! [`Session::feed`] returns the logits of the last position (`vocab_size` values);
//! [`Sampler::sample`] picks the next id below `tokenizer_vocab` (ids past it are the
//! embedding's padding).
//!
//! ```
//! use tokenformer_core::file::ModelFile;
//! use tokenformer_core::{Sampler, SamplerConfig, Session};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../models");
//! let file = ModelFile::open(format!("{dir}/tiny-q8_0.safetensors"))?;
//! let model = file.model()?;
//! let tokenizer = tokenizers::Tokenizer::from_file(format!("{dir}/tiny-tokenizer.json"))?;
//!
//! let prompt = tokenizer.encode("ROMEO:", false)?.get_ids().to_vec();
//! let mut session = Session::new(&model);
//! let config = SamplerConfig { temperature: 0.8, top_k: 40, top_p: 0.95 };
//! let mut sampler = Sampler::new(config, 42); // same seed, same text
//! let mut logits = session.feed(&prompt)?;
//! let mut out = Vec::new();
//! for _ in 0..10 {
//!     let next = sampler.sample(&logits, model.config.tokenizer_vocab);
//!     out.push(next);
//!     logits = session.feed(&[next])?; // SessionError::ContextFull past max_context
//! }
//! println!("ROMEO:{}", tokenizer.decode(&out, false)?);
//! assert_eq!(session.position(), prompt.len() + 10);
//! # Ok(())
//! # }
//! ```
//!
//! # Score a text
//!
//! [`Session::feed_all`] returns the logits of every position (`[T, vocab_size]`); row `i`
//! predicts token `i + 1`.
//!
//! ```
//! use tokenformer_core::file::ModelFile;
//! use tokenformer_core::session::log_softmax;
//! use tokenformer_core::Session;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../models");
//! let file = ModelFile::open(format!("{dir}/tiny-q8_0.safetensors"))?;
//! let model = file.model()?;
//! let tokenizer = tokenizers::Tokenizer::from_file(format!("{dir}/tiny-tokenizer.json"))?;
//!
//! let text = "To be, or not to be, that is the question.";
//! let ids = tokenizer.encode(text, false)?.get_ids().to_vec();
//! let logits = Session::new(&model).feed_all(&ids)?;
//! let nll = (0..ids.len() - 1)
//!     .map(|i| -log_softmax(logits.row(i))[ids[i + 1] as usize])
//!     .sum::<f64>()
//!     / (ids.len() - 1) as f64;
//! println!("{} tokens, perplexity {:.1}", ids.len(), nll.exp());
//! // A trained model beats guessing uniformly over its vocabulary.
//! assert!(nll.exp() < model.config.tokenizer_vocab as f64);
//! # Ok(())
//! # }
//! ```
//!
//! # Create, quantize, grow, save
//!
//! ```
//! use tokenformer_core::grow::{grow, Init, Scale, Targets};
//! use tokenformer_core::{checkpoint, init::init, Config, DType, Session};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // Fresh weights for a preset (`tiny` is for tests; `150m` … `1.5b` are the released sizes).
//! let model = init(Config::preset("tiny")?, 0)?;
//!
//! // Q8_0 keys, values and embedding (`Q4_0` is smaller still); the final norm stays f32.
//! let q8 = model.quantize(DType::Q8_0, DType::Q8_0)?;
//! assert_eq!(q8.embedding.format(), DType::Q8_0);
//! assert!(q8.weight_bytes() < model.weight_bytes() / 2); // some tiny rows stay f32
//!
//! // Append 32 FFN parameter tokens per layer. Zero keys with the √n scale kept leave every
//! // output of the L2-normalised Θ unchanged (up to rounding).
//! let targets = Targets { ffn: Some(model.config.ffn_tokens + 32), ..Targets::default() };
//! let grown = grow(&model, targets, Init::Zero, Scale::Keep, 1)?;
//! let before = Session::new(&model).feed(&[1, 2, 3])?;
//! let after = Session::new(&grown).feed(&[1, 2, 3])?;
//! let scale = before.iter().fold(1f32, |m, x| m.max(x.abs()));
//! assert!(before.iter().zip(&after).all(|(a, b)| (a - b).abs() <= 1e-5 * scale));
//!
//! // A checkpoint in memory (no_std); `file::save` writes one atomically to a path.
//! let bytes = checkpoint::to_bytes(&q8, DType::F32);
//! let back = checkpoint::load(&bytes)?;
//! assert_eq!(back.config, q8.config);
//! # Ok(())
//! # }
//! ```
//!
//! # Modules
//!
//! - [`config`]: sizes, presets, validation, parameter and FLOP counts.
//! - [`graph`]: the model, written once over the [`graph::Ops`] trait.
//! - [`ops`]: one module per op, scalar forward and backward rows (the reference).
//! - [`formats`]: the Q8_0 / Q4_0 block formats, one `Block` impl each; [`kernels`]: the SIMD
//!   twins at a run-time level and the threaded products inference runs (scalar without `std`).
//! - [`init`] and [`grow`]: fresh weights, and progressive scaling by appending parameter tokens.
//! - [`layout`]: the tensors of a model (names, shapes, order), defined once.
//! - [`model`]: the weights ([`Model`], [`Matrix`]), quantization.
//! - [`checkpoint`]: safetensors (the crate) with the config in its metadata; zero-copy, fully
//!   validated.
//! - [`session`]: KV-cache decoding; [`sample`]: greedy / temperature / top-k / top-p.
//! - `file`, `torch`, `convert` (feature `std`): memory-mapped loading and atomic writes;
//!   `torch.save` files (zip crate + bounded pickle reader); the authors' official tensor names →
//!   our model.
//!
//! # Features
//!
//! - `std` (default): memory-mapped loading and atomic writes (`file`), runtime-dispatched SIMD
//!   kernels (`pulp`: AVX-512, AVX2+FMA, NEON), threads across rows (`rayon`), `gemm` for f32
//!   prompt blocks, and the `torch.save` reader and conversion (`torch`, `convert`). Without it
//!   (`default-features = false`) the crate is `no_std` + `alloc`, every kernel is the scalar
//!   reference and one thread runs; it builds for `thumbv7em-none-eabihf`,
//!   `riscv32imac-unknown-none-elf` and `wasm32-unknown-unknown`. Load with
//!   [`checkpoint::load`] from bytes; size the heap with [`Session::bytes_needed`].
//!
//! The environment variable `TOKENFORMER_KERNELS=scalar|avx2|avx512|neon` (or
//! [`kernels::set_level`]) forces a kernel level; `scalar` computes exactly what the `no_std`
//! build computes.
//!
//! # Stability
//!
//! Before 1.0 any release may change the API. The entry points above ([`file::ModelFile`],
//! [`checkpoint::load`], [`Model`], [`Session`], [`Sampler`], [`Config`], [`Model::quantize`],
//! [`grow::grow`], [`init::init`] and the error types) are the ones meant for applications and
//! change only with a note in the changelog. [`graph`], [`ops`], [`kernels`], [`formats`] and
//! [`layout`] are public for the training crate, the benchmarks and the tests; they follow the
//! implementation and may change in any release. The checkpoint format is described in the
//! repository's README and is kept readable across releases.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

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

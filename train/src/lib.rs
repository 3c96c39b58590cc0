//! TokenFormer training: core's model graph walked by a recording backend, with the backward of
//! every op, AdamW, schedules, data and crash-safe checkpoints.
//!
//! A model is a [`tokenformer_core::Model`] (the crate is re-exported as
//! `tokenformer_train::core`): create one with [`tokenformer_core::init::init`] or load a
//! checkpoint, train it with a [`Trainer`] on a [`Backend`] ([`Cpu`], or the CUDA backend behind
//! the `cuda` feature), take the result back with [`Params::to_model`], and save, quantize or
//! grow it with the core crate.
//!
//! # Train a tiny model for a few steps, then grow it
//!
//! Training data comes from a [`BatchSource`]: here a repeating pattern in memory. Real runs
//! tokenize text files once ([`data::tokenize_files`]) and draw seeded windows from them
//! ([`data::Windows`]), as `examples/train_tiny.rs` does.
//!
//! ```
//! use tokenformer_core::grow::{grow, Init, Scale, Targets};
//! use tokenformer_core::{init::init, Config};
//! use tokenformer_train::data::DataError;
//! use tokenformer_train::optim::{AdamW, Schedule};
//! use tokenformer_train::{BatchSource, Cpu, TrainConfig, Trainer};
//!
//! /// Windows of the sequence 1, 2, …, 7, 1, 2, …: something to learn in a few steps.
//! struct Pattern(usize);
//!
//! impl BatchSource for Pattern {
//!     fn next_batch(&mut self, batch: usize, seq: usize, inputs: &mut Vec<u32>,
//!                   targets: &mut Vec<u32>) -> Result<(), DataError> {
//!         let token = |i: usize| (i % 7) as u32 + 1;
//!         inputs.clear();
//!         targets.clear();
//!         for _ in 0..batch {
//!             inputs.extend((0..seq).map(|i| token(self.0 + i)));
//!             targets.extend((0..seq).map(|i| token(self.0 + i + 1)));
//!             self.0 += 3;
//!         }
//!         Ok(())
//!     }
//!     /// Saved with checkpoints, so that a resumed run draws the same windows.
//!     fn state(&self) -> serde_json::Value {
//!         serde_json::json!(self.0)
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let model = init(Config::preset("tiny")?, 0)?;
//! let tc = TrainConfig {
//!     batch: 4, // sequences per micro-batch
//!     seq: 32,  // tokens per sequence
//!     accum: 1, // micro-batches per optimizer step
//!     steps: 20,
//!     optim: AdamW { lr: 3e-3, ..AdamW::default() },
//!     schedule: Schedule { warmup: 2, total: 20, min_lr_ratio: 0.1 },
//!     seed: 0,
//! };
//! let mut data = Pattern(0);
//! let mut trainer = Trainer::new(&Cpu, &model, tc.clone());
//! let first = trainer.step(&mut data)?; // TrainError::NonFinite leaves the weights as they were
//! let mut last = first;
//! while trainer.step < tc.steps {
//!     last = trainer.step(&mut data)?;
//! }
//! println!("loss {:.2} -> {:.2} nats/token", first.loss, last.loss);
//! assert!(last.loss < first.loss);
//! let trained = trainer.params.to_model(&Cpu)?;
//!
//! // Twice the FFN parameter tokens, function-preserving (zero keys, √n scale kept), then
//! // training goes on with the grown model.
//! let targets = Targets { ffn: Some(2 * trained.config.ffn_tokens), ..Targets::default() };
//! let grown = grow(&trained, targets, Init::Zero, Scale::Keep, 1)?;
//! assert!(grown.config.param_count() > trained.config.param_count());
//! let mut trainer = Trainer::new(&Cpu, &grown, TrainConfig { steps: 5, ..tc });
//! while trainer.step < 5 {
//!     trainer.step(&mut data)?;
//! }
//! // The result is a core model: run it, quantize it or save it with `tokenformer_core`.
//! let model = trainer.params.to_model(&Cpu)?;
//! assert_eq!(model.config.ffn_tokens, 2 * trained.config.ffn_tokens);
//! # Ok(())
//! # }
//! ```
//!
//! A whole run — periodic held-out evaluation, checkpoints every N steps that resume
//! bit-identically, a JSONL log, a stop flag — is [`run()`](fn@run) (the CLI's `train`).
//!
//! # Modules
//!
//! - [`backend`]: the device trait (each op's forward and backward) and the CPU backend.
//! - [`tape`]: the `Ops` implementation that records the graph and runs it backwards.
//! - [`params`]: parameters in core's tensor order.
//! - [`optim`]: AdamW, clipping, warmup + cosine; [`trainer`]: one step, accumulation, eval.
//! - [`mod@run`]: a whole run: eval and save cadence, stop flag, JSONL log, final evaluation.
//! - [`checkpoint`]: crash-safe training checkpoints (model + moments + state).
//! - [`footprint`]: the device memory a run needs (checked before a GPU run starts).
//! - [`data`]: the token-file format, building the corpus (train / held-out split), windows.
//! - [`collective`]: data-parallel ranks ([`Single`], MPI, NCCL) that sum gradients.
//!
//! Growth (appending parameter tokens) is a weight transform: [`tokenformer_core::grow`].
//!
//! # Features
//!
//! None is on by default; the default build is CPU-only and needs no system library.
//!
//! - `cuda`: the CUDA backend (`backend::cuda`, f32 or bf16 products). The driver, NVRTC and
//!   cuBLAS are loaded at run time (`cudarc`'s dynamic loading), so it builds without a CUDA
//!   toolkit and a binary starts on machines without a GPU.
//! - `mpi`: data-parallel training over MPI (`collective::mpi`, rsmpi); building needs
//!   OpenMPI's headers and libclang.
//! - `nccl` (implies `cuda`): CUDA ranks summing gradients over NCCL (`collective::nccl`),
//!   libnccl loaded at run time; its bootstrap takes any [`Collective`].
//!
//! # Stability
//!
//! Before 1.0 any release may change the API. [`Trainer`], [`TrainConfig`], [`BatchSource`],
//! [`run()`](fn@run) with [`RunConfig`], [`Cpu`], [`data`] and [`checkpoint`] are meant for
//! applications; the [`Backend`] trait and [`tape`] follow the implementation (new ops add
//! methods) and may change in any release.
#![deny(missing_docs)]

pub mod backend;
pub mod checkpoint;
pub mod collective;
pub mod data;
pub mod footprint;
pub mod optim;
pub mod params;
pub mod run;
pub mod tape;
pub mod trainer;

pub use backend::cpu::Cpu;
pub use backend::{Backend, Rows};
pub use collective::{Collective, Single};
pub use params::Params;
pub use run::{run, LogLine, Observer, Outcome, RunConfig, RunError};
pub use tape::Tape;
pub use tokenformer_core as core;
pub use trainer::{BatchSource, StepStats, TrainConfig, TrainError, Trainer};

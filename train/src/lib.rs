//! TokenFormer training: core's model graph walked by a recording backend, with the backward of
//! every op, AdamW, schedules, data and crash-safe checkpoints.
//!
//! - [`backend`]: the device trait (each op's forward and backward) and the CPU backend.
//! - [`tape`]: the `Ops` implementation that records the graph and runs it backwards.
//! - [`params`]: parameters in core's tensor order.
//! - [`optim`]: AdamW, clipping, warmup + cosine; [`trainer`]: one step, accumulation, eval.
//! - [`run`]: a whole run: eval and save cadence, stop flag, JSONL log, final evaluation.
//! - [`checkpoint`]: crash-safe training checkpoints (model + moments + state).
//! - [`footprint`]: the device memory a run needs (checked before a GPU run starts).
//! - [`data`]: the token-file format, building the corpus (train / held-out split), windows.
//!
//! Growth (appending parameter tokens) is a weight transform: `tokenformer_core::grow`.

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

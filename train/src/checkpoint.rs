//! Training checkpoints: one directory per step holding the model (core's format, so every
//! command loads it), the AdamW moments, and `state.json` (step, tokens, data position, run
//! configuration).
//!
//! Crash safety: a checkpoint is written into a hidden temporary directory, every file fsynced,
//! and only then renamed to `step-NNNNNNNN`; the parent directory is fsynced after the rename.
//! A crash at any point leaves the previous checkpoints as they were, and a leftover temporary
//! directory is never mistaken for a checkpoint (`latest` only looks at committed names).

use crate::backend::Backend;
use crate::optim::Moments;
use crate::params::Params;
use crate::trainer::{TrainConfig, Trainer};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use tokenformer_core::file::{save, ModelFile};
use tokenformer_core::{DType, Model};

/// The model's file in a checkpoint directory: an ordinary core checkpoint (f32).
pub const MODEL_FILE: &str = "model.safetensors";
const ADAM_M: &str = "adam_m.safetensors";
const ADAM_V: &str = "adam_v.safetensors";
const STATE: &str = "state.json";
const PREFIX: &str = "step-";

/// The `state.json` format written now. 1 (no `version` field): before the keyed window draw;
/// such a run resumes single-process with its sequential draw (`data::Draw`).
pub const STATE_VERSION: u32 = 2;

fn version_one() -> u32 {
    1
}

/// The training state beside the weights (`state.json`): what a resume needs besides the model and
/// the AdamW moments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// The format version ([`STATE_VERSION`] when written now).
    #[serde(default = "version_one")]
    pub version: u32,
    /// Completed optimizer steps.
    pub step: u64,
    /// Tokens trained on so far, all ranks.
    pub tokens_seen: u64,
    /// AdamW's update count (its bias-correction t).
    pub adam_t: u64,
    /// Per-rank settings (batch, accum): the global batch is `ranks` times theirs.
    pub train_config: TrainConfig,
    /// The data-parallel world size that wrote this checkpoint (absent before it was recorded:
    /// then taken to be the world size resuming it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranks: Option<usize>,
    /// The data source's position (`BatchSource::state`).
    pub data: serde_json::Value,
}

/// Why a checkpoint could not be written, listed or read; both variants name the path.
#[derive(Debug)]
pub enum CheckpointError {
    /// A file-system operation failed.
    Io(PathBuf, io::Error),
    /// A file exists but does not hold what a checkpoint needs (bad JSON, wrong model, version).
    Invalid(PathBuf, String),
}

impl std::fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckpointError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            CheckpointError::Invalid(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for CheckpointError {}

fn io_err(p: &Path) -> impl FnOnce(io::Error) -> CheckpointError + '_ {
    move |e| CheckpointError::Io(p.to_path_buf(), e)
}

fn invalid<E: ToString>(p: &Path) -> impl FnOnce(E) -> CheckpointError + '_ {
    move |e| CheckpointError::Invalid(p.to_path_buf(), e.to_string())
}

/// The directory name of the checkpoint after `step` steps.
pub fn step_dir(run: &Path, step: u64) -> PathBuf {
    run.join(format!("{PREFIX}{step:08}"))
}

/// A checkpoint fully written to a temporary directory, not yet visible.
pub struct Staged {
    tmp: PathBuf,
    target: PathBuf,
}

impl Staged {
    /// Make the checkpoint visible: rename, then fsync the parent so the rename is durable.
    pub fn commit(self) -> Result<PathBuf, CheckpointError> {
        if self.target.exists() {
            fs::remove_dir_all(&self.target).map_err(io_err(&self.target))?;
        }
        fs::rename(&self.tmp, &self.target).map_err(io_err(&self.target))?;
        if let Some(parent) = self.target.parent() {
            if let Ok(d) = fs::File::open(parent) {
                let _ = d.sync_all();
            }
        }
        Ok(self.target)
    }

    /// The temporary directory holding the files until [`Staged::commit`].
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }
}

/// Write every file of a checkpoint into a temporary directory of `run` (fsynced), without
/// making it visible.
pub fn stage<B: Backend>(
    run: &Path,
    trainer: &Trainer<'_, B>,
    data: serde_json::Value,
) -> Result<Staged, CheckpointError> {
    let be = trainer.be;
    let target = step_dir(run, trainer.step);
    let tmp = run.join(format!(
        ".{PREFIX}{:08}.tmp-{}",
        trainer.step,
        std::process::id()
    ));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    let write_params = |name: &str, p: &Params<B>, role: &str| -> Result<(), CheckpointError> {
        let path = tmp.join(name);
        let model = p.to_model(be).map_err(invalid(&path))?;
        save(&path, &model, DType::F32, &[("role", role)]).map_err(io_err(&path))
    };
    write_params(MODEL_FILE, &trainer.params, "model")?;
    write_params(ADAM_M, &trainer.moments.m, "adam_m")?;
    write_params(ADAM_V, &trainer.moments.v, "adam_v")?;
    let state = TrainState {
        version: STATE_VERSION,
        step: trainer.step,
        tokens_seen: trainer.tokens_seen,
        adam_t: trainer.moments.t,
        train_config: trainer.tc.clone(),
        ranks: Some(trainer.comm.size()),
        data,
    };
    let path = tmp.join(STATE);
    let json = serde_json::to_vec_pretty(&state).map_err(invalid(&path))?;
    tokenformer_core::file::write_atomic(&path, |w| w.write_all(&json)).map_err(io_err(&path))?;
    if let Ok(d) = fs::File::open(&tmp) {
        let _ = d.sync_all();
    }
    Ok(Staged { tmp, target })
}

/// Stage and commit a checkpoint, then keep only the newest `keep` (0 keeps all).
pub fn save_checkpoint<B: Backend>(
    run: &Path,
    trainer: &Trainer<'_, B>,
    data: serde_json::Value,
    keep: usize,
) -> Result<PathBuf, CheckpointError> {
    let dir = stage(run, trainer, data)?.commit()?;
    if keep > 0 {
        let all = list(run)?;
        for (_, old) in all.iter().take(all.len().saturating_sub(keep)) {
            fs::remove_dir_all(old).map_err(io_err(old))?;
        }
    }
    Ok(dir)
}

/// Committed checkpoints of a run, oldest first.
pub fn list(run: &Path) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(run) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(CheckpointError::Io(run.to_path_buf(), e)),
    };
    for e in entries {
        let e = e.map_err(io_err(run))?;
        let name = e.file_name();
        let Some(step) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((step, e.path()));
    }
    out.sort();
    Ok(out)
}

/// The newest committed checkpoint, if any.
pub fn latest(run: &Path) -> Result<Option<PathBuf>, CheckpointError> {
    Ok(list(run)?.pop().map(|(_, p)| p))
}

/// Remove temporary directories left by a crash.
pub fn clean_temporaries(run: &Path) -> Result<(), CheckpointError> {
    let Ok(entries) = fs::read_dir(run) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if name
            .to_str()
            .is_some_and(|n| n.starts_with(&format!(".{PREFIX}")) && n.contains(".tmp-"))
        {
            fs::remove_dir_all(e.path()).map_err(io_err(&e.path()))?;
        }
    }
    Ok(())
}

/// `f` of the model file at `path`, validated.
fn with_model<T>(path: &Path, f: impl FnOnce(&Model<'_>) -> T) -> Result<T, CheckpointError> {
    let file = ModelFile::open(path).map_err(invalid(path))?;
    Ok(f(&file.model().map_err(invalid(path))?))
}

fn load_params<B: Backend>(be: &B, path: &Path) -> Result<Params<B>, CheckpointError> {
    with_model(path, |m| Params::from_model(be, m))
}

/// A checkpoint's `state.json` (step, run configuration, data position), read only.
pub fn read_state(dir: &Path) -> Result<TrainState, CheckpointError> {
    let sp = dir.join(STATE);
    let bytes = fs::read(&sp).map_err(io_err(&sp))?;
    serde_json::from_slice(&bytes).map_err(invalid(&sp))
}

/// Restore a trainer (model, moments, step) and the data state from a checkpoint directory, for
/// one process ([`load_checkpoint_for_ranks`] with 1).
pub fn load_checkpoint<'b, B: Backend>(
    be: &'b B,
    dir: &Path,
) -> Result<(Trainer<'b, B>, serde_json::Value), CheckpointError> {
    load_checkpoint_for_ranks(be, dir, 1)
}

/// [`load_checkpoint`] for a job of `ranks` data-parallel ranks. A checkpoint written by another
/// world size continues at the same global batch: the per-rank accumulation becomes
/// saved ranks × accum / `ranks` ([`TrainConfig::for_ranks`]), refused when that does not divide.
pub fn load_checkpoint_for_ranks<'b, B: Backend>(
    be: &'b B,
    dir: &Path,
    ranks: usize,
) -> Result<(Trainer<'b, B>, serde_json::Value), CheckpointError> {
    let state = read_state(dir)?;
    let sp = dir.join(STATE);
    if state.version > STATE_VERSION {
        return Err(CheckpointError::Invalid(
            sp,
            format!(
                "state.json version {} is newer than this build reads ({STATE_VERSION}): \
                 resume with a newer tokenformer-cli",
                state.version
            ),
        ));
    }
    let tc = state
        .train_config
        .for_ranks(state.ranks.unwrap_or(ranks), ranks)
        .map_err(|e| CheckpointError::Invalid(sp.clone(), e))?;
    let mut trainer = with_model(&dir.join(MODEL_FILE), |m| Trainer::new(be, m, tc))?;
    let m = load_params(be, &dir.join(ADAM_M))?;
    let v = load_params(be, &dir.join(ADAM_V))?;
    if m.config != trainer.params.config || v.config != trainer.params.config {
        return Err(CheckpointError::Invalid(
            dir.to_path_buf(),
            "optimizer state does not match the model".into(),
        ));
    }
    trainer.moments = Moments {
        m,
        v,
        t: state.adam_t,
    };
    trainer.step = state.step;
    trainer.tokens_seen = state.tokens_seen;
    Ok((trainer, state.data))
}

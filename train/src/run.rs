//! A whole training run: the steps with their evaluation and save cadence, a stop flag (Ctrl-C
//! in the CLI), the JSONL log (cut back to the resumed step), and the final evaluation over the
//! whole held-out split. Progress goes to an [`Observer`], so the CLI's progress bar, a benchmark
//! and a data-parallel launcher share this one loop.

use crate::backend::Backend;
use crate::checkpoint::{self, CheckpointError};
use crate::data::heldout_windows;
use crate::trainer::{BatchSource, TrainError, Trainer};
use serde::{Deserialize, Serialize};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokenformer_core::file::write_atomic;

/// The run's log in its directory: one JSON [`LogLine`] per step.
pub const LOG_FILE: &str = "log.jsonl";

/// The cadence of a run and where it writes.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Run directory for checkpoints and `log.jsonl`. None writes nothing: a measurement, or a
    /// data-parallel worker other than the one that keeps the log.
    pub out: Option<PathBuf>,
    /// Evaluate on `eval_windows` held-out windows every this many steps (0: never).
    pub eval_every: u64,
    /// Held-out windows of each periodic evaluation.
    pub eval_windows: usize,
    /// Save a checkpoint every this many steps (0: only at the end) and keep the newest `keep`
    /// (0 keeps all).
    pub save_every: u64,
    /// Checkpoints kept (see `save_every`).
    pub keep: usize,
}

/// One line of `log.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// Optimizer steps completed.
    pub step: u64,
    /// This step's mean training loss (nats per token).
    pub loss: f64,
    /// The learning rate this step used.
    pub lr: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Tokens trained on so far, all ranks.
    pub tokens: u64,
    /// Training throughput of this step (tokens per second, all ranks).
    pub tokens_per_s: f64,
    /// Mean loss (nats per token) on the periodic evaluation's `eval_windows` windows: the
    /// same windows at every step, so these points form one curve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heldout_loss: Option<f64>,
    /// Data-parallel: seconds of this step spent in the gradient all-reduce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allreduce_s: Option<f64>,
    /// Mean loss over every window of the held-out split, after the last step only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heldout_loss_all: Option<f64>,
}

/// What a run reports as it goes; every method defaults to nothing.
pub trait Observer {
    /// Once, before the first step this call takes (`step` > 0 on resume).
    fn start(&mut self, _step: u64, _steps: u64) {}
    /// After each step, with the whole log so far: its last line is this step's.
    fn step(&mut self, _log: &[LogLine]) -> io::Result<()> {
        Ok(())
    }
}

impl Observer for () {}

/// How a run that did not fail ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Every step done; `heldout_loss_all` (None without held-out windows) is over `windows`
    /// windows of the sequence length.
    Finished {
        /// Mean held-out loss over every window (nats per token).
        heldout_loss_all: Option<f64>,
        /// Held-out windows evaluated.
        windows: usize,
    },
    /// The stop flag ended the run; `checkpoint` is the one saved then (None without `out`).
    Stopped {
        /// The checkpoint saved when the run stopped.
        checkpoint: Option<PathBuf>,
    },
}

/// Why a run failed.
#[derive(Debug)]
pub enum RunError {
    /// A step failed; checkpoints are untouched.
    Train(TrainError),
    /// Saving, listing or pruning checkpoints failed.
    Checkpoint(CheckpointError),
    /// Writing the log failed.
    Log(PathBuf, io::Error),
    /// The observer returned an error.
    Observer(io::Error),
    /// Data-parallel ranks no longer hold the same weights.
    Diverged {
        /// The step at which the weights differed.
        step: u64,
    },
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Train(e) => write!(f, "{e}"),
            RunError::Checkpoint(e) => write!(f, "{e}"),
            RunError::Log(path, e) => write!(f, "{}: {e}", path.display()),
            RunError::Observer(e) => write!(f, "{e}"),
            RunError::Diverged { step } => write!(
                f,
                "weight hash mismatch between ranks at step {step}: the data-parallel ranks \
                 no longer hold the same weights; stopping every rank"
            ),
        }
    }
}

impl std::error::Error for RunError {}

/// `log.jsonl` and its parsed lines. Lines are appended as steps finish; a resumed run first
/// drops the lines past its checkpoint, so the log reads as if never interrupted.
#[derive(Default)]
struct Log {
    path: Option<PathBuf>,
    lines: Vec<LogLine>,
}

impl Log {
    fn open(dir: Option<&Path>, step: u64) -> Result<Log, RunError> {
        let Some(dir) = dir else {
            return Ok(Log::default());
        };
        let path = dir.join(LOG_FILE);
        let (mut lines, mut kept) = (Vec::new(), String::new());
        for text in std::fs::read_to_string(&path).unwrap_or_default().lines() {
            let Ok(line) = serde_json::from_str::<LogLine>(text) else {
                continue;
            };
            if line.step <= step {
                lines.push(line);
                // The text as written: re-printing parsed floats need not give the same digits.
                kept.push_str(text);
                kept.push('\n');
            }
        }
        write_atomic(&path, |w| w.write_all(kept.as_bytes()))
            .map_err(|e| RunError::Log(path.clone(), e))?;
        Ok(Log {
            path: Some(path),
            lines,
        })
    }

    fn append(&mut self, line: LogLine) -> Result<(), RunError> {
        if let Some(path) = &self.path {
            let log_err = |e| RunError::Log(path.clone(), e);
            let text = serde_json::to_string(&line).map_err(|e| log_err(e.into()))?;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(log_err)?;
            writeln!(f, "{text}").map_err(log_err)?;
        }
        self.lines.push(line);
        Ok(())
    }
}

/// `n > 0` and `step` a multiple of it.
fn every(n: u64, step: u64) -> bool {
    n > 0 && step.is_multiple_of(n)
}

/// Whether every rank holds rank 0's weights (compares a hash of their bits).
fn weights_agree<B: Backend>(t: &Trainer<'_, B>) -> bool {
    let mine = t.weights_hash();
    let mut root = mine.to_le_bytes().to_vec();
    t.comm.broadcast(&mut root);
    !t.comm.any(root != mine.to_le_bytes())
}

/// Train `t` to `t.tc.steps` on `data`, evaluating on windows of `heldout` tokens. Checks `stop`
/// before each step: once set, saves a checkpoint and returns [`Outcome::Stopped`].
///
/// Data-parallel (`t.comm` of several ranks): rank 0 alone evaluates, logs and saves; every
/// `eval_every` steps all ranks compare a hash of their weights and stop on a mismatch.
pub fn run<B: Backend>(
    t: &mut Trainer<'_, B>,
    data: &mut dyn BatchSource,
    heldout: &[u32],
    rc: &RunConfig,
    stop: &AtomicBool,
    obs: &mut dyn Observer,
) -> Result<Outcome, RunError> {
    let tc = t.tc.clone();
    let lead = t.comm.rank() == 0;
    let out = rc.out.as_deref().filter(|_| lead);
    let eval_set = heldout_windows(heldout, tc.seq, rc.eval_windows);
    let all_windows = heldout_windows(heldout, tc.seq, usize::MAX);
    let mut log = Log::open(out, t.step)?;
    let save = |t: &Trainer<'_, B>, data: &dyn BatchSource| -> Result<_, RunError> {
        out.map(|dir| checkpoint::save_checkpoint(dir, t, data.state(), rc.keep))
            .transpose()
            .map_err(RunError::Checkpoint)
    };
    obs.start(t.step, tc.steps);
    let mut window_start = Instant::now();
    let mut window_tokens = 0u64;
    let mut tps = 0.0;
    let mut heldout_loss_all = None;
    while t.step < tc.steps {
        if t.comm.any(stop.load(Ordering::SeqCst)) {
            let checkpoint = save(t, data)?;
            return Ok(Outcome::Stopped { checkpoint });
        }
        let s = t.step(data).map_err(RunError::Train)?;
        // Tokens per second over the last ~2 s.
        window_tokens += t.global_tokens_per_step() as u64;
        let secs = window_start.elapsed().as_secs_f64();
        if secs > 2.0 {
            tps = window_tokens as f64 / secs;
            window_start = Instant::now();
            window_tokens = 0;
        } else if tps == 0.0 {
            tps = window_tokens as f64 / secs.max(1e-9);
        }
        let last = s.step == tc.steps;
        if t.comm.size() > 1 && every(rc.eval_every, s.step) && !weights_agree(t) {
            return Err(RunError::Diverged { step: s.step });
        }
        let mut eval = |set: &[_]| (lead && !set.is_empty()).then(|| t.eval(set));
        let heldout_loss = every(rc.eval_every, s.step)
            .then(|| eval(&eval_set))
            .flatten();
        if last {
            heldout_loss_all = eval(&all_windows);
        }
        log.append(LogLine {
            step: s.step,
            loss: s.loss,
            lr: s.lr,
            grad_norm: s.grad_norm,
            tokens: t.tokens_seen,
            tokens_per_s: tps,
            heldout_loss,
            allreduce_s: s.allreduce_s,
            heldout_loss_all,
        })?;
        obs.step(&log.lines).map_err(RunError::Observer)?;
        if every(rc.save_every, s.step) || last {
            save(t, data)?;
        }
    }
    Ok(Outcome::Finished {
        heldout_loss_all,
        windows: all_windows.len(),
    })
}

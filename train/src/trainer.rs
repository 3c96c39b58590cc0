//! One optimisation step: micro-batches through the tape, gradient accumulation, clipping,
//! AdamW at the scheduled learning rate; and held-out evaluation.

use crate::backend::{Backend, Rows};
use crate::collective::{Collective, Single};
use crate::data::DataError;
use crate::optim::{AdamW, Moments, Schedule};
use crate::params::Params;
use crate::tape::{Pool, Tape};
use serde::{Deserialize, Serialize};
use tokenformer_core::Model;

/// Where training windows come from. `state` is saved with every checkpoint, so that a source
/// rebuilt from it (as `data::Windows::resume` does) draws exactly the windows the
/// uninterrupted run would have.
pub trait BatchSource {
    /// Position the source at global micro-batch `micro` of optimizer step `step` (called before
    /// each `next_batch`; micro = rank·accum + a). A source whose draw is a function of
    /// (seed, step, micro) gives data-parallel ranks the windows of one process with the same
    /// global batch; the default ignores it and draws in sequence.
    fn seek(&mut self, _step: u64, _micro: u64) {}
    /// Fill `inputs` and `targets` with `batch` windows of `seq` tokens (targets shifted by one).
    fn next_batch(
        &mut self,
        batch: usize,
        seq: usize,
        inputs: &mut Vec<u32>,
        targets: &mut Vec<u32>,
    ) -> Result<(), DataError>;
    /// The source's position, saved with each checkpoint (JSON of the source's choosing).
    fn state(&self) -> serde_json::Value;
}

/// Everything about a run except the model and the data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Sequences per micro-batch.
    pub batch: usize,
    /// Tokens per sequence (at most the model's `max_context`).
    pub seq: usize,
    /// Micro-batches per optimizer step.
    pub accum: usize,
    /// Optimizer steps of the whole run.
    pub steps: u64,
    /// The optimizer's hyperparameters.
    pub optim: AdamW,
    /// The learning-rate schedule.
    pub schedule: Schedule,
    /// Seed of the data draw.
    pub seed: u64,
}

impl TrainConfig {
    /// Tokens in one optimizer step of this rank: `batch · seq · accum`.
    pub fn tokens_per_step(&self) -> usize {
        self.batch * self.seq * self.accum
    }

    /// These per-rank settings, written for `from` ranks, on `to` ranks at the same global
    /// batch: `to` ranks × accum' = `from` × accum micro-batches of the same `batch` windows, so
    /// the keyed draw gives every step the same windows and only the summation order of the
    /// micro-batch gradients changes (rounding).
    pub fn for_ranks(&self, from: usize, to: usize) -> Result<TrainConfig, String> {
        let micro = from * self.accum;
        if to == 0 || !micro.is_multiple_of(to) {
            return Err(format!(
                "saved by {from} ranks × {} micro-batches of {} sequences per step: {to} ranks \
                 cannot take an equal share of those {micro} micro-batches (resume with a world \
                 size that divides {micro})",
                self.accum, self.batch
            ));
        }
        Ok(TrainConfig {
            accum: micro / to,
            ..self.clone()
        })
    }
}

/// What one optimizer step reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// Steps completed, this one included.
    pub step: u64,
    /// Mean training loss of the step (nats per token), over all ranks.
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// The learning rate the step used.
    pub lr: f32,
    /// Seconds this step spent in the gradient all-reduce (None with one rank).
    pub allreduce_s: Option<f64>,
}

/// Why a step failed; the model is left as it was before the step.
#[derive(Debug)]
pub enum TrainError {
    /// A NaN or infinite loss or gradient: the step was not applied.
    NonFinite {
        /// The step that was not applied.
        step: u64,
        /// Its loss.
        loss: f64,
        /// Its gradient norm.
        grad_norm: f64,
    },
    /// The data source failed.
    Data(DataError),
}

impl std::fmt::Display for TrainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrainError::NonFinite { step, loss, grad_norm } => write!(
                f,
                "non-finite training state at step {step} (loss {loss}, gradient norm {grad_norm}); \
                 the update was not applied: lower the learning rate or resume from the last checkpoint"
            ),
            TrainError::Data(e) => write!(f, "training data: {e}"),
        }
    }
}

impl std::error::Error for TrainError {}

/// Training state on backend `B`: parameters, AdamW moments, gradients, and the step count.
pub struct Trainer<'b, B: Backend> {
    /// The backend everything runs on.
    pub be: &'b B,
    /// The parameters being trained ([`Params::to_model`] gives a core model).
    pub params: Params<B>,
    /// AdamW's moments.
    pub moments: Moments<B>,
    grads: Params<B>,
    /// The gradient of one micro-batch when accumulating (allocated on first use).
    partial: Option<Params<B>>,
    /// Activation, gradient and scratch buffers, reused from step to step.
    pool: Pool<B>,
    /// The ranks this trainer steps with ([`Single`] unless set by `with_collective`).
    pub comm: &'b dyn Collective,
    /// The run's settings.
    pub tc: TrainConfig,
    /// Completed optimizer steps.
    pub step: u64,
    /// Tokens trained on so far, all ranks.
    pub tokens_seen: u64,
    inputs: Vec<u32>,
    targets: Vec<u32>,
}

impl<'b, B: Backend> Trainer<'b, B> {
    /// A trainer starting at step 0 from `model`'s weights (uploaded to `be`), with zero moments.
    pub fn new(be: &'b B, model: &Model<'_>, tc: TrainConfig) -> Self {
        let params = Params::from_model(be, model);
        let grads = Params::zeros_like(be, &params);
        let moments = Moments::new(be, &params);
        Trainer {
            be,
            params,
            moments,
            grads,
            partial: None,
            pool: Pool::default(),
            comm: &Single,
            tc,
            step: 0,
            tokens_seen: 0,
            inputs: Vec::new(),
            targets: Vec::new(),
        }
    }

    /// Step data-parallel with the ranks of `comm`: `tc.batch` and `tc.accum` stay per rank.
    pub fn with_collective(mut self, comm: &'b dyn Collective) -> Self {
        self.comm = comm;
        self
    }

    /// Tokens in one optimizer step over all ranks (the global batch).
    pub fn global_tokens_per_step(&self) -> usize {
        self.tc.tokens_per_step() * self.comm.size()
    }

    /// A fingerprint of the weights' bits, equal on every rank while they are in lockstep.
    pub fn weights_hash(&self) -> u64 {
        self.params
            .tensors
            .iter()
            .fold(crate::collective::FNV_OFFSET, |h, t| {
                crate::collective::hash_f32(h, &self.be.download(t))
            })
    }

    /// The learning rate of the next step (peak × schedule).
    pub fn lr(&self) -> f32 {
        self.tc.optim.lr * self.tc.schedule.factor(self.step)
    }

    /// One optimizer step over `accum` micro-batches. On a non-finite loss or gradient the
    /// parameters and moments are left untouched.
    pub fn step(&mut self, data: &mut dyn BatchSource) -> Result<StepStats, TrainError> {
        let be = self.be;
        let rows = Rows {
            batch: self.tc.batch,
            seq: self.tc.seq,
        };
        let (comm, accum) = (self.comm, self.tc.accum);
        let micro_total = rows.count() * accum * comm.size();
        let scale = 1.0 / micro_total as f32;
        let mut loss_sum = 0.0f64;
        // Each micro-batch's gradient is computed alone and added to the running sum, so the
        // sum is the same sequence of additions whether the micro-batches ran in one process
        // or were spread over ranks and summed by the all-reduce (bit-identical for 2).
        for a in 0..accum {
            data.seek(self.step, (comm.rank() * accum + a) as u64);
            data.next_batch(rows.batch, rows.seq, &mut self.inputs, &mut self.targets)
                .map_err(TrainError::Data)?;
            let target = if a == 0 {
                &mut self.grads
            } else {
                self.partial
                    .get_or_insert_with(|| Params::zeros_like(be, &self.params))
            };
            for g in &mut target.tensors {
                be.fill_zero(g);
            }
            let pool = std::mem::take(&mut self.pool);
            let mut tape = Tape::with_pool(be, &self.params, rows, pool);
            let logits = tape.forward(&self.inputs);
            let losses = tape.backward_from_cross_entropy(logits, &self.targets, scale, target);
            self.pool = tape.into_pool();
            loss_sum += losses.iter().sum::<f64>();
            if let (true, Some(p)) = (a > 0, &self.partial) {
                for (g, x) in self.grads.tensors.iter_mut().zip(&p.tensors) {
                    be.add_assign(g, x);
                }
            }
        }
        // The one gradient all-reduce of the step: through the host, or on the device (NCCL).
        let t0 = std::time::Instant::now();
        be.all_reduce_sum(comm, &mut self.grads.tensors);
        let mut allreduce_s = None;
        if comm.size() > 1 {
            let mut l = [loss_sum];
            comm.all_reduce_sum_f64(&mut l);
            loss_sum = l[0];
            allreduce_s = Some(t0.elapsed().as_secs_f64());
        }
        // Every rank holds the same sums now: the same checks and update follow everywhere,
        // and a NaN on any rank stops all of them before the update.
        let loss = loss_sum / micro_total as f64;
        let lr = self.lr();
        let norm = crate::optim::grad_norm(be, &self.grads);
        if !loss.is_finite() || !norm.is_finite() {
            return Err(TrainError::NonFinite {
                step: self.step,
                loss,
                grad_norm: norm,
            });
        }
        let norm =
            self.tc
                .optim
                .update(be, &mut self.params, &mut self.grads, &mut self.moments, lr);
        self.step += 1;
        self.tokens_seen += micro_total as u64;
        Ok(StepStats {
            step: self.step,
            loss,
            grad_norm: norm,
            lr,
            allreduce_s,
        })
    }

    /// Free the activation and gradient buffers kept for the next step (it allocates them anew).
    pub fn release_buffers(&mut self) {
        self.pool = Pool::default();
    }

    /// Mean loss (nats per token) over windows of (inputs, targets) of equal length. The
    /// step's buffers are released first, so evaluation needs no more memory than a step.
    pub fn eval(&mut self, windows: &[(Vec<u32>, Vec<u32>)]) -> f64 {
        self.release_buffers();
        eval_loss(self.be, &self.params, windows, self.tc.batch)
    }
}

/// Mean cross-entropy of the model over `windows`, `batch` windows per forward.
pub fn eval_loss<B: Backend>(
    be: &B,
    params: &Params<B>,
    windows: &[(Vec<u32>, Vec<u32>)],
    batch: usize,
) -> f64 {
    let mut total = 0.0f64;
    let mut count = 0usize;
    let v = params.config.vocab_size;
    for group in windows.chunks(batch.max(1)) {
        let seq = group[0].0.len();
        let rows = Rows {
            batch: group.len(),
            seq,
        };
        let inputs: Vec<u32> = group.iter().flat_map(|w| w.0.iter().copied()).collect();
        let targets: Vec<u32> = group.iter().flat_map(|w| w.1.iter().copied()).collect();
        let mut tape = Tape::new(be, params, rows);
        let logits = tape.forward(&inputs);
        let mut scratch = be.zeros(rows.count() * v);
        let losses = be.cross_entropy(tape.value(logits), &targets, v, 0.0, &mut scratch);
        total += losses.iter().sum::<f64>();
        count += losses.len();
    }
    total / count.max(1) as f64
}

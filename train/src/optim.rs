//! AdamW with decoupled weight decay, global-norm clipping and the warmup + cosine schedule
//! (spec: "Training recipe").

use crate::backend::{AdamStep, Backend};
use crate::params::Params;
use serde::{Deserialize, Serialize};
use tokenformer_core::model::Role;

/// AdamW's hyperparameters ([`AdamW::default`]: the authors' values, lr 6e-4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamW {
    /// Peak learning rate (the schedule scales it).
    pub lr: f32,
    /// β1: decay of the first moment.
    pub beta1: f32,
    /// β2: decay of the second moment.
    pub beta2: f32,
    /// ε added to √v.
    pub eps: f32,
    /// Decoupled weight decay (not applied to the final norm, see [`decays`]).
    pub weight_decay: f32,
    /// Global gradient norm above which gradients are scaled down (0 disables clipping).
    pub clip: f32,
}

impl Default for AdamW {
    /// The authors' values.
    fn default() -> Self {
        AdamW {
            lr: 6e-4,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            clip: 1.0,
        }
    }
}

/// Linear warmup to the peak, then cosine decay to `min_lr_ratio` of it at `total` steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Steps of linear warmup.
    pub warmup: u64,
    /// Step at which the cosine reaches its minimum (usually the run's length).
    pub total: u64,
    /// The final learning rate as a fraction of the peak.
    pub min_lr_ratio: f32,
}

impl Schedule {
    /// The learning-rate multiplier for 0-based `step`.
    pub fn factor(&self, step: u64) -> f32 {
        if step < self.warmup {
            return (step + 1) as f32 / self.warmup as f32;
        }
        let span = self.total.saturating_sub(self.warmup).max(1);
        let progress = ((step - self.warmup) as f64 / span as f64).min(1.0);
        let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        (self.min_lr_ratio as f64 + (1.0 - self.min_lr_ratio as f64) * cos) as f32
    }
}

/// The optimizer's moments, shaped like the parameters.
pub struct Moments<B: Backend> {
    /// First moments.
    pub m: Params<B>,
    /// Second moments.
    pub v: Params<B>,
    /// Updates applied so far (the t of the bias correction).
    pub t: u64,
}

impl<B: Backend> Moments<B> {
    /// Zero moments shaped like `params`.
    pub fn new(be: &B, params: &Params<B>) -> Self {
        Moments {
            m: Params::zeros_like(be, params),
            v: Params::zeros_like(be, params),
            t: 0,
        }
    }
}

/// LayerNorm parameters are not decayed (the authors' recipe).
pub fn decays(role: Role) -> bool {
    !matches!(role, Role::FinalNormWeight | Role::FinalNormBias)
}

/// The global L2 norm of all gradients.
pub fn grad_norm<B: Backend>(be: &B, grads: &Params<B>) -> f64 {
    grads
        .tensors
        .iter()
        .map(|g| be.sum_squares(g))
        .sum::<f64>()
        .sqrt()
}

impl AdamW {
    /// Clip `grads` to the global norm (returning the norm before clipping) and apply one update
    /// at learning rate `lr`.
    pub fn update<B: Backend>(
        &self,
        be: &B,
        params: &mut Params<B>,
        grads: &mut Params<B>,
        mom: &mut Moments<B>,
        lr: f32,
    ) -> f64 {
        let norm = grad_norm(be, grads);
        if self.clip > 0.0 && norm > self.clip as f64 {
            let s = (self.clip as f64 / norm) as f32;
            for g in &mut grads.tensors {
                be.scale(g, s);
            }
        }
        mom.t += 1;
        let t = mom.t as i32;
        for (i, spec) in params.specs.iter().enumerate() {
            let step = AdamStep {
                lr,
                beta1: self.beta1,
                beta2: self.beta2,
                eps: self.eps,
                weight_decay: if decays(spec.role) {
                    self.weight_decay
                } else {
                    0.0
                },
                bias1: 1.0 - self.beta1.powi(t),
                bias2: 1.0 - self.beta2.powi(t),
            };
            be.adamw(
                &mut params.tensors[i],
                &grads.tensors[i],
                &mut mom.m.tensors[i],
                &mut mom.v.tensors[i],
                step,
            );
        }
        norm
    }
}

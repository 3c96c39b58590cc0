//! How much device memory one training process needs: the optimizer state (weights, gradients,
//! two AdamW moments, and the per-micro-batch gradient when accumulating) plus the activations
//! the tape keeps for one micro-batch and the largest transients of its backward. An estimate
//! for refusing a model that cannot fit before anything is allocated or written, not an
//! allocator: it counts the buffers `tape.rs` records per op (f32 everywhere).

use crate::backend::{Precision, Rows};
use tokenformer_core::Config;

/// Bytes, by what holds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footprint {
    /// Weights, gradients, moments (and the accumulation buffer).
    pub state: usize,
    /// Activations of one micro-batch, the logits' gradient and the backward's transients.
    pub activations: usize,
}

impl Footprint {
    /// State plus activations, in bytes (saturating).
    pub fn total(self) -> usize {
        self.state.saturating_add(self.activations)
    }
}

/// The footprint of training `cfg` on micro-batches of `rows`, `accum` per step.
pub fn training(cfg: &Config, rows: Rows, accum: usize, precision: Precision) -> Footprint {
    let f32s = |n: usize| n.saturating_mul(4);
    let n = cfg.param_count();
    let copies = if accum > 1 { 5 } else { 4 };
    let (r, d, v) = (rows.count(), cfg.d_model, cfg.vocab_size);
    let (nq, np, nf) = (cfg.qkv_tokens, cfg.proj_tokens, cfg.ffn_tokens);
    let probs = rows.batch * cfg.n_heads * rows.seq * rows.seq;
    // Per layer: two LayerNorms (y, rstd), five Pattentions (scores, Θ(scores), output), two
    // rotary copies, attention (output, probabilities), two residual sums.
    let per_layer = r * (2 * (3 * nq + np + nf) + 12 * d + 2) + probs;
    // Embedding, final affine norm (x̂, y, rstd), logits and their gradient.
    let head = r * (3 * d + 1) + 2 * r * v;
    // Backward transients: the scores' gradient of attention and a few row-wide gradients.
    let transient = probs + 4 * r * nf.max(d);
    let mut act = f32s(cfg.n_layers * per_layer + head + transient);
    if precision == Precision::Bf16 {
        // The bf16 copies of the largest product's two operands (logits' backward).
        act += 2 * (r * v + v * d);
    }
    Footprint {
        state: f32s(n).saturating_mul(copies),
        activations: act,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_four_copies_of_the_weights_and_activations_grow_with_the_batch() {
        let cfg = Config::preset("tiny").unwrap();
        let rows = |batch| Rows { batch, seq: 64 };
        let one = training(&cfg, rows(1), 1, Precision::F32);
        assert_eq!(one.state, 16 * cfg.param_count());
        assert_eq!(
            training(&cfg, rows(1), 2, Precision::F32).state,
            20 * cfg.param_count()
        );
        let two = training(&cfg, rows(2), 1, Precision::F32);
        // Every activation term is linear in the batch.
        assert_eq!(two.activations, 2 * one.activations);
        assert!(training(&cfg, rows(1), 1, Precision::Bf16).activations > one.activations);
        // At least the logits and their gradient.
        assert!(one.activations >= 2 * 4 * 64 * cfg.vocab_size);
    }
}

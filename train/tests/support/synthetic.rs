//! The small training run the backends' tests share: windows at seeded random offsets of a
//! fixed token stream with structure to learn (a repeating pattern with noise), and its settings.
#![allow(dead_code)]

use tokenformer_core::Rng;
use tokenformer_train::data::{micro_batch_seed, DataError};
use tokenformer_train::optim::{AdamW, Schedule};
use tokenformer_train::{BatchSource, TrainConfig};

/// Batch 2 × 16 tokens, `accum` micro-batches per step, lr 3e-3 after 2 warmup steps.
pub fn train_config(accum: usize, steps: u64) -> TrainConfig {
    TrainConfig {
        batch: 2,
        seq: 16,
        accum,
        steps,
        optim: AdamW {
            lr: 3e-3,
            ..AdamW::default()
        },
        schedule: Schedule {
            warmup: 2,
            total: steps,
            min_lr_ratio: 0.1,
        },
        seed: 0,
    }
}

pub struct Synthetic {
    pub tokens: Vec<u32>,
    rng: Rng,
    /// Keyed: each micro-batch's windows come from (seed, step, micro-batch) alone, as the
    /// training data's keyed draw, so N ranks × accum A see the windows of 1 rank × accum N·A.
    keyed: Option<u64>,
}

impl Synthetic {
    /// One RNG draws every window in turn.
    pub fn new(vocab: u32, len: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ 0xDA7A);
        let tokens = (0..len)
            .map(|i| {
                if rng.below(10) == 0 {
                    rng.below(vocab as u64) as u32
                } else {
                    (i as u32 % 13) * 31 % vocab
                }
            })
            .collect();
        Synthetic {
            tokens,
            rng: Rng::new(seed),
            keyed: None,
        }
    }

    /// The same stream with the keyed draw.
    pub fn keyed(vocab: u32, len: usize, seed: u64) -> Self {
        Synthetic {
            keyed: Some(seed),
            ..Synthetic::new(vocab, len, seed)
        }
    }

    /// Rebuild the position a saved `state` describes.
    pub fn restore(&mut self, s: &serde_json::Value) -> Result<(), String> {
        let st: [u64; 4] = serde_json::from_value(s.clone()).map_err(|e| e.to_string())?;
        self.rng = Rng::from_state(st).ok_or("zero rng state")?;
        Ok(())
    }
}

impl BatchSource for Synthetic {
    fn seek(&mut self, step: u64, micro: u64) {
        if let Some(seed) = self.keyed {
            self.rng = Rng::new(micro_batch_seed(seed, step, micro));
        }
    }

    fn next_batch(
        &mut self,
        batch: usize,
        seq: usize,
        inputs: &mut Vec<u32>,
        targets: &mut Vec<u32>,
    ) -> Result<(), DataError> {
        inputs.clear();
        targets.clear();
        for _ in 0..batch {
            let o = self.rng.below((self.tokens.len() - seq - 1) as u64) as usize;
            inputs.extend_from_slice(&self.tokens[o..o + seq]);
            targets.extend_from_slice(&self.tokens[o + 1..o + seq + 1]);
        }
        Ok(())
    }

    fn state(&self) -> serde_json::Value {
        serde_json::json!(self.rng.state())
    }
}

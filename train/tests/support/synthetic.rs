//! The training tests' data and settings: windows at seeded offsets of a patterned token
//! stream (resumable from its `state`), and a small run configuration.
#![allow(dead_code)]

use tokenformer_core::Rng;
use tokenformer_train::data::DataError;
use tokenformer_train::optim::{AdamW, Schedule};
use tokenformer_train::{BatchSource, TrainConfig};

/// Windows at seeded random offsets of a fixed token stream.
pub struct Synthetic {
    pub tokens: Vec<u32>,
    rng: Rng,
}

impl Synthetic {
    /// Rebuild the position a saved `state` describes.
    pub fn restore(&mut self, s: &serde_json::Value) -> Result<(), String> {
        let st: [u64; 4] = serde_json::from_value(s.clone()).map_err(|e| e.to_string())?;
        self.rng = Rng::from_state(st).ok_or("zero rng state")?;
        Ok(())
    }
    /// A stream with structure to learn: a repeating pattern with noise.
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
        }
    }
}

impl BatchSource for Synthetic {
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

pub fn tc(steps: u64) -> TrainConfig {
    TrainConfig {
        batch: 2,
        seq: 16,
        accum: 2,
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

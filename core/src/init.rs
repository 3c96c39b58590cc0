//! Fresh weights as the authors' training recipe initialises them: embedding and key tokens
//! N(0, 0.02); value tokens N(0, σ) with σ = 2/(L·√d) ("wang init"); final norm weight 1, bias 0.

use crate::config::Config;
use crate::model::{tensor_specs, Model, ModelError, Role};
use crate::sample::Rng;
use alloc::borrow::Cow;
use alloc::vec::Vec;

/// σ of the embedding and of the key tokens.
pub const EMBED_STD: f64 = 0.02;

/// σ of the value tokens.
pub fn value_std(cfg: &Config) -> f64 {
    2.0 / (cfg.n_layers as f64 * libm::sqrt(cfg.d_model as f64))
}

/// Fill `out` with N(0, std²) samples.
pub fn fill_normal(rng: &mut Rng, std: f64, out: &mut Vec<f32>, n: usize) {
    out.reserve(n);
    for _ in 0..n {
        out.push((rng.normal() * std) as f32);
    }
}

/// A model with freshly initialised weights, reproducible from `seed`.
pub fn init(config: Config, seed: u64) -> Result<Model<'static>, ModelError> {
    config.validate().map_err(ModelError::Config)?;
    let mut rng = Rng::new(seed);
    let vstd = value_std(&config);
    let tensors = tensor_specs(&config)
        .iter()
        .map(|s| {
            let n = s.numel();
            let mut w = Vec::new();
            match s.role {
                Role::Embedding | Role::Keys(..) => fill_normal(&mut rng, EMBED_STD, &mut w, n),
                Role::Values(..) => fill_normal(&mut rng, vstd, &mut w, n),
                Role::FinalNormWeight => w.resize(n, 1.0),
                Role::FinalNormBias => w.resize(n, 0.0),
            }
            Cow::Owned(w)
        })
        .collect();
    Model::from_tensors(config, tensors)
}

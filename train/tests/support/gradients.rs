//! The gradient checks shared by the backends' tests: central finite differences of the naive
//! f64 reference (`reference64.rs`) against the analytic f32 gradients.
//!
//! The differences are f64 with h = 1e-5, accurate to ~1e-9. Tolerance: max |analytic − fd| ≤
//! 1e-4 · max(1, max |fd|) (measured errors are printed; the largest is 4.4e-6 relative).
#![allow(dead_code)]

use super::reference64 as r64;
use std::borrow::Cow;
use tokenformer_core::model::{tensor_specs, Role};
use tokenformer_core::{Config, Model, Rng, ThetaKind};
use tokenformer_train::backend::Backend;
use tokenformer_train::{Params, Rows, Tape};

pub const H: f64 = 1e-5;
pub const TOL: f64 = 1e-4;

pub fn randn(rng: &mut Rng, n: usize, std: f64) -> Vec<f64> {
    (0..n).map(|_| rng.normal() * std).collect()
}

pub fn f32s(x: &[f64]) -> Vec<f32> {
    x.iter().map(|&v| v as f32).collect()
}

pub fn f64s(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// ∂/∂x_i of f at x (x rounded through f32, so the point matches what the f32 code saw).
pub fn fd(f: &dyn Fn(&[f64]) -> f64, x: &[f64], i: usize) -> f64 {
    let (mut p, mut m) = (x.to_vec(), x.to_vec());
    p[i] += H;
    m[i] -= H;
    (f(&p) - f(&m)) / (2.0 * H)
}

pub fn assert_close(what: &str, analytic: &[f32], f: &dyn Fn(&[f64]) -> f64, x: &[f64]) {
    assert_close_at(what, analytic, f, x, &(0..x.len()).collect::<Vec<_>>());
}

pub fn assert_close_at(
    what: &str,
    analytic: &[f32],
    f: &dyn Fn(&[f64]) -> f64,
    x: &[f64],
    idx: &[usize],
) {
    let num: Vec<f64> = idx.iter().map(|&i| fd(f, x, i)).collect();
    let scale = num.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let err = idx
        .iter()
        .zip(&num)
        .map(|(&i, n)| (analytic[i] as f64 - n).abs())
        .fold(0.0, f64::max);
    println!("{what}: max |analytic - fd| = {err:.2e} (scale {scale:.2e})");
    assert!(
        err <= TOL * scale,
        "{what}: error {err:e} > {TOL} · {scale}"
    );
}

/// L = Σ w ⊙ y: the upstream gradient is w.
pub fn weighted(w: &[f64], y: &[f64]) -> f64 {
    w.iter().zip(y).map(|(a, b)| a * b).sum()
}

pub fn tiny(norm: ThetaKind, scale: [usize; 3]) -> Config {
    Config {
        n_layers: 2,
        d_model: 16,
        n_heads: 2,
        qkv_tokens: 6,
        proj_tokens: 5,
        ffn_tokens: 8,
        qkv_scale_tokens: scale[0],
        proj_scale_tokens: scale[1],
        ffn_scale_tokens: scale[2],
        rotary_pct: 0.5,
        rotary_base: 10000.0,
        norm,
        vocab_size: 11,
        tokenizer_vocab: 10,
        max_context: 16,
        layer_norm_eps: 1e-5,
    }
}

/// A model whose weights are exactly representable in f32 and given in f64 for the reference.
fn random_model(cfg: &Config, rng: &mut Rng) -> (Model<'static>, Vec<Vec<f64>>) {
    let w: Vec<Vec<f64>> = tensor_specs(cfg)
        .iter()
        .map(|s| {
            let std = match s.role {
                Role::FinalNormWeight | Role::FinalNormBias => 0.5,
                _ => 0.5,
            };
            let mut v = f64s(&f32s(&randn(rng, s.numel(), std)));
            if s.role == Role::FinalNormWeight {
                v.iter_mut().for_each(|x| *x = f64::from((1.0 + *x) as f32));
            }
            v
        })
        .collect();
    let model =
        Model::from_tensors(cfg.clone(), w.iter().map(|t| Cow::Owned(f32s(t))).collect()).unwrap();
    (model, w)
}

fn shape(cfg: &Config) -> r64::Shape {
    r64::Shape {
        layers: cfg.n_layers,
        d: cfg.d_model,
        heads: cfg.n_heads,
        tokens: [cfg.qkv_tokens, cfg.proj_tokens, cfg.ffn_tokens],
        scale: [
            cfg.qkv_scale_tokens,
            cfg.proj_scale_tokens,
            cfg.ffn_scale_tokens,
        ],
        vocab: cfg.vocab_size,
        rot: cfg.rotary_dims(),
        base: cfg.rotary_base as f64,
        norm: cfg.norm,
    }
}

/// The whole model's parameter gradients, through the tape on backend `be`, on tiny configs of
/// every Θ (and one grown with its scale kept). The backend is reached only through the trait.
pub fn whole_model_gradient_matches_finite_differences<B: Backend>(be: &B) {
    for (seed, norm, scale) in [
        (10, ThetaKind::L2NormGelu, [6, 5, 8]),
        (11, ThetaKind::L2NormGelu, [4, 3, 5]), // grown with the scale kept
        (12, ThetaKind::GeluL2Norm, [6, 5, 8]),
        (13, ThetaKind::Softmax, [6, 5, 8]),
    ] {
        let cfg = tiny(norm, scale);
        let mut rng = Rng::new(seed);
        let (model, w) = random_model(&cfg, &mut rng);
        let rows = Rows { batch: 2, seq: 5 };
        let tokens: Vec<u32> = (0..rows.count()).map(|_| rng.below(11) as u32).collect();
        let targets: Vec<u32> = (0..rows.count()).map(|_| rng.below(10) as u32).collect();
        let params = Params::from_model(be, &model);
        let mut grads = Params::zeros_like(be, &params);
        let mut tape = Tape::new(be, &params, rows);
        let logits = tape.forward(&tokens);
        let losses = tape.backward_from_cross_entropy(
            logits,
            &targets,
            1.0 / rows.count() as f32,
            &mut grads,
        );
        let sh = shape(&cfg);
        let loss = |w: &[Vec<f64>]| {
            r64::cross_entropy(
                &r64::forward(&sh, w, &tokens, rows.seq),
                &targets,
                cfg.vocab_size,
            )
        };
        let mean = losses.iter().sum::<f64>() / losses.len() as f64;
        assert!(
            (mean - loss(&w)).abs() < 1e-4,
            "{norm}: loss {mean} vs reference {}",
            loss(&w)
        );
        for (ti, spec) in tensor_specs(&cfg).iter().enumerate() {
            // Up to 12 entries per tensor keep the test fast and still touch every tensor.
            let idx: Vec<usize> = (0..12.min(spec.numel()))
                .map(|_| rng.below(spec.numel() as u64) as usize)
                .collect();
            let f = |x: &[f64]| {
                let mut w2 = w.clone();
                w2[ti] = x.to_vec();
                loss(&w2)
            };
            assert_close_at(
                &format!("{norm} {scale:?} {}", spec.name),
                &be.download(&grads.tensors[ti]),
                &f,
                &w[ti],
                &idx,
            );
        }
    }
}

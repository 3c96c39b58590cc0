//! Every op's backward against central finite differences of the naive f64 reference
//! (`support/reference64.rs`), then the whole model's gradient on tiny configs.
//!
//! The analytic gradients are f32 (what training uses); the differences are f64 with h = 1e-5,
//! accurate to ~1e-9. Tolerance: max |analytic − fd| ≤ 1e-4 · max(1, max |fd|) (measured errors
//! are printed; the largest is 4.4e-6 relative).

#[path = "support/reference64.rs"]
mod reference64;

use reference64 as r64;
use std::borrow::Cow;
use tokenformer_core::model::{tensor_specs, Role};
use tokenformer_core::ops::rotary::RopeTable;
use tokenformer_core::{Config, Model, Norm, Rng};
use tokenformer_train::backend::{Backend, Mat};
use tokenformer_train::{Cpu, Params, Rows, Tape};

const H: f64 = 1e-5;
const TOL: f64 = 1e-4;

fn randn(rng: &mut Rng, n: usize, std: f64) -> Vec<f64> {
    (0..n).map(|_| rng.normal() * std).collect()
}

fn f32s(x: &[f64]) -> Vec<f32> {
    x.iter().map(|&v| v as f32).collect()
}

fn f64s(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// ∂/∂x_i of f at x (x rounded through f32, so the point matches what the f32 code saw).
fn fd(f: &dyn Fn(&[f64]) -> f64, x: &[f64], i: usize) -> f64 {
    let (mut p, mut m) = (x.to_vec(), x.to_vec());
    p[i] += H;
    m[i] -= H;
    (f(&p) - f(&m)) / (2.0 * H)
}

fn assert_close(what: &str, analytic: &[f32], f: &dyn Fn(&[f64]) -> f64, x: &[f64]) {
    assert_close_at(what, analytic, f, x, &(0..x.len()).collect::<Vec<_>>());
}

fn assert_close_at(
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
fn weighted(w: &[f64], y: &[f64]) -> f64 {
    w.iter().zip(y).map(|(a, b)| a * b).sum()
}

#[test]
fn theta_backward_matches_finite_differences() {
    let be = Cpu;
    let mut rng = Rng::new(1);
    let (rows, n) = (4, 9);
    for norm in [Norm::L2NormGelu, Norm::GeluL2Norm, Norm::Softmax] {
        // scale_n ≠ n is the grown-with-kept-scale case.
        for scale_n in [n, 5] {
            let a = randn(&mut rng, rows * n, 1.5);
            let w = randn(&mut rng, rows * n, 1.0);
            let a = f64s(&f32s(&a));
            let (a32, w32) = (f32s(&a), f32s(&w));
            let mut s = vec![0.0; rows * n];
            be.theta_forward(&a32, n, norm, scale_n, &mut s);
            let mut da = vec![0.0; rows * n];
            be.theta_backward(&a32, &s, &w32, n, norm, scale_n, &mut da);
            let f = |x: &[f64]| {
                let y: Vec<f64> = x
                    .chunks(n)
                    .flat_map(|r| r64::theta(r, norm, scale_n))
                    .collect();
                weighted(&w, &y)
            };
            assert_close(&format!("theta {norm} scale_n {scale_n}"), &da, &f, &a);
        }
    }
}

#[test]
fn layer_norm_backward_matches_finite_differences() {
    let be = Cpu;
    let mut rng = Rng::new(2);
    let (rows, d) = (3, 12);
    let x = f64s(&f32s(&randn(&mut rng, rows * d, 2.0)));
    let w = randn(&mut rng, rows * d, 1.0);
    let (mut y, mut rstd) = (vec![0.0; rows * d], vec![0.0; rows]);
    be.layer_norm_forward(&f32s(&x), d, 1e-5, &mut y, &mut rstd);
    let mut dx = vec![0.0; rows * d];
    be.layer_norm_backward(&y, &rstd, &f32s(&w), d, &mut dx);
    let f = |x: &[f64]| weighted(&w, &r64::layer_norm(x, d, 1e-5));
    assert_close("layer_norm", &dx, &f, &x);
}

#[test]
fn affine_norm_backward_matches_finite_differences() {
    let be = Cpu;
    let mut rng = Rng::new(3);
    let (rows, d) = (3, 10);
    let x = f64s(&f32s(&randn(&mut rng, rows * d, 2.0)));
    let gw = f64s(&f32s(&randn(&mut rng, d, 1.0)));
    let gb = f64s(&f32s(&randn(&mut rng, d, 1.0)));
    let w = randn(&mut rng, rows * d, 1.0);
    let (mut xhat, mut rstd, mut y) = (vec![0.0; rows * d], vec![0.0; rows], vec![0.0; rows * d]);
    be.affine_norm_forward(
        &f32s(&x),
        &f32s(&gw),
        &f32s(&gb),
        1e-5,
        &mut xhat,
        &mut rstd,
        &mut y,
    );
    let (mut dx, mut dw, mut db) = (vec![0.0; rows * d], vec![0.0; d], vec![0.0; d]);
    be.affine_norm_backward(
        &xhat,
        &rstd,
        &f32s(&gw),
        &f32s(&w),
        &mut dx,
        &mut dw,
        &mut db,
    );
    assert_close(
        "affine_norm dx",
        &dx,
        &|x| weighted(&w, &r64::affine_norm(x, &gw, &gb, 1e-5)),
        &x,
    );
    assert_close(
        "affine_norm dw",
        &dw,
        &|p| weighted(&w, &r64::affine_norm(&x, p, &gb, 1e-5)),
        &gw,
    );
    assert_close(
        "affine_norm db",
        &db,
        &|p| weighted(&w, &r64::affine_norm(&x, &gw, p, 1e-5)),
        &gb,
    );
}

#[test]
fn rotary_backward_matches_finite_differences() {
    let be = Cpu;
    let mut rng = Rng::new(4);
    let (batch, seq, d, hd) = (2, 5, 16, 8);
    let rot = 4;
    let rope = RopeTable::new(rot, 10000.0);
    let x = randn(&mut rng, batch * seq * d, 1.0);
    let w = randn(&mut rng, batch * seq * d, 1.0);
    let mut dx = f32s(&w);
    be.rotary(&mut dx, Rows { batch, seq }, d, hd, &rope, true);
    let f = |x: &[f64]| weighted(&w, &r64::rotary(x, seq, d, hd, rot, 10000.0));
    assert_close("rotary", &dx, &f, &x);
}

#[test]
fn attention_backward_matches_finite_differences() {
    let be = Cpu;
    let mut rng = Rng::new(5);
    let (batch, seq, d, heads) = (2, 6, 8, 2);
    let rows = Rows { batch, seq };
    let n = batch * seq * d;
    let q = f64s(&f32s(&randn(&mut rng, n, 1.0)));
    let k = f64s(&f32s(&randn(&mut rng, n, 1.0)));
    let v = f64s(&f32s(&randn(&mut rng, n, 1.0)));
    let w = randn(&mut rng, n, 1.0);
    let (mut out, mut probs) = (vec![0.0; n], vec![0.0; batch * heads * seq * seq]);
    be.attention_forward(
        &f32s(&q),
        &f32s(&k),
        &f32s(&v),
        rows,
        d,
        heads,
        &mut out,
        &mut probs,
    );
    let reference = r64::attention(&q, &k, &v, seq, d, heads);
    let fwd_err = out
        .iter()
        .zip(&reference)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0, f64::max);
    assert!(fwd_err < 1e-5, "attention forward error {fwd_err:e}");
    let (mut dq, mut dk, mut dv) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    be.attention_backward(
        &f32s(&q),
        &f32s(&k),
        &f32s(&v),
        &probs,
        &f32s(&w),
        rows,
        d,
        heads,
        &mut dq,
        &mut dk,
        &mut dv,
    );
    assert_close(
        "attention dq",
        &dq,
        &|x| weighted(&w, &r64::attention(x, &k, &v, seq, d, heads)),
        &q,
    );
    assert_close(
        "attention dk",
        &dk,
        &|x| weighted(&w, &r64::attention(&q, x, &v, seq, d, heads)),
        &k,
    );
    assert_close(
        "attention dv",
        &dv,
        &|x| weighted(&w, &r64::attention(&q, &k, x, seq, d, heads)),
        &v,
    );
}

#[test]
fn cross_entropy_gradient_matches_finite_differences() {
    let be = Cpu;
    let mut rng = Rng::new(6);
    let (rows, vocab) = (5, 13);
    let z = f64s(&f32s(&randn(&mut rng, rows * vocab, 3.0)));
    let targets: Vec<u32> = (0..rows).map(|_| rng.below(vocab as u64) as u32).collect();
    let mut dz = vec![0.0; rows * vocab];
    let losses = be.cross_entropy(&f32s(&z), &targets, vocab, 1.0 / rows as f32, &mut dz);
    let mean = losses.iter().sum::<f64>() / rows as f64;
    let reference = r64::cross_entropy(&z, &targets, vocab);
    assert!((mean - reference).abs() < 1e-5, "{mean} vs {reference}");
    assert_close(
        "cross_entropy",
        &dz,
        &|x| r64::cross_entropy(x, &targets, vocab),
        &z,
    );
}

#[test]
fn matmul_transposes_match_naive_products() {
    let be = Cpu;
    let mut rng = Rng::new(7);
    let (m, n, k) = (5, 7, 3);
    for ta in [false, true] {
        for tb in [false, true] {
            let a = f32s(&randn(&mut rng, m * k, 1.0));
            let b = f32s(&randn(&mut rng, k * n, 1.0));
            let c0 = f32s(&randn(&mut rng, m * n, 1.0));
            let at = |i: usize, p: usize| if ta { a[p * m + i] } else { a[i * k + p] } as f64;
            let bt = |p: usize, j: usize| if tb { b[j * k + p] } else { b[p * n + j] } as f64;
            for acc in [false, true] {
                let mut c = c0.clone();
                be.matmul(
                    m,
                    n,
                    k,
                    Mat { buf: &a, t: ta },
                    Mat { buf: &b, t: tb },
                    &mut c,
                    acc,
                );
                for i in 0..m {
                    for j in 0..n {
                        let want = (0..k).map(|p| at(i, p) * bt(p, j)).sum::<f64>()
                            + if acc { c0[i * n + j] as f64 } else { 0.0 };
                        assert!(
                            (c[i * n + j] as f64 - want).abs() < 1e-5,
                            "ta {ta} tb {tb} acc {acc}"
                        );
                    }
                }
            }
        }
    }
}

pub fn tiny(norm: Norm, scale: [usize; 3]) -> Config {
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

#[test]
fn whole_model_gradient_matches_finite_differences() {
    let be = Cpu;
    for (seed, norm, scale) in [
        (10, Norm::L2NormGelu, [6, 5, 8]),
        (11, Norm::L2NormGelu, [4, 3, 5]), // grown with the scale kept
        (12, Norm::GeluL2Norm, [6, 5, 8]),
        (13, Norm::Softmax, [6, 5, 8]),
    ] {
        let cfg = tiny(norm, scale);
        let mut rng = Rng::new(seed);
        let (model, w) = random_model(&cfg, &mut rng);
        let rows = Rows { batch: 2, seq: 5 };
        let tokens: Vec<u32> = (0..rows.count()).map(|_| rng.below(11) as u32).collect();
        let targets: Vec<u32> = (0..rows.count()).map(|_| rng.below(10) as u32).collect();
        let params = Params::from_model(&be, &model);
        let mut grads = Params::zeros_like(&be, &params);
        let mut tape = Tape::new(&be, &params, rows);
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
                &grads.tensors[ti],
                &f,
                &w[ti],
                &idx,
            );
        }
    }
}

//! Every op's backward against central finite differences of the naive f64 reference
//! (`support/reference64.rs`), then the whole model's gradient on tiny configs
//! (`support/gradients.rs`, which also runs it on an opaque-buffer backend).
//!
//! The analytic gradients are f32 (what training uses); the differences are f64 with h = 1e-5,
//! accurate to ~1e-9. Tolerance: max |analytic − fd| ≤ 1e-4 · max(1, max |fd|) (measured errors
//! are printed; the largest is 4.4e-6 relative).

#[path = "support/gradients.rs"]
mod gradients;
#[path = "support/reference64.rs"]
mod reference64;

use gradients::*;
use reference64 as r64;
use tokenformer_core::ops::rotary::RopeTable;
use tokenformer_core::{Rng, ThetaKind};
use tokenformer_train::backend::{Affine, Backend, Dims, Mat, MatMul, Qkv, RopeTables, Theta};
use tokenformer_train::{Cpu, Rows};

#[test]
fn theta_backward_matches_finite_differences() {
    let be = Cpu;
    let mut rng = Rng::new(1);
    let (rows, n) = (4, 9);
    for norm in [
        ThetaKind::L2NormGelu,
        ThetaKind::GeluL2Norm,
        ThetaKind::Softmax,
    ] {
        // scale_n ≠ n is the grown-with-kept-scale case.
        for scale_n in [n, 5] {
            let a = randn(&mut rng, rows * n, 1.5);
            let w = randn(&mut rng, rows * n, 1.0);
            let a = f64s(&f32s(&a));
            let (a32, w32) = (f32s(&a), f32s(&w));
            let mut s = vec![0.0; rows * n];
            let spec = Theta { norm, n, scale_n };
            be.theta_forward(&a32, spec, &mut s);
            let mut da = vec![0.0; rows * n];
            be.theta_backward(&a32, &s, &w32, spec, &mut da);
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
    let dims = Dims {
        rows: Rows {
            batch: 1,
            seq: rows,
        },
        d,
        heads: 1,
    };
    be.layer_norm_forward(&f32s(&x), dims, 1e-5, &mut y, &mut rstd);
    let mut dx = vec![0.0; rows * d];
    be.layer_norm_backward(&y, &rstd, &f32s(&w), dims, &mut dx);
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
    let (gw32, gb32) = (f32s(&gw), f32s(&gb));
    let wb = Affine {
        weight: &gw32,
        bias: &gb32,
    };
    be.affine_norm_forward(&f32s(&x), wb, 1e-5, &mut xhat, &mut rstd, &mut y);
    let (mut dx, mut dw, mut db) = (vec![0.0; rows * d], vec![0.0; d], vec![0.0; d]);
    be.affine_norm_backward(
        &xhat,
        &rstd,
        &f32s(&gw),
        &f32s(&w),
        &mut dx,
        Affine {
            weight: &mut dw,
            bias: &mut db,
        },
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
    let rope = RopeTables::new(&be, &RopeTable::new(rot, 10000.0), seq);
    let dims = Dims {
        rows: Rows { batch, seq },
        d,
        heads: d / hd,
    };
    let x = randn(&mut rng, batch * seq * d, 1.0);
    let w = randn(&mut rng, batch * seq * d, 1.0);
    let mut dx = f32s(&w);
    be.rotary(&mut dx, dims, &rope, true);
    let f = |x: &[f64]| weighted(&w, &r64::rotary(x, seq, d, hd, rot, 10000.0));
    assert_close("rotary", &dx, &f, &x);
}

#[test]
fn attention_backward_matches_finite_differences() {
    let be = Cpu;
    let mut rng = Rng::new(5);
    let (batch, seq, d, heads) = (2, 6, 8, 2);
    let dims = Dims {
        rows: Rows { batch, seq },
        d,
        heads,
    };
    let n = batch * seq * d;
    let q = f64s(&f32s(&randn(&mut rng, n, 1.0)));
    let k = f64s(&f32s(&randn(&mut rng, n, 1.0)));
    let v = f64s(&f32s(&randn(&mut rng, n, 1.0)));
    let w = randn(&mut rng, n, 1.0);
    let (mut out, mut probs) = (vec![0.0; n], vec![0.0; batch * heads * seq * seq]);
    let (q32, k32, v32) = (f32s(&q), f32s(&k), f32s(&v));
    let qkv = || Qkv {
        q: &q32,
        k: &k32,
        v: &v32,
    };
    be.attention_forward(qkv(), dims, &mut out, &mut probs);
    let reference = r64::attention(&q, &k, &v, seq, d, heads);
    let fwd_err = out
        .iter()
        .zip(&reference)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0, f64::max);
    assert!(fwd_err < 1e-5, "attention forward error {fwd_err:e}");
    let (mut dq, mut dk, mut dv) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let dqkv = Qkv {
        q: &mut dq,
        k: &mut dk,
        v: &mut dv,
    };
    be.attention_backward(qkv(), &probs, &f32s(&w), dims, dqkv);
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
                let ma = if ta { Mat::t(&a) } else { Mat::n(&a) };
                let mb = if tb { Mat::t(&b) } else { Mat::n(&b) };
                be.matmul(MatMul { m, n, k }, ma, mb, &mut c, acc);
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

#[test]
fn whole_model_gradient_matches_finite_differences() {
    gradients::whole_model_gradient_matches_finite_differences(&Cpu);
}

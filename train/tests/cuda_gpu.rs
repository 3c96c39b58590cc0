//! The CUDA backend against the CPU backend, on a machine with a GPU: per-op parity forward and
//! backward on odd shapes (max |Δ| / max |reference| ≤ 1e-5), the whole-model gradient check,
//! 20 training steps within 1e-4 of the CPU's losses, bit-identical reruns, and checkpoints
//! resumed across devices. Without a device each test prints `skipped: no CUDA device (...)`
//! and asserts nothing else (it is not a pass: scripts/gpu-check.sh counts it as skipped).
#![cfg(feature = "cuda")]

#[path = "support/gradients.rs"]
mod gradients;
#[path = "support/reference64.rs"]
mod reference64;
#[path = "support/synthetic.rs"]
mod synthetic;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use synthetic::Synthetic;
use tokenformer_core::init::init;
use tokenformer_core::ops::rotary::RopeTable;
use tokenformer_core::{Config, Rng, ThetaKind};
use tokenformer_train::backend::cuda::{CudaBackend, CudaError};
use tokenformer_train::backend::Precision;
use tokenformer_train::backend::{
    AdamStep, Affine, Backend, Dims, Mat, MatMul, Qkv, RopeTables, Rows, Theta,
};
use tokenformer_train::checkpoint;
use tokenformer_train::{BatchSource, Cpu, TrainConfig, Trainer};

/// The backend on device 0, or None after printing why the test is skipped. A machine with a
/// device but a broken toolchain (NVRTC, cuBLAS) fails instead.
fn gpu() -> Option<CudaBackend> {
    match CudaBackend::new(0) {
        Ok(be) => {
            println!("device: {}", be.describe());
            Some(be)
        }
        Err(e @ (CudaError::NoDriver | CudaError::NoDevice(_) | CudaError::BadIndex { .. })) => {
            println!("skipped: no CUDA device ({e})");
            None
        }
        Err(e) => panic!("a CUDA device is present but the backend failed: {e}"),
    }
}

fn rand(rng: &mut Rng, n: usize) -> Vec<f32> {
    gradients::f32s(&gradients::randn(rng, n, 1.0))
}

/// max |Δ| / max |reference| ≤ bound.
fn close(what: &str, cpu: &[f32], gpu: &[f32], bound: f64) {
    assert_eq!(cpu.len(), gpu.len(), "{what}: lengths");
    let scale = cpu
        .iter()
        .fold(0.0f64, |m, &x| m.max(x.abs() as f64))
        .max(1e-30);
    let diff = cpu
        .iter()
        .zip(gpu)
        .fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
    assert!(
        diff / scale <= bound,
        "{what}: max|Δ|/max|ref| = {:e}",
        diff / scale
    );
    println!("ok {what}: {:e}", diff / scale);
}

const OP_BOUND: f64 = 1e-5;

fn mat<B: Backend>(t: bool, buf: &B::Buf) -> Mat<'_, B> {
    if t {
        Mat::t(buf)
    } else {
        Mat::n(buf)
    }
}

#[test]
fn every_op_matches_the_cpu_backend() {
    let Some(g) = gpu() else { return };
    // Fixed odd sizes first (not multiples of 32), then random ones, d past one block (256).
    for (i, shape) in [(2, 7, 30, 3), (1, 33, 68, 2), (3, 5, 10, 1)]
        .into_iter()
        .enumerate()
    {
        ops_match(&g, shape, Rng::new(7 + i as u64));
    }
    let shapes = (1usize..4, 1usize..40, 1usize..5, 1usize..80, any::<u64>())
        .prop_map(|(batch, seq, heads, hd, seed)| ((batch, seq, heads * hd, heads), seed));
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 16,
        ..ProptestConfig::default()
    });
    runner
        .run(&shapes, |(shape, seed)| {
            ops_match(&g, shape, Rng::new(seed));
            Ok(())
        })
        .unwrap();
}

/// Every op on one shape (batch, seq, d, heads), forward and backward, against the CPU backend.
fn ops_match(g: &CudaBackend, shape: (usize, usize, usize, usize), mut rng: Rng) {
    let c = Cpu;
    {
        let (batch, seq, d, heads) = shape;
        let rows = Rows { batch, seq };
        let dims = Dims { rows, d, heads };
        let n = dims.numel();
        let x = rand(&mut rng, n);
        let up = |v: &[f32]| (c.upload(v), g.upload(v));
        let tag = format!("b{batch} t{seq} d{d} h{heads}");

        // Products, every transpose combination.
        let (m, k, nn) = (rows.count(), d, 37);
        let (a, b) = (rand(&mut rng, m * k), rand(&mut rng, k * nn));
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let (ca, ga) = up(&a);
            let (cb, gb) = up(&b);
            let size = MatMul { m, n: nn, k };
            let init = rand(&mut rng, m * nn);
            let (mut cc, mut gc) = up(&init);
            c.matmul(size, mat(ta, &ca), mat(tb, &cb), &mut cc, true);
            g.matmul(size, mat(ta, &ga), mat(tb, &gb), &mut gc, true);
            close(
                &format!("{tag} matmul t{ta}{tb}"),
                &cc,
                &g.download(&gc),
                OP_BOUND,
            );
        }

        // LayerNorm forward and backward.
        let (cx, gx) = up(&x);
        let (mut cy, mut gy) = (c.zeros(n), g.zeros(n));
        let (mut cr, mut gr) = (c.zeros(rows.count()), g.zeros(rows.count()));
        c.layer_norm_forward(&cx, dims, 1e-5, &mut cy, &mut cr);
        g.layer_norm_forward(&gx, dims, 1e-5, &mut gy, &mut gr);
        close(
            &format!("{tag} layer_norm y"),
            &cy,
            &g.download(&gy),
            OP_BOUND,
        );
        close(
            &format!("{tag} layer_norm rstd"),
            &cr,
            &g.download(&gr),
            OP_BOUND,
        );
        let dy = rand(&mut rng, n);
        let (cdy, gdy) = up(&dy);
        let (mut cdx, mut gdx) = (c.zeros(n), g.zeros(n));
        c.layer_norm_backward(&cy, &cr, &cdy, dims, &mut cdx);
        g.layer_norm_backward(&gy, &gr, &gdy, dims, &mut gdx);
        close(
            &format!("{tag} layer_norm dx"),
            &cdx,
            &g.download(&gdx),
            OP_BOUND,
        );

        // Affine LayerNorm forward and backward.
        let (w, bias) = (rand(&mut rng, d), rand(&mut rng, d));
        let ((cw, gw), (cb, gb)) = (up(&w), up(&bias));
        let (mut cxh, mut gxh, mut cy2, mut gy2) = (c.zeros(n), g.zeros(n), c.zeros(n), g.zeros(n));
        c.affine_norm_forward(
            &cx,
            Affine {
                weight: &cw,
                bias: &cb,
            },
            1e-5,
            &mut cxh,
            &mut cr,
            &mut cy2,
        );
        g.affine_norm_forward(
            &gx,
            Affine {
                weight: &gw,
                bias: &gb,
            },
            1e-5,
            &mut gxh,
            &mut gr,
            &mut gy2,
        );
        close(
            &format!("{tag} affine y"),
            &cy2,
            &g.download(&gy2),
            OP_BOUND,
        );
        let (mut cdw, mut gdw, mut cdb, mut gdb) = (c.zeros(d), g.zeros(d), c.zeros(d), g.zeros(d));
        c.affine_norm_backward(
            &cxh,
            &cr,
            &cw,
            &cdy,
            &mut cdx,
            Affine {
                weight: &mut cdw,
                bias: &mut cdb,
            },
        );
        g.affine_norm_backward(
            &gxh,
            &gr,
            &gw,
            &gdy,
            &mut gdx,
            Affine {
                weight: &mut gdw,
                bias: &mut gdb,
            },
        );
        close(
            &format!("{tag} affine dx"),
            &cdx,
            &g.download(&gdx),
            OP_BOUND,
        );
        close(
            &format!("{tag} affine dw"),
            &cdw,
            &g.download(&gdw),
            OP_BOUND,
        );
        close(
            &format!("{tag} affine db"),
            &cdb,
            &g.download(&gdb),
            OP_BOUND,
        );

        // Θ, all three, with a kept scale.
        for norm in [
            ThetaKind::L2NormGelu,
            ThetaKind::GeluL2Norm,
            ThetaKind::Softmax,
        ] {
            let spec = Theta {
                norm,
                n: d,
                scale_n: d / 2 + 1,
            };
            let (mut cs, mut gs) = (c.zeros(n), g.zeros(n));
            c.theta_forward(&cx, spec, &mut cs);
            g.theta_forward(&gx, spec, &mut gs);
            close(
                &format!("{tag} theta {norm} fwd"),
                &cs,
                &g.download(&gs),
                OP_BOUND,
            );
            c.theta_backward(&cx, &cs, &cdy, spec, &mut cdx);
            g.theta_backward(&gx, &gs, &gdy, spec, &mut gdx);
            close(
                &format!("{tag} theta {norm} bwd"),
                &cdx,
                &g.download(&gdx),
                OP_BOUND,
            );
        }

        // Rotary and its inverse.
        let table = RopeTable::new((d / heads) / 2 * 2, 10000.0);
        let (crope, grope) = (
            RopeTables::new(&c, &table, seq),
            RopeTables::new(g, &table, seq),
        );
        for inverse in [false, true] {
            let (mut cr2, mut gr2) = up(&x);
            c.rotary(&mut cr2, dims, &crope, inverse);
            g.rotary(&mut gr2, dims, &grope, inverse);
            close(
                &format!("{tag} rotary inverse={inverse}"),
                &cr2,
                &g.download(&gr2),
                OP_BOUND,
            );
        }

        // Causal attention forward and backward.
        let qkv = Qkv {
            q: rand(&mut rng, n),
            k: rand(&mut rng, n),
            v: rand(&mut rng, n),
        };
        let (cq, gq) = (qkv.clone().map(|v| c.upload(&v)), qkv.map(|v| g.upload(&v)));
        let pn = batch * heads * seq * seq;
        let (mut co, mut go, mut cp, mut gp) = (c.zeros(n), g.zeros(n), c.zeros(pn), g.zeros(pn));
        c.attention_forward(
            Qkv {
                q: &cq.q,
                k: &cq.k,
                v: &cq.v,
            },
            dims,
            &mut co,
            &mut cp,
        );
        g.attention_forward(
            Qkv {
                q: &gq.q,
                k: &gq.k,
                v: &gq.v,
            },
            dims,
            &mut go,
            &mut gp,
        );
        close(
            &format!("{tag} attention out"),
            &co,
            &g.download(&go),
            OP_BOUND,
        );
        close(
            &format!("{tag} attention probs"),
            &cp,
            &g.download(&gp),
            OP_BOUND,
        );
        let mut cd = [c.zeros(n), c.zeros(n), c.zeros(n)];
        let mut gd = [g.zeros(n), g.zeros(n), g.zeros(n)];
        {
            let [a, b, e] = &mut cd;
            c.attention_backward(
                Qkv {
                    q: &cq.q,
                    k: &cq.k,
                    v: &cq.v,
                },
                &cp,
                &cdy,
                dims,
                Qkv { q: a, k: b, v: e },
            );
            let [a, b, e] = &mut gd;
            g.attention_backward(
                Qkv {
                    q: &gq.q,
                    k: &gq.k,
                    v: &gq.v,
                },
                &gp,
                &gdy,
                dims,
                Qkv { q: a, k: b, v: e },
            );
        }
        for (i, name) in ["dq", "dk", "dv"].iter().enumerate() {
            close(
                &format!("{tag} attention {name}"),
                &cd[i],
                &g.download(&gd[i]),
                OP_BOUND,
            );
        }

        // Embedding forward and backward (repeated tokens), cross-entropy, reductions, AdamW.
        let vocab = 13;
        let tokens: Vec<u32> = (0..rows.count())
            .map(|_| rng.below(vocab as u64) as u32)
            .collect();
        let tab = rand(&mut rng, vocab * d);
        let (ct, gt) = up(&tab);
        c.embed_forward(&ct, &tokens, dims, &mut cy);
        g.embed_forward(&gt, &tokens, dims, &mut gy);
        close(&format!("{tag} embed fwd"), &cy, &g.download(&gy), 0.0);
        let (mut cdt, mut gdt) = up(&tab);
        c.embed_backward(&tokens, &cdy, dims, &mut cdt);
        g.embed_backward(&tokens, &gdy, dims, &mut gdt);
        close(
            &format!("{tag} embed bwd"),
            &cdt,
            &g.download(&gdt),
            OP_BOUND,
        );
        let logits = rand(&mut rng, rows.count() * vocab);
        let (cl, gl) = up(&logits);
        let (mut cg, mut gg) = (c.zeros(logits.len()), g.zeros(logits.len()));
        let cls = c.cross_entropy(&cl, &tokens, vocab, 0.25, &mut cg);
        let gls = g.cross_entropy(&gl, &tokens, vocab, 0.25, &mut gg);
        close(
            &format!("{tag} cross_entropy dlogits"),
            &cg,
            &g.download(&gg),
            OP_BOUND,
        );
        let (cls, gls): (Vec<f32>, Vec<f32>) = (
            cls.iter().map(|&v| v as f32).collect(),
            gls.iter().map(|&v| v as f32).collect(),
        );
        close(&format!("{tag} cross_entropy loss"), &cls, &gls, OP_BOUND);
        let (ss_c, ss_g) = (c.sum_squares(&cx), g.sum_squares(&gx));
        assert!(
            (ss_c - ss_g).abs() <= 1e-9 * ss_c,
            "sum_squares {ss_c} vs {ss_g}"
        );
        let (mut cs2, mut gs2) = up(&x);
        c.scale(&mut cs2, 0.37);
        g.scale(&mut gs2, 0.37);
        close(&format!("{tag} scale"), &cs2, &g.download(&gs2), 0.0);
        c.add_assign(&mut cs2, &cx);
        g.add_assign(&mut gs2, &gx);
        close(&format!("{tag} add_assign"), &cs2, &g.download(&gs2), 0.0);
        let step = AdamStep {
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            bias1: 0.19,
            bias2: 0.0975,
        };
        let (mut cm, mut gm) = up(&dy);
        let (mut cv, mut gv) = up(&dy.iter().map(|v| v * v).collect::<Vec<_>>());
        let (mut cpw, mut gpw) = up(&x);
        c.adamw(&mut cpw, &cx, &mut cm, &mut cv, step);
        g.adamw(&mut gpw, &gx, &mut gm, &mut gv, step);
        close(&format!("{tag} adamw p"), &cpw, &g.download(&gpw), OP_BOUND);
    }
}

#[test]
fn whole_model_gradients_match_finite_differences_on_the_gpu() {
    let Some(g) = gpu() else { return };
    gradients::whole_model_gradient_matches_finite_differences(&g);
}

fn tc(steps: u64) -> TrainConfig {
    synthetic::train_config(2, steps)
}

fn losses<B: Backend>(t: &mut Trainer<'_, B>, data: &mut Synthetic, steps: usize) -> Vec<f64> {
    (0..steps).map(|_| t.step(data).unwrap().loss).collect()
}

/// The losses of `steps` steps of the tiny model from a fresh start on `be`.
fn fresh_losses<B: Backend>(be: &B, steps: u64) -> Vec<f64> {
    losses(
        &mut Trainer::new(be, &model(), tc(steps)),
        &mut Synthetic::new(500, 4000, 2),
        steps as usize,
    )
}

fn model() -> tokenformer_core::Model<'static> {
    init(Config::preset("tiny").unwrap(), 4).unwrap()
}

#[test]
fn twenty_steps_match_the_cpu_and_rerun_bit_identically() {
    let Some(g) = gpu() else { return };
    let (cpu, a, b) = (
        fresh_losses(&Cpu, 20),
        fresh_losses(&g, 20),
        fresh_losses(&g, 20),
    );
    for (i, (x, y)) in cpu.iter().zip(&a).enumerate() {
        assert!((x - y).abs() <= 1e-4, "step {i}: cpu {x} gpu {y}");
    }
    assert!(
        a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
        "GPU reruns differ"
    );
}

#[test]
fn checkpoints_resume_across_devices() {
    let Some(g) = gpu() else { return };
    let m = model();
    let straight = fresh_losses(&Cpu, 12);
    // GPU → CPU, then CPU → GPU.
    for first_on_gpu in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut data = Synthetic::new(500, 4000, 2);
        let mut got = if first_on_gpu {
            let mut t = Trainer::new(&g, &m, tc(12));
            let l = losses(&mut t, &mut data, 5);
            checkpoint::save_checkpoint(dir.path(), &t, data.state(), 0).unwrap();
            l
        } else {
            let mut t = Trainer::new(&Cpu, &m, tc(12));
            let l = losses(&mut t, &mut data, 5);
            checkpoint::save_checkpoint(dir.path(), &t, data.state(), 0).unwrap();
            l
        };
        let latest = checkpoint::latest(dir.path()).unwrap().unwrap();
        let mut d2 = Synthetic::new(500, 4000, 2);
        if first_on_gpu {
            let (mut t, state) = checkpoint::load_checkpoint(&Cpu, &latest).unwrap();
            d2.restore(&state).unwrap();
            got.extend(losses(&mut t, &mut d2, 7));
        } else {
            let (mut t, state) = checkpoint::load_checkpoint(&g, &latest).unwrap();
            d2.restore(&state).unwrap();
            got.extend(losses(&mut t, &mut d2, 7));
        }
        for (i, (x, y)) in straight.iter().zip(&got).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4,
                "first_on_gpu={first_on_gpu} step {i}: {x} vs {y}"
            );
        }
    }
}

/// The bf16 backend on device 0, or None after printing why the test is skipped.
fn gpu_bf16() -> Option<CudaBackend> {
    gpu()?;
    Some(CudaBackend::with_precision(0, Precision::Bf16).expect("bf16 backend"))
}

/// x rounded to bfloat16 (nearest, ties to even), as the `to_bf16` kernel rounds.
fn bf16(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let u = x.to_bits();
    f32::from_bits((u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) << 16)
}

#[test]
fn bf16_products_round_only_their_operands() {
    let Some(g) = gpu_bf16() else { return };
    let c = Cpu;
    let mut rng = Rng::new(11);
    for &(m, k, n) in &[(7usize, 30usize, 37usize), (65, 129, 33), (1, 300, 5)] {
        let (a, b) = (rand(&mut rng, m * k), rand(&mut rng, k * n));
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let size = MatMul { m, n, k };
            let mut got = g.zeros(m * n);
            let (ga, gb) = (g.upload(&a), g.upload(&b));
            g.matmul(size, mat(ta, &ga), mat(tb, &gb), &mut got, false);
            let got = g.download(&got);
            // Exact f32 products of the rounded operands, f32 accumulation: close to the CPU's
            // product of the rounded operands ...
            let round = |v: &[f32]| v.iter().map(|&x| bf16(x)).collect::<Vec<_>>();
            let mut want = c.zeros(m * n);
            c.matmul(
                size,
                mat(ta, &round(&a)),
                mat(tb, &round(&b)),
                &mut want,
                false,
            );
            close(
                &format!("bf16 matmul {m}x{k}x{n} t{ta}{tb}"),
                &want,
                &got,
                1e-4,
            );
            // ... and within bf16's rounding of the exact product.
            let mut exact = c.zeros(m * n);
            c.matmul(size, mat(ta, &a), mat(tb, &b), &mut exact, false);
            close(&format!("bf16 vs f32 {m}x{k}x{n}"), &exact, &got, 2e-2);
        }
    }
}

#[test]
fn twenty_bf16_steps_stay_within_2e_2_of_the_cpu() {
    let Some(g) = gpu_bf16() else { return };
    let (cpu, got) = (fresh_losses(&Cpu, 20), fresh_losses(&g, 20));
    for (i, (x, y)) in cpu.iter().zip(&got).enumerate() {
        println!("step {i}: cpu {x:.6} bf16 {y:.6}");
        assert!((x - y).abs() <= 2e-2, "step {i}: cpu {x} bf16 {y}");
    }
}

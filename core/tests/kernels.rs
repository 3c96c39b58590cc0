//! Every dispatched kernel against its scalar reference (`ops`, `formats`), at every kernel level
//! this machine has (printed), at odd and model-sized lengths, single- and multi-threaded; the
//! `scalar` level against the no_std code bit for bit. Bound (the spec's "relative ≤ 1e-6·n"): |fast − reference| ≤ 1e-6 · n · mean|term|,
//! terms being the products summed (their absolute mean, unlike the sum, cannot vanish by
//! cancellation).

use proptest::prelude::*;
use std::sync::Mutex;
use tokenformer_core::formats::{Block, BlockQ4_0, BlockQ8_0, Q8Acts, QK, WEIGHT_FORMATS};
use tokenformer_core::kernels::vector::{self, Dispatch};
use tokenformer_core::kernels::{self, matmul, Level, LevelError};
use tokenformer_core::model::{transpose, Matrix};
use tokenformer_core::ops::attention::causal_attention;
use tokenformer_core::ops::linalg::{self, Scalar, Vector};
use tokenformer_core::{DType, Rng};

/// The level is process-wide: tests that switch it take turns.
static LEVEL_LOCK: Mutex<()> = Mutex::new(());

/// Run `f` at every kernel level this CPU has, then restore the best.
fn at_every_level(mut f: impl FnMut(Level)) {
    let _turn = LEVEL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    for l in kernels::available_levels() {
        kernels::set_level(l).unwrap();
        f(l);
    }
    kernels::set_level(kernels::best_level()).unwrap();
}

/// One row of weights against one row of activations through the dispatched rows-dot.
fn rows_dot_1<B: Block>(w: &[B], x: &[BlockQ8_0]) -> f32 {
    let mut out = [0.0];
    B::rows_dot(
        w,
        w.len(),
        &Q8Acts::from_blocks(x.to_vec(), x.len()),
        &mut out,
    );
    out[0]
}

fn random(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| rng.normal() as f32).collect()
}

/// |got − want| ≤ 1e-6 · n · mean|term|.
fn check(got: f32, want: f32, abs_terms: f64, n: usize, what: &str) {
    let err = (got as f64 - want as f64).abs();
    let bound = 1e-6 * n.max(1) as f64 * abs_terms.max(f64::MIN_POSITIVE);
    assert!(
        err <= bound,
        "{what}: {got} vs {want} (err {err:e}, bound {bound:e})"
    );
}

fn abs_terms(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 * *y as f64).abs())
        .sum::<f64>()
        / a.len().max(1) as f64
}

#[test]
fn prints_levels() {
    let levels: Vec<&str> = kernels::available_levels()
        .iter()
        .map(|l| l.name())
        .collect();
    println!(
        "kernel levels tested: {} (default {})",
        levels.join(", "),
        kernels::best_level()
    );
    at_every_level(|l| println!("quantized dots at {l}: {}", kernels::block_dots()));
}

#[test]
fn unavailable_or_unknown_levels_are_typed_errors() {
    for l in Level::ALL {
        assert_eq!(kernels::set_level(l).is_ok(), l.is_available(), "{l}");
        if !l.is_available() {
            assert_eq!(kernels::set_level(l), Err(LevelError::Unavailable(l)));
        }
    }
    let _turn = LEVEL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    kernels::set_level(kernels::best_level()).unwrap();
    assert_eq!(Level::parse("AVX2"), Some(Level::Avx2));
    assert_eq!(Level::parse("sse"), None);
    assert!(Level::Scalar.is_available());
}

#[test]
fn environment_variable_names_a_level() {
    let _turn = LEVEL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let set = |v: &str| std::env::set_var(kernels::LEVEL_ENV, v);
    set("scalar");
    assert_eq!(kernels::level_from_env(), Ok(Some(Level::Scalar)));
    set("bogus");
    assert_eq!(
        kernels::level_from_env(),
        Err(LevelError::Unknown("bogus".into()))
    );
    set("");
    assert_eq!(kernels::level_from_env(), Ok(None));
    std::env::remove_var(kernels::LEVEL_ENV);
}

/// The `scalar` level runs the no_std code itself: equal bit for bit, not merely close.
#[test]
fn scalar_level_is_the_reference_bit_for_bit() {
    let _turn = LEVEL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    kernels::set_level(Level::Scalar).unwrap();
    let mut rng = Rng::new(17);
    let (k, rows, t) = (96, 7, 3);
    let (w, x) = (random(rows * k, &mut rng), random(t * k, &mut rng));
    assert_eq!(
        Dispatch.dot(&w[..k], &x[..k]).to_bits(),
        linalg::dot(&w[..k], &x[..k]).to_bits()
    );
    let (mut a, mut b) = (vec![0.0; rows * t], vec![0.0; rows * t]);
    vector::rows_dot_f32(&w, &x, k, &mut a);
    linalg::rows_dot(Scalar, &w, &x, k, &mut b);
    assert_eq!(a, b);
    let acts = Q8Acts::quantize(&x, k);
    let m = Matrix::quantize(&w, DType::Q4_0);
    let Matrix::Q4_0(w4) = &m else { unreachable!() };
    BlockQ4_0::rows_dot(w4, k / QK, &acts, &mut a);
    for (r, o) in a.chunks(t).enumerate() {
        for (i, &v) in o.iter().enumerate() {
            let want = BlockQ4_0::dot(&w4[r * 3..(r + 1) * 3], acts.row(i).0);
            assert_eq!(v.to_bits(), want.to_bits());
        }
    }
    let (d, heads, pos0) = (96, 3, 5);
    let kv = random((pos0 + t) * d, &mut rng);
    let (mut a, mut b) = (vec![0.0; t * d], vec![0.0; t * d]);
    causal_attention(Dispatch, &x, &kv, &kv, d, heads, pos0, &mut a);
    causal_attention(Scalar, &x, &kv, &kv, d, heads, pos0, &mut b);
    assert_eq!(a, b);
    kernels::set_level(kernels::best_level()).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn dot_axpy_sum_match_scalar(n in 0usize..300, seed in any::<u64>(), alpha in -3.0f32..3.0) {
        let mut rng = Rng::new(seed);
        let (a, b) = (random(n, &mut rng), random(n, &mut rng));
        at_every_level(|_| {
            check(Dispatch.dot(&a, &b), linalg::dot(&a, &b), abs_terms(&a, &b), n, "dot");
            let mut y1 = b.clone();
            let mut y2 = b.clone();
            Dispatch.axpy(alpha, &a, &mut y1);
            linalg::axpy(alpha, &a, &mut y2);
            for ((p, q), (xi, yi)) in y1.iter().zip(&y2).zip(a.iter().zip(&b)) {
                check(*p, *q, (alpha * xi).abs() as f64 + yi.abs() as f64, 1, "axpy");
            }
            let s: f64 = a.iter().map(|x| *x as f64).sum();
            let sa: f64 = a.iter().map(|x| x.abs() as f64).sum::<f64>() / n.max(1) as f64;
            check(Dispatch.sum(&a), s as f32, sa, n, "sum");
        });
    }

    #[test]
    fn quantized_dots_match_scalar(blocks in 1usize..40, seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let n = blocks * QK;
        let (w, x) = (random(n, &mut rng), random(n, &mut rng));
        let mut xq = vec![BlockQ8_0::default(); blocks];
        BlockQ8_0::quantize_row(&x, &mut xq);
        let mut w8 = vec![BlockQ8_0::default(); blocks];
        BlockQ8_0::quantize_row(&w, &mut w8);
        let mut w4 = vec![BlockQ4_0::default(); blocks];
        BlockQ4_0::quantize_row(&w, &mut w4);
        // Terms: the elementwise products of the dequantized values (n = 32 per block).
        let deq = |b: &Matrix| b.to_f32();
        let (w8d, xd) = (deq(&Matrix::Q8_0(w8.as_slice().into())), deq(&Matrix::Q8_0(xq.as_slice().into())));
        let w4d = deq(&Matrix::Q4_0(w4.as_slice().into()));
        at_every_level(|_| {
            check(rows_dot_1(&w8, &xq), BlockQ8_0::dot(&w8, &xq), abs_terms(&w8d, &xd), n, "q8_0");
            check(rows_dot_1(&w4, &xq), BlockQ4_0::dot(&w4, &xq), abs_terms(&w4d, &xd), n, "q4_0");
        });
    }
}

/// Many weight rows (passes of four and a shorter last one) against 1–3 activation rows through
/// the dispatched rows-dot, each output against `Block::dot` of its pair.
#[test]
fn quantized_rows_dots_match_scalar() {
    let mut rng = Rng::new(23);
    for (rows, blocks, t) in [
        (1usize, 3usize, 1usize),
        (4, 1, 2),
        (7, 5, 3),
        (9, 24, 1),
        (16, 96, 2),
    ] {
        let (n, w) = (blocks * QK, random(rows * blocks * QK, &mut rng));
        let x = random(t * n, &mut rng);
        let acts = Q8Acts::quantize(&x, n);
        let mut w8 = vec![BlockQ8_0::default(); rows * blocks];
        BlockQ8_0::quantize_row(&w, &mut w8);
        let mut w4 = vec![BlockQ4_0::default(); rows * blocks];
        BlockQ4_0::quantize_row(&w, &mut w4);
        let xd = Matrix::Q8_0(acts.blocks.as_slice().into()).to_f32();
        at_every_level(|l| {
            fn each<B: Block>(w: &[B], blocks: usize, acts: &Q8Acts, xd: &[f32], what: &str) {
                let (t, n) = (acts.rows(), blocks * QK);
                let mut out = vec![f32::NAN; w.len() / blocks * t];
                B::rows_dot(w, blocks, acts, &mut out);
                for (r, wr) in w.chunks(blocks).enumerate() {
                    let mut wd = vec![0.0; n];
                    B::dequantize_row(wr, &mut wd);
                    for i in 0..t {
                        let want = B::dot(wr, acts.row(i).0);
                        let terms = abs_terms(&wd, &xd[i * n..(i + 1) * n]);
                        check(out[r * t + i], want, terms, n, what);
                    }
                }
            }
            each(
                &w8,
                blocks,
                &acts,
                &xd,
                &format!("{l} q8_0 {rows}x{n}, t {t}"),
            );
            each(
                &w4,
                blocks,
                &acts,
                &xd,
                &format!("{l} q4_0 {rows}x{n}, t {t}"),
            );
        });
    }
}

/// Extreme quants: −128 in the weights (not produced by our quantizer, but legal in a file) and
/// ±127 everywhere, so maddubs' pairwise i16 sums sit at their limit.
#[test]
fn quantized_dot_extremes() {
    let d = half::f16::from_f32(0.5);
    for (wq, xq) in [
        (-128i8, 127i8),
        (-128, -127),
        (127, 127),
        (-127, 127),
        (127, -127),
    ] {
        let w = vec![BlockQ8_0 { d, qs: [wq; QK] }; 3];
        let x = vec![BlockQ8_0 { d, qs: [xq; QK] }; 3];
        let want = BlockQ8_0::dot(&w, &x);
        assert_eq!(want, 3.0 * 32.0 * wq as f32 * xq as f32 * 0.25);
        let w4 = vec![BlockQ4_0 { d, qs: [0x0f; 16] }; 3]; // −8 and +7
        let want4 = BlockQ4_0::dot(&w4, &x);
        at_every_level(|l| {
            assert_eq!(rows_dot_1(&w, &x), want, "{l}: {wq} · {xq}");
            assert_eq!(rows_dot_1(&w4, &x), want4, "{l}: q4 · {xq}");
        });
    }
}

/// matmul_nt / matmul_values over every format and row count (single rows through the row
/// kernels, blocks through gemm for f32), against f64 products of the same (dequantized)
/// weights and Q8_0-rounded activations.
#[test]
fn products_match_f64() {
    at_every_level(|_| products_match_f64_once());
}

fn products_match_f64_once() {
    let mut rng = Rng::new(5);
    for &(rows, k) in &[(1usize, 32usize), (7, 64), (33, 96), (100, 256), (768, 64)] {
        for t in [1usize, 2, 3, 5, 9] {
            let w = random(rows * k, &mut rng);
            let x = random(t * k, &mut rng);
            for f in WEIGHT_FORMATS {
                let m = Matrix::quantize(&w, f);
                let wd = m.to_f32();
                // The kernels see Q8_0-rounded activations when the weights are quantized.
                let xe = if f == DType::F32 {
                    x.clone()
                } else {
                    Matrix::Q8_0(Q8Acts::quantize(&x, k).blocks.into()).to_f32()
                };
                let mut out = vec![f32::NAN; t * rows];
                matmul::matmul_nt(&m, &x, k, &mut out);
                for i in 0..t {
                    for r in 0..rows {
                        let (a, b) = (&xe[i * k..(i + 1) * k], &wd[r * k..(r + 1) * k]);
                        let want: f64 = a.iter().zip(b).map(|(p, q)| *p as f64 * *q as f64).sum();
                        check(
                            out[i * rows + r],
                            want as f32,
                            abs_terms(a, b),
                            k,
                            "matmul_nt",
                        );
                    }
                }
                // Values: V [n = k, d_out = rows], quantized transposed.
                let v = random(k * rows, &mut rng);
                let vm = if f == DType::F32 {
                    Matrix::quantize(&v, f)
                } else {
                    Matrix::quantize(&transpose(&v, k, rows), f)
                };
                let vd = if f == DType::F32 {
                    vm.to_f32()
                } else {
                    transpose(&vm.to_f32(), rows, k)
                };
                let mut out = vec![f32::NAN; t * rows];
                matmul::matmul_values(&vm, &x, k, rows, &mut out);
                for i in 0..t {
                    for o in 0..rows {
                        let terms: Vec<f64> = (0..k)
                            .map(|j| xe[i * k + j] as f64 * vd[j * rows + o] as f64)
                            .collect();
                        let want: f64 = terms.iter().sum();
                        let at = terms.iter().map(|x| x.abs()).sum::<f64>() / k as f64;
                        check(out[i * rows + o], want as f32, at, k, "matmul_values");
                    }
                }
            }
        }
    }
}

#[test]
fn products_single_and_multi_threaded_agree() {
    at_every_level(|_| products_single_and_multi_threaded_agree_once());
}

fn products_single_and_multi_threaded_agree_once() {
    let mut rng = Rng::new(9);
    let (rows, k, t) = (300, 128, 3);
    let w = random(rows * k, &mut rng);
    let x = random(t * k, &mut rng);
    for f in WEIGHT_FORMATS {
        let m = Matrix::quantize(&w, f);
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut out = vec![0.0; t * rows];
            pool.install(|| matmul::matmul_nt(&m, &x, k, &mut out));
            out
        };
        assert_eq!(
            run(1),
            run(2),
            "{f}: a row's dot does not depend on how rows are split"
        );
        // A decode row's values product (V_P [n = rows, k], or transposed quantized blocks).
        let vm = if f == DType::F32 {
            m.clone()
        } else {
            Matrix::quantize(&transpose(&w, rows, k), f)
        };
        let values = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut out = vec![0.0; k];
            pool.install(|| matmul::matmul_values(&vm, &x[..rows], rows, k, &mut out));
            out
        };
        assert_eq!(values(1), values(2), "{f}: values do not depend on threads");
    }
}

#[test]
fn attention_matches_scalar() {
    at_every_level(|_| attention_matches_scalar_once());
}

fn attention_matches_scalar_once() {
    let mut rng = Rng::new(2);
    for &(d, heads, pos0, t) in &[
        (8usize, 2usize, 0usize, 3usize),
        (64, 4, 5, 1),
        (96, 3, 17, 4),
    ] {
        let q = random(t * d, &mut rng);
        let k = random((pos0 + t) * d, &mut rng);
        let v = random((pos0 + t) * d, &mut rng);
        let mut a = vec![0.0; t * d];
        let mut b = vec![0.0; t * d];
        causal_attention(Dispatch, &q, &k, &v, d, heads, pos0, &mut a);
        causal_attention(Scalar, &q, &k, &v, d, heads, pos0, &mut b);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }
}

/// A prompt block's attention as products (`matmul::causal_attention_block`) against the scalar
/// row-by-row reference: blocks from the first position and after a history, heads of odd and
/// model sizes. Bound: |block − reference| ≤ 1e-6 · n · (1 + |reference|), n the history
/// length (the longest sum; outputs are convex sums of the v rows, |v| ~ 1). The output starts
/// as NaN: every value must be written.
#[test]
fn attention_block_matches_scalar() {
    let mut rng = Rng::new(5);
    for &(d, heads, pos0, t) in &[
        (8usize, 2usize, 0usize, 4usize),
        (96, 3, 17, 5),
        (256, 4, 0, 64),
        (768, 12, 40, 33),
    ] {
        let q = random(t * d, &mut rng);
        let k = random((pos0 + t) * d, &mut rng);
        let v = random((pos0 + t) * d, &mut rng);
        let mut a = vec![f32::NAN; t * d];
        let mut b = vec![0.0; t * d];
        matmul::causal_attention_block(&q, &k, &v, d, heads, pos0, &mut a);
        causal_attention(Scalar, &q, &k, &v, d, heads, pos0, &mut b);
        let tol = 1e-6 * (pos0 + t) as f32;
        for (x, y) in a.iter().zip(&b) {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "{x} vs {y} (d {d}, t {t})"
            );
        }
    }
}

/// The spacing of f32 values at |y| (2^-149 among the subnormals).
fn ulp(y: f64) -> f64 {
    let y = (y.abs() as f32).max(f32::MIN_POSITIVE);
    (f32::from_bits(y.to_bits() + 1) - y) as f64
}

/// Bound: the dispatched erf within 1 ulp of the true erf (f64 `libm::erf`, rounded to f32's
/// spacing at the result) at every level, over [−10, 10] in steps of 2^-12 and the edge values;
/// NaN stays NaN (measured here: libm's `erff` 0.76 ulp, the vector port 0.70).
#[test]
fn erf_within_one_ulp_of_f64() {
    at_every_level(|l| {
        let mut xs: Vec<f32> = (-40960..=40960).map(|i| i as f32 / 4096.0).collect();
        xs.extend([
            0.0,
            -0.0,
            1e-30,
            -1e-30,
            f32::MIN_POSITIVE,
            1e-45,
            -1e-45,
            0.84375,
            1.25,
            1.0 / 0.35,
            2.857_143,
            5.999_999,
            6.0,
            30.0,
            -30.0,
            1e30,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ]);
        let mut got = xs.clone();
        vector::erf(&mut got);
        let mut worst = 0.0f64;
        for (&x, &y) in xs.iter().zip(&got) {
            let want = libm::erf(x as f64);
            let err = (y as f64 - want).abs() / ulp(want);
            worst = worst.max(err);
            assert!(
                err <= 1.0,
                "{l}: erf({x:e}) = {y:e}, want {want:e} ({err} ulp)"
            );
        }
        let mut nan = [f32::NAN, -f32::NAN];
        vector::erf(&mut nan);
        assert!(nan.iter().all(|v| v.is_nan()), "{l}: erf(NaN) = {nan:?}");
        println!("{l}: erf worst {worst:.3} ulp");
    });
}

/// GELU and GELU' at every level against the scalar reference (`ops::activation`), which they
/// follow operation for operation: their only difference is erf's and e^x's (≤ 2 ulp each), so
/// |fast − reference| ≤ 4e-7·max(1, |x|) (GELU' ≤ 1.13, GELU ≤ |x|).
#[test]
fn gelu_and_its_derivative_match_scalar() {
    at_every_level(|l| {
        let xs: Vec<f32> = (-30000..=30000)
            .map(|i| i as f32 / 1000.0)
            .chain([0.0, -0.0, 1e-30, 1e30, -1e30, 90.0, -90.0])
            .collect();
        for f in [1.0f32, 0.7] {
            let (mut a, mut b) = (xs.clone(), xs.clone());
            Dispatch.gelu(f, &mut a);
            Scalar.gelu(f, &mut b);
            let (mut ga, mut gb) = (vec![1.5f32; xs.len()], vec![1.5f32; xs.len()]);
            Dispatch.gelu_grad_mul(f, &xs, &mut ga);
            Scalar.gelu_grad_mul(f, &xs, &mut gb);
            for (i, &x) in xs.iter().enumerate() {
                let bound = 4e-7 * (x.abs() * f).max(1.0);
                let bound_g = 1.5 * 4e-7;
                assert!(
                    (a[i] - b[i]).abs() <= bound,
                    "{l}: GELU({x}·{f}) {} vs {}",
                    a[i],
                    b[i]
                );
                assert!(
                    (ga[i] - gb[i]).abs() <= bound_g,
                    "{l}: GELU'({x}·{f}) {} vs {}",
                    ga[i],
                    gb[i]
                );
            }
        }
        let mut nan = [f32::NAN; 3];
        Dispatch.gelu(1.0, &mut nan);
        assert!(nan.iter().all(|v| v.is_nan()), "{l}");
    });
}

/// Θ forward and backward (every variant, rows of odd and model-sized lengths, an all-zero
/// row) at every level against the scalar reference: relative 1e-6 of the row's largest value.
#[test]
fn theta_matches_scalar() {
    use tokenformer_core::kernels::vector::{theta, theta_backward_row};
    use tokenformer_core::ops::theta as reference;
    use tokenformer_core::ThetaKind;
    at_every_level(|l| {
        let mut rng = Rng::new(5);
        for norm in [
            ThetaKind::L2NormGelu,
            ThetaKind::GeluL2Norm,
            ThetaKind::Softmax,
        ] {
            for &(n, scale_n) in &[(1usize, 1usize), (7, 7), (33, 20), (256, 256), (1024, 1024)] {
                for zero in [false, true] {
                    let a: Vec<f32> = if zero {
                        vec![0.0; n]
                    } else {
                        random(n, &mut rng)
                    };
                    let ds = random(n, &mut rng);
                    let (mut s, mut s_ref) = (a.clone(), a.clone());
                    theta(&mut s, norm, scale_n);
                    reference::theta(&mut s_ref, norm, scale_n);
                    let (mut da, mut da_ref) = (vec![0.0; n], vec![0.0; n]);
                    theta_backward_row(&a, &s_ref, &ds, norm, scale_n, &mut da);
                    reference::theta_backward_row(&a, &s_ref, &ds, norm, scale_n, &mut da_ref);
                    if l == Level::Scalar {
                        assert_eq!((&s, &da), (&s_ref, &da_ref), "scalar is the reference");
                    }
                    for (got, want) in [(&s, &s_ref), (&da, &da_ref)] {
                        let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                        for (x, y) in got.iter().zip(want.iter()) {
                            assert!(
                                (x - y).abs() <= 1e-6 * scale,
                                "{l} {norm:?} n {n}: {x} vs {y}"
                            );
                        }
                    }
                }
            }
        }
    });
}

/// A row's cross-entropy and its gradient at every level against the scalar reference (the
/// levels differ only in e^x, ≤ 2 ulp, and the f64 sum's order): loss within 1e-6·(1 + loss),
/// each gradient within 1e-6 of the gradient scale; logits from tiny to ±80 (the exp's range).
#[test]
fn cross_entropy_matches_scalar() {
    use tokenformer_core::kernels::vector::cross_entropy_row;
    use tokenformer_core::ops::cross_entropy as reference;
    at_every_level(|l| {
        let mut rng = Rng::new(9);
        for &(v, spread) in &[
            (1usize, 1.0f32),
            (7, 3.0),
            (100, 10.0),
            (4096, 1.0),
            (513, 80.0),
        ] {
            let z: Vec<f32> = random(v, &mut rng).iter().map(|x| x * spread).collect();
            let t = v / 2;
            let (mut g, mut g_ref) = (vec![0.0; v], vec![0.0; v]);
            let loss = cross_entropy_row(&z, t, 0.25, &mut g);
            let want = reference::cross_entropy_row(&z, t, 0.25, &mut g_ref);
            if l == Level::Scalar {
                assert_eq!((loss.to_bits(), &g), (want.to_bits(), &g_ref));
            }
            assert!(
                (loss - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "{l} v {v}: {loss} vs {want}"
            );
            for (a, b) in g.iter().zip(&g_ref) {
                assert!((a - b).abs() <= 1e-6 * 0.25, "{l} v {v}: {a} vs {b}");
            }
        }
    });
}

/// Whether this level runs prompt blocks over quantized weights through the integer GEMM, which
/// reproduces the scalar reference bit for bit (AVX-512 with VNNI).
fn integer_gemm_level(l: Level) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        l == Level::Avx512 && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = l;
        false
    }
}

/// Prompt blocks (t ≥ 4 rows) over quantized weights, every level, against the scalar reference
/// `Block::dot` of each (activation row, weight row): odd row counts (panels of 32 weight rows
/// cut short, tiles of 4 activation rows cut short), one and many blocks per row, extreme quants,
/// one and two threads. Bound: `check`'s; the integer GEMM must match exactly.
#[test]
fn prompt_block_products_match_scalar() {
    let mut rng = Rng::new(13);
    let mut cases: Vec<(usize, usize, usize)> = Vec::new();
    for &(rows, k) in &[
        (1usize, 32usize),
        (31, 64),
        (32, 96),
        (33, 32),
        (70, 256),
        (100, 768),
    ] {
        for t in [4usize, 5, 7, 9, 64] {
            cases.push((rows, k, t));
        }
    }
    let pools: Vec<rayon::ThreadPool> = [1, 2]
        .map(|n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        })
        .into();
    at_every_level(|l| {
        for &(rows, k, t) in &cases {
            let w = random(rows * k, &mut rng);
            let x = random(t * k, &mut rng);
            let acts = Q8Acts::quantize(&x, k);
            for f in [DType::Q8_0, DType::Q4_0] {
                let m = Matrix::quantize(&w, f);
                let (xd, wd) = (
                    Matrix::Q8_0(acts.blocks.clone().into()).to_f32(),
                    m.to_f32(),
                );
                for pool in &pools {
                    let mut out = vec![f32::NAN; t * rows];
                    pool.install(|| matmul::matmul_nt(&m, &x, k, &mut out));
                    for i in 0..t {
                        let xb = acts.row(i).0;
                        for r in 0..rows {
                            let rb = k / QK;
                            let want = match &m {
                                Matrix::Q8_0(b) => BlockQ8_0::dot(&b[r * rb..(r + 1) * rb], xb),
                                Matrix::Q4_0(b) => BlockQ4_0::dot(&b[r * rb..(r + 1) * rb], xb),
                                Matrix::F32(_) => unreachable!(),
                            };
                            let got = out[i * rows + r];
                            if integer_gemm_level(l) {
                                assert_eq!(
                                    got.to_bits(),
                                    want.to_bits(),
                                    "{l} {f} [{t}, {k}] × {rows}: ({i}, {r})"
                                );
                            } else {
                                let (a, b) = (&xd[i * k..(i + 1) * k], &wd[r * k..(r + 1) * k]);
                                check(got, want, abs_terms(a, b), k, "prompt block");
                            }
                        }
                    }
                }
            }
        }
    });
}

/// The integer GEMM at the quants' limits: −128 weights (legal in a file), ±127 activations.
#[test]
fn prompt_block_products_at_extremes() {
    let d = half::f16::from_f32(0.5);
    let (rows, t, rb) = (33usize, 5usize, 3usize);
    for (wq, xq) in [(-128i8, 127i8), (-128, -127), (127, 127), (127, -127)] {
        let w = vec![BlockQ8_0 { d, qs: [wq; QK] }; rows * rb];
        let x = vec![BlockQ8_0 { d, qs: [xq; QK] }; t * rb];
        let xf = Matrix::Q8_0(x.clone().into()).to_f32();
        let m = Matrix::Q8_0(w.clone().into());
        let want = BlockQ8_0::dot(&w[..rb], &x[..rb]);
        at_every_level(|l| {
            let mut out = vec![f32::NAN; t * rows];
            matmul::matmul_nt(&m, &xf, rb * QK, &mut out);
            assert!(
                out.iter().all(|&o| o == want),
                "{l}: {wq} · {xq}: {out:?} vs {want}"
            );
        });
    }
}

/// Quantizing activation rows (`Q8Acts::quantize`) at every level gives the scalar reference's
/// blocks bit for bit: random rows at several scales, ties (x·(1/d) landing on k + 0.5), zero
/// blocks, blocks with a NaN or an infinity, and a subnormal scale whose inverse overflows.
#[test]
fn activation_quantization_matches_reference() {
    let mut rng = Rng::new(21);
    let mut rows: Vec<Vec<f32>> = Vec::new();
    for scale in [1e-30f32, 1e-3, 1.0, 1e4] {
        rows.push(random(8 * QK, &mut rng).iter().map(|v| v * scale).collect());
    }
    // Ties: with max|x| = 127 the inverse scale is 1 exactly, so k + 0.5 rounds away from 0.
    rows.push(
        (0..2 * QK)
            .map(|i| {
                if i % QK == 0 {
                    127.0
                } else {
                    (i % 7) as f32 - 3.5
                }
            })
            .collect(),
    );
    rows.push(vec![0.0; QK]);
    let mut special = random(4 * QK, &mut rng);
    special[3] = f32::NAN;
    special[QK + 5] = f32::INFINITY;
    special[2 * QK + 1] = f32::NEG_INFINITY;
    special[3 * QK..].iter_mut().for_each(|v| *v = 1e-44);
    rows.push(special);
    at_every_level(|l| {
        for x in &rows {
            let mut want = vec![BlockQ8_0::default(); x.len() / QK];
            BlockQ8_0::quantize_row(x, &mut want);
            let got = Q8Acts::quantize(x, x.len()).blocks;
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    g.qs == w.qs && g.d.to_bits() == w.d.to_bits(),
                    "{l}: {g:?} vs {w:?}"
                );
            }
        }
    });
}

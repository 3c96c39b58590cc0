//! Every dispatched kernel against its scalar reference (`ops`, `quant`), on the instruction set
//! this machine dispatches to (printed), at odd and model-sized lengths, single- and
//! multi-threaded. Bound (the spec's "relative ≤ 1e-6·n"): |fast − reference| ≤ 1e-6 · n · mean|term|,
//! terms being the products summed (their absolute mean, unlike the sum, cannot vanish by
//! cancellation).

use proptest::prelude::*;
use tokenformer_core::kernels::{attention, matmul, vector};
use tokenformer_core::model::{transpose, Matrix};
use tokenformer_core::ops::{attention as attention_ref, linalg};
use tokenformer_core::quant::{self, BlockQ4_0, BlockQ8_0, Format, Q8Acts, QK};
use tokenformer_core::Rng;

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
fn prints_dispatch() {
    println!(
        "kernels dispatch to: {}",
        tokenformer_core::kernels::instruction_set()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn dot_axpy_sum_match_scalar(n in 0usize..300, seed in any::<u64>(), alpha in -3.0f32..3.0) {
        let mut rng = Rng::new(seed);
        let (a, b) = (random(n, &mut rng), random(n, &mut rng));
        check(vector::dot(&a, &b), linalg::dot(&a, &b), abs_terms(&a, &b), n, "dot");
        let mut y1 = b.clone();
        let mut y2 = b.clone();
        vector::axpy(alpha, &a, &mut y1);
        linalg::axpy(alpha, &a, &mut y2);
        for ((p, q), (xi, yi)) in y1.iter().zip(&y2).zip(a.iter().zip(&b)) {
            check(*p, *q, (alpha * xi).abs() as f64 + yi.abs() as f64, 1, "axpy");
        }
        let s: f64 = a.iter().map(|x| *x as f64).sum();
        let sa: f64 = a.iter().map(|x| x.abs() as f64).sum::<f64>() / n.max(1) as f64;
        check(vector::sum(&a), s as f32, sa, n, "sum");
    }

    #[test]
    fn quantized_dots_match_scalar(blocks in 1usize..40, seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let n = blocks * QK;
        let (w, x) = (random(n, &mut rng), random(n, &mut rng));
        let mut xq = vec![BlockQ8_0::default(); blocks];
        quant::quantize_row_q8_0(&x, &mut xq);
        let mut w8 = vec![BlockQ8_0::default(); blocks];
        quant::quantize_row_q8_0(&w, &mut w8);
        let mut w4 = vec![BlockQ4_0::default(); blocks];
        quant::quantize_row_q4_0(&w, &mut w4);
        // Terms: the elementwise products of the dequantized values (n = 32 per block).
        let deq8 = |b: &[BlockQ8_0]| { let mut v = vec![0.0; n]; quant::dequantize_row_q8_0(b, &mut v); v };
        let (w8d, xd) = (deq8(&w8), deq8(&xq));
        let w4d = { let mut v = vec![0.0; n]; quant::dequantize_row_q4_0(&w4, &mut v); v };
        check(vector::dot_q8_0(&w8, &xq), quant::vec_dot_q8_0_q8_0(&w8, &xq), abs_terms(&w8d, &xd), n, "q8_0");
        check(vector::dot_q4_0(&w4, &xq), quant::vec_dot_q4_0_q8_0(&w4, &xq), abs_terms(&w4d, &xd), n, "q4_0");
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
        let want = quant::vec_dot_q8_0_q8_0(&w, &x);
        assert_eq!(want, 3.0 * 32.0 * wq as f32 * xq as f32 * 0.25);
        assert_eq!(vector::dot_q8_0(&w, &x), want, "{wq} · {xq}");
        let w4 = vec![BlockQ4_0 { d, qs: [0x0f; 16] }; 3]; // −8 and +7
        let want = quant::vec_dot_q4_0_q8_0(&w4, &x);
        assert_eq!(vector::dot_q4_0(&w4, &x), want, "q4 · {xq}");
    }
}

/// matmul_nt / matmul_values over every format and row count (single rows through the row
/// kernels, blocks through gemm for f32), against f64 products of the same (dequantized)
/// weights and Q8_0-rounded activations.
#[test]
fn products_match_f64() {
    let mut rng = Rng::new(5);
    for &(rows, k) in &[(1usize, 32usize), (7, 64), (33, 96), (100, 256), (768, 64)] {
        for t in [1usize, 2, 3, 5, 9] {
            let w = random(rows * k, &mut rng);
            let x = random(t * k, &mut rng);
            for f in Format::ALL {
                let m = Matrix::quantize(&w, f);
                let wd = m.to_f32();
                // The kernels see Q8_0-rounded activations when the weights are quantized.
                let xe = if f == Format::F32 {
                    x.clone()
                } else {
                    let a = Q8Acts::quantize(&x, k);
                    let mut v = vec![0.0; x.len()];
                    quant::dequantize_row_q8_0(&a.blocks, &mut v);
                    v
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
                let vm = if f == Format::F32 {
                    Matrix::quantize(&v, f)
                } else {
                    Matrix::quantize(&transpose(&v, k, rows), f)
                };
                let vd = if f == Format::F32 {
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
    let mut rng = Rng::new(9);
    let (rows, k, t) = (300, 128, 3);
    let w = random(rows * k, &mut rng);
    let x = random(t * k, &mut rng);
    for f in Format::ALL {
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
    }
}

#[test]
fn attention_matches_scalar() {
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
        attention::causal_attention(&q, &k, &v, d, heads, pos0, &mut a);
        attention_ref::causal_attention(&q, &k, &v, d, heads, pos0, &mut b);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }
}

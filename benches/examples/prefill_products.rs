//! The products of a prompt block (150M sizes: d 768, 768 and 3072 parameter tokens) per
//! CPU-second of this thread, every weight format, beside the f32 gemm 512³ (robust to a shared,
//! loaded machine): `cargo run --release -p tokenformer-benches --example prefill_products [T]`.
use tokenformer_core::formats::WEIGHT_FORMATS;
use tokenformer_core::kernels::gemm::{gemm, View};
use tokenformer_core::kernels::{matmul, vector};
use tokenformer_core::model::{transpose, Matrix};
use tokenformer_core::ops::attention::causal_attention;
use tokenformer_core::{DType, Rng};

use tokenformer_benches::{gflops, on_one_thread};

/// Timed calls per product (after one untimed call); the best counts.
const ROUNDS: usize = 5;

fn main() {
    let t: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    on_one_thread(|| {
        let mut rng = Rng::new(1);
        let n = 512;
        let a: Vec<f32> = (0..n * n).map(|_| rng.normal() as f32).collect();
        let mut c = vec![0.0; n * n];
        let g = gflops(ROUNDS, 2.0 * (n * n * n) as f64, || {
            gemm(
                View::rows(&a, n, n, n),
                View::rows(&a, n, n, n),
                &mut c,
                n,
                false,
                1,
            )
        });
        println!("gemm 512³ f32: {g:.1} GFLOP/s per CPU-s");
        let d = 768;
        for tokens in [768usize, 3072] {
            let keys: Vec<f32> = (0..tokens * d)
                .map(|_| rng.normal() as f32 * 0.02)
                .collect();
            let values: Vec<f32> = (0..tokens * d)
                .map(|_| rng.normal() as f32 * 0.02)
                .collect();
            let x: Vec<f32> = (0..t * d).map(|_| rng.normal() as f32).collect();
            let s: Vec<f32> = (0..t * tokens).map(|_| rng.normal() as f32).collect();
            let flops = 2.0 * (t * tokens * d) as f64;
            for f in WEIGHT_FORMATS {
                let km = Matrix::quantize(&keys, f);
                let vm = if f == DType::F32 {
                    Matrix::quantize(&values, f)
                } else {
                    Matrix::quantize(&transpose(&values, tokens, d), f)
                };
                let mut out = vec![0.0; t * tokens];
                let gk = gflops(ROUNDS, flops, || matmul::matmul_nt(&km, &x, d, &mut out));
                let mut out = vec![0.0; t * d];
                let gv = gflops(ROUNDS, flops, || {
                    matmul::matmul_values(&vm, &s, tokens, d, &mut out)
                });
                println!("T {t}, n {tokens:>4}, {f:>5}: keys {gk:5.1}, values {gv:5.1} GFLOP/s per CPU-s");
            }
        }
        // Causal attention of the T-row prompt (12 heads), row by row (the dots the session runs
        // for blocks under 4 rows) and in blocks of `ATTENTION_ROWS` as products (what it runs
        // for prompts): the FLOPs of the causal triangle, 2·(QKᵀ + PV).
        let heads = 12;
        let (q, k) = (
            (0..t * d)
                .map(|_| rng.normal() as f32)
                .collect::<Vec<f32>>(),
            (0..t * d)
                .map(|_| rng.normal() as f32)
                .collect::<Vec<f32>>(),
        );
        let mut out = vec![0.0; t * d];
        let flops = 2.0 * (t * (t + 1)) as f64 * d as f64;
        let rows = gflops(ROUNDS, flops, || {
            causal_attention(vector::Dispatch, &q, &k, &k, d, heads, 0, &mut out)
        });
        let blocks = gflops(ROUNDS, flops, || {
            let block = matmul::ATTENTION_ROWS;
            for (b, o) in out.chunks_mut(block * d).enumerate() {
                let (i0, n) = (b * block, o.len() / d);
                let seen = (i0 + n) * d;
                let qb = &q[i0 * d..seen];
                matmul::causal_attention_block(qb, &k[..seen], &k[..seen], d, heads, i0, o);
            }
        });
        println!("T {t}, attention: rows {rows:5.1}, blocks {blocks:5.1} GFLOP/s per CPU-s");
    });
}

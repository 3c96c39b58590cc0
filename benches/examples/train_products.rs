//! The products of one training step (`train_speed`'s model: d 256, 256 / 1024 parameter
//! tokens, vocab 4096, 2048 rows) as the CPU backend calls them, each operand in the layout the
//! tape passes, in GFLOP per CPU-second of this thread beside gemm 512³ (robust to a shared,
//! loaded machine): `cargo run --release -p tokenformer-benches --example train_products [rows]`.
use tokenformer_benches::{gflops, on_one_thread};
use tokenformer_core::kernels::gemm::gemm_512_flops;
use tokenformer_core::Rng;
use tokenformer_train::backend::{Backend, Mat, MatMul};
use tokenformer_train::Cpu;

/// Timed calls per product (after one untimed call); the best counts.
const ROUNDS: usize = 4;

fn main() {
    let r: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2048);
    on_one_thread(|| {
        let mut rng = Rng::new(1);
        let mut fill = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.normal() as f32).collect() };
        println!("gemm 512³ f32: {:.1} GFLOP/s", gemm_512_flops(1) / 1e9);
        let d = 256;
        // (name, m, n, k, A stored transposed, B stored transposed, accumulate): the tape's
        // products for n parameter tokens (Pattention) and for the vocabulary (logits).
        for n in [256usize, 1024, 4096] {
            let what = if n == 4096 { "logits" } else { "pattention" };
            let products = [
                ("X·Kᵀ (fwd scores)", r, n, d, false, true, false),
                ("Θ·V (fwd out)", r, d, n, false, false, false),
                ("Θᵀ·dO (dV)", n, d, r, true, false, true),
                ("dO·Vᵀ (dΘ)", r, n, d, false, true, false),
                ("dAᵀ·X (dK)", n, d, r, true, false, true),
                ("dA·K (dX)", r, d, n, false, false, false),
            ];
            for (name, m, nn, k, ta, tb, acc) in products {
                if n == 4096 && name.contains('Θ') {
                    continue; // the logits: Z = Y·Eᵀ and its two gradients only
                }
                let (a, b) = (fill(m * k), fill(k * nn));
                let mut c = vec![0.0f32; m * nn];
                let size = MatMul { m, n: nn, k };
                let g = gflops(ROUNDS, 2.0 * (m * nn * k) as f64, || {
                    let ma = Mat::<Cpu> {
                        buf: &a,
                        transposed: ta,
                    };
                    let mb = Mat::<Cpu> {
                        buf: &b,
                        transposed: tb,
                    };
                    Cpu.matmul(size, ma, mb, &mut c, acc)
                });
                println!("{what} n {n:>4}: {name:<18} [{m}×{k}]·[{k}×{nn}] {g:6.1} GFLOP/s");
            }
        }
    });
}

//! Kernel throughput per CPU-second of this thread (robust to a shared, loaded machine):
//! `cargo run --release -p tokenformer-benches --example kspeed`.
use std::time::Instant;
use tokenformer_core::formats::WEIGHT_FORMATS;
use tokenformer_core::kernels::{matmul, vector::Dispatch};
use tokenformer_core::model::Matrix;
use tokenformer_core::ops::linalg::Vector;
use tokenformer_core::{DType, Rng};

use tokenformer_benches::{on_one_thread, thread_cpu_seconds as cpu};

fn main() {
    on_one_thread(|| {
        let mut rng = Rng::new(1);
        let k = 768;
        for rows in [768usize, 768 * 64] {
            let w: Vec<f32> = (0..rows * k).map(|_| rng.normal() as f32 * 0.02).collect();
            let x: Vec<f32> = (0..k).map(|_| rng.normal() as f32).collect();
            let mut out = vec![0.0; rows];
            for f in WEIGHT_FORMATS {
                let m = Matrix::quantize(&w, f);
                let reps = (2e8 as usize / m.bytes()).max(3);
                matmul::matmul_nt(&m, &x, k, &mut out);
                let (c0, t0) = (cpu(), Instant::now());
                for _ in 0..reps {
                    matmul::matmul_nt(&m, &x, k, &mut out);
                }
                let (c, t) = (cpu() - c0, t0.elapsed().as_secs_f64());
                println!(
                    "{rows:>6}x{k} {f:>5}: {:6.2} GB/s per CPU-s, {:6.2} GB/s wall, {:.2} elem/ns per CPU-s",
                    (m.bytes() * reps) as f64 / c / 1e9,
                    (m.bytes() * reps) as f64 / t / 1e9,
                    (rows * k * reps) as f64 / c / 1e9
                );
            }
        }
        // The values product of a decode step, f32 [n, d] (axpy per row) vs transposed blocks.
        let (n, d) = (3072 * 4, 768);
        let v: Vec<f32> = (0..n * d).map(|_| rng.normal() as f32 * 0.02).collect();
        let s: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        let mut out = vec![0.0; d];
        for f in WEIGHT_FORMATS {
            let m = if f == DType::F32 {
                Matrix::quantize(&v, f)
            } else {
                Matrix::quantize(&tokenformer_core::model::transpose(&v, n, d), f)
            };
            let reps = (2e8 as usize / m.bytes()).max(3);
            let c0 = cpu();
            for _ in 0..reps {
                matmul::matmul_values(&m, &s, n, d, &mut out);
            }
            println!(
                "values {n}x{d} {f:>5}: {:6.2} GB/s per CPU-s",
                (m.bytes() * reps) as f64 / (cpu() - c0) / 1e9
            );
        }
        let buf: Vec<f32> = (0..(256usize << 20) / 4).map(|i| i as f32).collect();
        let (c0, t0) = (cpu(), Instant::now());
        let mut s = 0.0;
        for _ in 0..4 {
            s += Dispatch.sum(&buf);
        }
        println!(
            "stream sum: {:.2} GB/s per CPU-s, {:.2} wall ({s})",
            4.0 * 256.0 * 1048576.0 / (cpu() - c0) / 1e9,
            4.0 * 256.0 * 1048576.0 / t0.elapsed().as_secs_f64() / 1e9
        );
    });
}

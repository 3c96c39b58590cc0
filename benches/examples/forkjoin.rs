//! Decode's threading, measured: what one parallel region costs (`par_chunks_mut` over 8 tasks
//! with almost no work), and the f32 values product of one decode row (V_P [n, d] row-major)
//! split three ways on 1 and 2 threads: output columns in 96-column tasks (8 tasks on 2
//! threads), columns in one half per thread, and rows in 128-row blocks with partial sums.
//! `cargo run --release -p tokenformer-benches --example forkjoin`
use rayon::prelude::*;
use std::time::Instant;
use tokenformer_core::kernels::vector::scores_times_values;
use tokenformer_core::Rng;

fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut b = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        f();
        b = b.min(t.elapsed().as_secs_f64());
    }
    b
}

fn main() {
    let mut rng = Rng::new(1);
    let (n, d) = (3072usize, 768usize);
    let v: Vec<f32> = (0..n * d).map(|_| rng.normal() as f32 * 0.02).collect();
    let s: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    println!(
        "load: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut out = vec![0.0f32; d];
            let reps = 20000;
            let t0 = Instant::now();
            for i in 0..reps {
                out.par_chunks_mut(96).for_each(|c| c[0] += i as f32);
            }
            let region = t0.elapsed().as_secs_f64() / reps as f64;
            let by_cols = |cols: usize, out: &mut [f32]| {
                out.fill(0.0);
                out.par_chunks_mut(cols).enumerate().for_each(|(c, o)| {
                    scores_times_values(&s, &v, d, c * cols..c * cols + o.len(), o)
                });
            };
            let cols96 = best(30, || by_cols(96, &mut out));
            let half = best(30, || by_cols(d.div_ceil(threads), &mut out));
            let mut part = vec![0.0f32; n.div_ceil(128) * d];
            let rows = best(30, || {
                part.par_chunks_mut(d).enumerate().for_each(|(b, p)| {
                    p.fill(0.0);
                    let r = b * 128..(b * 128 + 128).min(n);
                    scores_times_values(&s[r.clone()], &v[r.start * d..r.end * d], d, 0..d, p)
                });
                out.fill(0.0);
                for p in part.chunks_exact(d) {
                    out.iter_mut().zip(p).for_each(|(o, x)| *o += x);
                }
            });
            let gb = |t: f64| (n * d * 4) as f64 / t / 1e9;
            println!(
                "{threads} thread(s): empty region {:.2} µs; values {n}x{d} f32: 96-col tasks {:.1} GB/s, column halves {:.1} GB/s, 128-row blocks {:.1} GB/s",
                region * 1e6, gb(cols96), gb(half), gb(rows)
            );
        });
    }
}

//! Criterion benchmarks of the scalar reference kernels at the 150M preset's shapes.
//! Run: `cargo bench -p tokenformer-benches`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tokenformer_core::ops::pattention::pattention;
use tokenformer_core::{Norm, Rng};

fn random(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| rng.normal() as f32 * 0.02).collect()
}

fn bench_pattention(c: &mut Criterion) {
    let mut rng = Rng::new(1);
    let d = 768;
    let mut g = c.benchmark_group("pattention_decode");
    for n in [768usize, 3072] {
        let (x, k, v) = (
            random(d, &mut rng),
            random(n * d, &mut rng),
            random(n * d, &mut rng),
        );
        let mut out = vec![0.0; d];
        g.throughput(Throughput::Bytes((2 * n * d * 4) as u64));
        g.bench_function(format!("d{d}_n{n}"), |b| {
            b.iter(|| pattention(black_box(&x), &k, &v, d, Norm::L2NormGelu, n, &mut out))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_pattention);
criterion_main!(benches);

//! Criterion benchmarks of the kernels at the 150M preset's shapes: each SIMD kernel beside its
//! scalar reference, the quantized row products, and one decode-step Pattention per format.
//! Run: `cargo bench -p tokenformer-benches --bench kernels` (add `-- --quick` for a fast pass).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tokenformer_core::formats::{Block, BlockQ4_0, BlockQ8_0, Q8Acts, QK, WEIGHT_FORMATS};
use tokenformer_core::kernels::{matmul, vector::Dispatch};
use tokenformer_core::model::{transpose, Matrix};
use tokenformer_core::ops::linalg::{self, Vector};
use tokenformer_core::ops::pattention;
use tokenformer_core::{DType, Rng, ThetaKind};

fn random(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| rng.normal() as f32 * 0.02).collect()
}

/// One row dot: scalar reference vs dispatched SIMD, f32 and the two block formats.
fn bench_dots(c: &mut Criterion) {
    let mut rng = Rng::new(1);
    let n = 3072;
    let (a, b) = (random(n, &mut rng), random(n, &mut rng));
    let mut x8 = vec![BlockQ8_0::default(); n / QK];
    BlockQ8_0::quantize_row(&b, &mut x8);
    let mut w8 = vec![BlockQ8_0::default(); n / QK];
    BlockQ8_0::quantize_row(&a, &mut w8);
    let mut w4 = vec![BlockQ4_0::default(); n / QK];
    BlockQ4_0::quantize_row(&a, &mut w4);
    let acts = Q8Acts::from_blocks(x8.clone(), n / QK);
    let mut out = [0.0f32];
    let mut g = c.benchmark_group("dot_3072");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("f32_scalar", |bn| {
        bn.iter(|| linalg::dot(black_box(&a), &b))
    });
    g.bench_function("f32_simd", |bn| bn.iter(|| Dispatch.dot(black_box(&a), &b)));
    g.bench_function("q8_0_scalar", |bn| {
        bn.iter(|| BlockQ8_0::dot(black_box(&w8), &x8))
    });
    g.bench_function("q8_0_simd", |bn| {
        bn.iter(|| BlockQ8_0::rows_dot(black_box(&w8), n / QK, &acts, &mut out))
    });
    g.bench_function("q4_0_scalar", |bn| {
        bn.iter(|| BlockQ4_0::dot(black_box(&w4), &x8))
    });
    g.bench_function("q4_0_simd", |bn| {
        bn.iter(|| BlockQ4_0::rows_dot(black_box(&w4), n / QK, &acts, &mut out))
    });
    g.finish();
}

/// Matrix × one activation row, single thread: [768, 768] fits in L2 (compute speed), [3072, 768]
/// streams from memory for f32 (bandwidth).
fn bench_matvec(c: &mut Criterion) {
    let mut rng = Rng::new(2);
    let k = 768;
    for rows in [768usize, 3072] {
        let w = random(rows * k, &mut rng);
        let x = random(k, &mut rng);
        let mut g = c.benchmark_group(format!("matvec_{rows}x{k}"));
        g.throughput(Throughput::Elements((rows * k) as u64));
        let mut out = vec![0.0; rows];
        g.bench_function("f32_scalar", |bn| {
            bn.iter(|| linalg::matmul_nt(black_box(&x), &w, k, &mut out))
        });
        for f in WEIGHT_FORMATS {
            let m = Matrix::quantize(&w, f);
            g.bench_function(format!("{f}_simd"), |bn| {
                bn.iter(|| matmul::matmul_nt(&m, black_box(&x), k, &mut out))
            });
        }
        let acts = Q8Acts::quantize(&x, k);
        g.bench_function("q8_activation_quantize", |bn| {
            bn.iter(|| Q8Acts::quantize(black_box(&x), k))
        });
        black_box(acts);
        g.finish();
    }
}

/// One decode step of the FFN Pattention (n = 3072, d = 768): scalar reference vs each format.
fn bench_pattention(c: &mut Criterion) {
    let mut rng = Rng::new(3);
    let (d, n) = (768usize, 3072usize);
    let (x, k, v) = (
        random(d, &mut rng),
        random(n * d, &mut rng),
        random(n * d, &mut rng),
    );
    let mut g = c.benchmark_group("pattention_decode_d768_n3072");
    g.throughput(Throughput::Elements((2 * n * d) as u64));
    let mut out = vec![0.0; d];
    g.bench_function("f32_scalar_reference", |bn| {
        bn.iter(|| {
            pattention::pattention(black_box(&x), &k, &v, d, ThetaKind::L2NormGelu, n, &mut out)
        })
    });
    for f in WEIGHT_FORMATS {
        let km = Matrix::quantize(&k, f);
        let vm = if f == DType::F32 {
            Matrix::quantize(&v, f)
        } else {
            Matrix::quantize(&transpose(&v, n, d), f)
        };
        let mut s = vec![0.0; n];
        g.bench_function(format!("{f}_kernels"), |bn| {
            bn.iter(|| {
                matmul::matmul_nt(&km, black_box(&x), d, &mut s);
                pattention::theta(&mut s, ThetaKind::L2NormGelu, n);
                matmul::matmul_values(&vm, &s, n, d, &mut out);
            })
        });
    }
    let mut s = random(n, &mut rng);
    g.bench_function("theta_only", |bn| {
        bn.iter(|| pattention::theta(black_box(&mut s), ThetaKind::L2NormGelu, n))
    });
    g.finish();
}

criterion_group!(benches, bench_dots, bench_matvec, bench_pattention);
criterion_main!(benches);

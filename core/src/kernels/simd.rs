//! The SIMD bodies (std builds): f32 generic over `pulp::Simd`, AVX2 intrinsics for the integer
//! block dots on x86, each entered once per call at the kernel level in force.

use super::gelu;
use super::vector::Kernel;
use super::Level;
use crate::formats::{Block, BlockQ8_0, Q8Acts};
use crate::ops::linalg::{Scalar, Vector};
use pulp::{Arch, Simd, WithSimd};

/// The pulp dispatcher of a (non-scalar, available) level.
fn arch(l: Level) -> Arch {
    match l {
        #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
        Level::Avx512 => pulp::x86::V4::try_new().map_or(Arch::Scalar, Arch::V4),
        #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
        Level::Avx2 => pulp::x86::V3::try_new().map_or(Arch::Scalar, Arch::V3),
        _ => Arch::new(),
    }
}

/// Run a kernel at the level in force: the scalar reference itself, or inside pulp's dispatch.
#[inline(always)]
pub(crate) fn run<K: Kernel>(k: K) -> K::Output {
    struct Op<K>(K);
    impl<K: Kernel> WithSimd for Op<K> {
        type Output = K::Output;
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) -> K::Output {
            self.0.run(SimdVector(simd))
        }
    }
    match super::level() {
        Level::Scalar => k.run(Scalar),
        l => arch(l).dispatch(Op(k)),
    }
}

/// x[i] = erf(x[i]) at the level in force (`libm::erff` at `scalar`).
pub(crate) fn erf(x: &mut [f32]) {
    struct Op<'a>(&'a mut [f32]);
    impl WithSimd for Op<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) {
            gelu::map(
                s,
                self.0,
                #[inline(always)]
                |v| gelu::erf(s, v),
            )
        }
    }
    match super::level() {
        Level::Scalar => x.iter_mut().for_each(|v| *v = libm::erff(*v)),
        l => arch(l).dispatch(Op(x)),
    }
}

/// The [`Vector`] primitive in one instruction set.
#[derive(Clone, Copy)]
struct SimdVector<S>(S);

impl<S: Simd> Vector for SimdVector<S> {
    #[inline(always)]
    fn dot(self, a: &[f32], b: &[f32]) -> f32 {
        dot_s(self.0, a, b)
    }
    #[inline(always)]
    fn axpy(self, alpha: f32, x: &[f32], y: &mut [f32]) {
        axpy_s(self.0, alpha, x, y)
    }
    #[inline(always)]
    fn sum(self, x: &[f32]) -> f32 {
        sum_s(self.0, x)
    }
    #[inline(always)]
    fn gelu(self, f: f32, x: &mut [f32]) {
        let (s, f) = (self.0, self.0.splat_f32s(f));
        gelu::map(
            s,
            x,
            #[inline(always)]
            |v| gelu::gelu(s, s.mul_f32s(v, f)),
        )
    }
    #[inline(always)]
    fn gelu_grad_mul(self, f: f32, a: &[f32], g: &mut [f32]) {
        let (s, f) = (self.0, self.0.splat_f32s(f));
        gelu::zip_map(
            s,
            a,
            g,
            #[inline(always)]
            |x, gi| s.mul_f32s(gi, gelu::gelu_grad(s, s.mul_f32s(x, f))),
        )
    }
    #[inline(always)]
    fn dot_f64(self, a: &[f32], b: &[f32]) -> f64 {
        dot_f64(a, b)
    }
    #[inline(always)]
    fn exp_sum(self, shift: f32, x: &[f32], out: &mut [f32]) -> f64 {
        out.copy_from_slice(x);
        let (s, m) = (self.0, self.0.splat_f32s(shift));
        gelu::map(
            s,
            out,
            #[inline(always)]
            |v| gelu::exp(s, s.sub_f32s(v, m)),
        );
        let mut acc = [0.0f64; 8];
        let (o8, ot) = pulp::as_arrays::<8, _>(out);
        for o in o8 {
            for i in 0..8 {
                acc[i] += o[i] as f64;
            }
        }
        let s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        ot.iter().fold(s, |s, &o| s + o as f64)
    }
}

/// Σ a·b in f64 over eight partial sums (the compiler vectorises it in the caller's instruction
/// set): each product is exact in f64, so only the order of the additions differs from the
/// reference's one running sum.
#[inline(always)]
fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mut acc = [0.0f64; 8];
    let (a8, at) = pulp::as_arrays::<8, _>(a);
    let (b8, bt) = pulp::as_arrays::<8, _>(b);
    for (x, y) in a8.iter().zip(b8) {
        for i in 0..8 {
            acc[i] += x[i] as f64 * y[i] as f64;
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (&x, &y) in at.iter().zip(bt) {
        s += x as f64 * y as f64;
    }
    s
}

// ---------- f32, generic over the instruction set ----------

#[inline(always)]
fn dot_s<S: Simd>(simd: S, a: &[f32], b: &[f32]) -> f32 {
    let (av, at) = S::as_simd_f32s(a);
    let (bv, bt) = S::as_simd_f32s(b);
    let (a4, a1) = pulp::as_arrays::<4, _>(av);
    let (b4, b1) = pulp::as_arrays::<4, _>(bv);
    let z = simd.splat_f32s(0.0);
    let (mut s0, mut s1, mut s2, mut s3) = (z, z, z, z);
    for ([x0, x1, x2, x3], [y0, y1, y2, y3]) in a4.iter().zip(b4) {
        s0 = simd.mul_add_e_f32s(*x0, *y0, s0);
        s1 = simd.mul_add_e_f32s(*x1, *y1, s1);
        s2 = simd.mul_add_e_f32s(*x2, *y2, s2);
        s3 = simd.mul_add_e_f32s(*x3, *y3, s3);
    }
    for (x, y) in a1.iter().zip(b1) {
        s0 = simd.mul_add_e_f32s(*x, *y, s0);
    }
    let s = simd.add_f32s(simd.add_f32s(s0, s1), simd.add_f32s(s2, s3));
    let mut r = simd.reduce_sum_f32s(s);
    for (x, y) in at.iter().zip(bt) {
        r += x * y;
    }
    r
}

#[inline(always)]
fn axpy_s<S: Simd>(simd: S, alpha: f32, x: &[f32], y: &mut [f32]) {
    let (xv, xt) = S::as_simd_f32s(x);
    let (yv, yt) = S::as_mut_simd_f32s(y);
    let a = simd.splat_f32s(alpha);
    for (yi, xi) in yv.iter_mut().zip(xv) {
        *yi = simd.mul_add_e_f32s(a, *xi, *yi);
    }
    for (yi, xi) in yt.iter_mut().zip(xt) {
        *yi += alpha * xi;
    }
}

#[inline(always)]
fn sum_s<S: Simd>(simd: S, x: &[f32]) -> f32 {
    let (xv, xt) = S::as_simd_f32s(x);
    let (x4, x1) = pulp::as_arrays::<4, _>(xv);
    let z = simd.splat_f32s(0.0);
    let (mut s0, mut s1, mut s2, mut s3) = (z, z, z, z);
    for [a, b, c, d] in x4 {
        s0 = simd.add_f32s(s0, *a);
        s1 = simd.add_f32s(s1, *b);
        s2 = simd.add_f32s(s2, *c);
        s3 = simd.add_f32s(s3, *d);
    }
    for a in x1 {
        s0 = simd.add_f32s(s0, *a);
    }
    let s = simd.add_f32s(simd.add_f32s(s0, s1), simd.add_f32s(s2, s3));
    simd.reduce_sum_f32s(s) + xt.iter().sum::<f32>()
}

/// The loop over weight rows and activation rows of a block rows-dot; `dot` gets a weight row
/// and an activation row's blocks, f32 scales and scaled block sums.
#[inline(always)]
fn rows<B>(
    w: &[B],
    row_blocks: usize,
    x: &Q8Acts,
    out: &mut [f32],
    dot: impl Fn(&[B], &[BlockQ8_0], &[f32], &[f32]) -> f32,
) {
    let t = x.rows();
    for (wr, o) in w.chunks_exact(row_blocks).zip(out.chunks_exact_mut(t)) {
        for (i, oi) in o.iter_mut().enumerate() {
            let r = i * row_blocks..(i + 1) * row_blocks;
            *oi = dot(wr, &x.blocks[r.clone()], &x.scales[r.clone()], &x.sums[r]);
        }
    }
}

/// out[r·t + i] = w_r · x_i over quantized weight rows of `row_blocks` blocks and the t
/// activation rows of `x`, at the level in force. Reference: `Block::dot` per pair.
pub(crate) fn rows_dot<B: Block>(w: &[B], row_blocks: usize, x: &Q8Acts, out: &mut [f32]) {
    let level = super::level();
    if level == Level::Scalar {
        return crate::formats::rows_dot_reference(w, row_blocks, x, out);
    }
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return simd.vectorize(
            #[inline(always)]
            || {
                rows(w, row_blocks, x, out, |a, b, d, s| {
                    B::avx2_dot(simd, a, b, d, s)
                })
            },
        );
    }
    struct Op<'a, B>(&'a [B], usize, &'a Q8Acts, &'a mut [f32]);
    impl<B: Block> WithSimd for Op<'_, B> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, _simd: S) {
            let Op(w, rb, x, out) = self;
            rows(w, rb, x, out, |a, b, _, _| B::dot(a, b))
        }
    }
    arch(level).dispatch(Op(w, row_blocks, x, out))
}

#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
pub(crate) mod avx2 {
    use super::*;
    use crate::formats::{f16_to_f32, BlockQ4_0};
    #[cfg(target_arch = "x86")]
    use core::arch::x86::*;
    #[cfg(target_arch = "x86_64")]
    use core::arch::x86_64::*;
    use pulp::x86::V3;

    /// f16 → f32 for every bit pattern (256 KiB, built on first use): one load per block scale
    /// instead of a dozen integer instructions and two branches (the CPU may lack F16C, which
    /// x86-64-v3 does not include). ggml keeps the same table.
    fn f16_table() -> &'static [f32; 1 << 16] {
        static TABLE: std::sync::OnceLock<std::boxed::Box<[f32; 1 << 16]>> =
            std::sync::OnceLock::new();
        TABLE.get_or_init(|| {
            let mut t = std::boxed::Box::new([0.0f32; 1 << 16]);
            for (i, v) in t.iter_mut().enumerate() {
                *v = f16_to_f32(half::f16::from_bits(i as u16));
            }
            t
        })
    }

    #[inline(always)]
    fn h2f(t: &[f32; 1 << 16], h: half::f16) -> f32 {
        t[h.to_bits() as usize]
    }

    /// Σ over 32 lanes of x·y as 8 f32 lanes (ggml's `mul_sum_i8_pairs_float`): maddubs needs an
    /// unsigned operand, so |x| times y with x's sign moved onto y. |x| ≤ 128 and |y| ≤ 127 keep
    /// the pairwise i16 sums from saturating.
    #[inline(always)]
    fn mul_sum_i8(simd: V3, x: __m256i, y: __m256i) -> __m256 {
        let ax = simd.avx2._mm256_sign_epi8(x, x);
        let sy = simd.avx2._mm256_sign_epi8(y, x);
        let dot16 = simd.avx2._mm256_maddubs_epi16(ax, sy);
        let dot32 = simd
            .avx2
            ._mm256_madd_epi16(dot16, simd.avx._mm256_set1_epi16(1));
        simd.avx._mm256_cvtepi32_ps(dot32)
    }

    #[inline(always)]
    fn hsum(simd: V3, v: __m256) -> f32 {
        let lanes: [f32; 8] = pulp::cast(v);
        let _ = simd;
        ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
            + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))
    }

    #[inline(always)]
    pub fn dot_q8_0(simd: V3, w: &[BlockQ8_0], x: &[BlockQ8_0], xd: &[f32], _xs: &[f32]) -> f32 {
        let tab = f16_table();
        let mut acc0 = simd.avx._mm256_setzero_ps();
        let mut acc1 = simd.avx._mm256_setzero_ps();
        let (w2, w1) = pulp::as_arrays::<2, _>(w);
        let (x2, x1) = pulp::as_arrays::<2, _>(x);
        let (d2, d1) = pulp::as_arrays::<2, _>(xd);
        for (([a0, a1], [b0, b1]), [e0, e1]) in w2.iter().zip(x2).zip(d2) {
            prefetch(simd, a0, PREFETCH_AHEAD);
            let q0 = mul_sum_i8(simd, pulp::cast(a0.qs), pulp::cast(b0.qs));
            let q1 = mul_sum_i8(simd, pulp::cast(a1.qs), pulp::cast(b1.qs));
            let s0 = simd.avx._mm256_set1_ps(h2f(tab, a0.d) * e0);
            let s1 = simd.avx._mm256_set1_ps(h2f(tab, a1.d) * e1);
            acc0 = simd.fma._mm256_fmadd_ps(s0, q0, acc0);
            acc1 = simd.fma._mm256_fmadd_ps(s1, q1, acc1);
        }
        for ((a, b), e) in w1.iter().zip(x1).zip(d1) {
            let q = mul_sum_i8(simd, pulp::cast(a.qs), pulp::cast(b.qs));
            let s = simd.avx._mm256_set1_ps(h2f(tab, a.d) * e);
            acc0 = simd.fma._mm256_fmadd_ps(s, q, acc0);
        }
        hsum(simd, simd.avx._mm256_add_ps(acc0, acc1))
    }

    /// 16 bytes of nibbles → 32 unsigned bytes: low nibbles (elements 0..16), then high (16..32).
    #[inline(always)]
    fn unpack_q4(simd: V3, qs: [u8; 16]) -> __m256i {
        let lo: __m128i = pulp::cast(qs);
        let hi = simd.sse2._mm_srli_epi16::<4>(lo);
        let both: __m256i = pulp::cast([lo, hi]);
        simd.avx2
            ._mm256_and_si256(both, simd.avx._mm256_set1_epi8(0x0f))
    }

    /// Σ (q − 8)·y = Σ q·y − 8·Σ y: the nibbles q ∈ 0..=15 are maddubs' unsigned operand as they
    /// are (no sign juggling, 2·15·127 cannot saturate), and Σ y per activation block (`xs`,
    /// scaled by its d) is computed once per activation row, not once per weight row.
    #[inline(always)]
    pub fn dot_q4_0(simd: V3, w: &[BlockQ4_0], x: &[BlockQ8_0], xd: &[f32], xs: &[f32]) -> f32 {
        let tab = f16_table();
        let ones = simd.avx._mm256_set1_epi16(1);
        let mut acc0 = simd.avx._mm256_setzero_ps();
        let mut acc1 = simd.avx._mm256_setzero_ps();
        let mut corr = 0.0f32;
        let (w2, w1) = pulp::as_arrays::<2, _>(w);
        let (x2, x1) = pulp::as_arrays::<2, _>(x);
        let (d2, d1) = pulp::as_arrays::<2, _>(xd);
        let (s2, s1) = pulp::as_arrays::<2, _>(xs);
        let block = |a: &BlockQ4_0, b: &BlockQ8_0| {
            let p = simd
                .avx2
                ._mm256_maddubs_epi16(unpack_q4(simd, a.qs), pulp::cast(b.qs));
            simd.avx
                ._mm256_cvtepi32_ps(simd.avx2._mm256_madd_epi16(p, ones))
        };
        for ((([a0, a1], [b0, b1]), [e0, e1]), [t0, t1]) in w2.iter().zip(x2).zip(d2).zip(s2) {
            prefetch(simd, a0, PREFETCH_AHEAD);
            let (da, db) = (h2f(tab, a0.d), h2f(tab, a1.d));
            acc0 = simd
                .fma
                ._mm256_fmadd_ps(simd.avx._mm256_set1_ps(da * e0), block(a0, b0), acc0);
            acc1 = simd
                .fma
                ._mm256_fmadd_ps(simd.avx._mm256_set1_ps(db * e1), block(a1, b1), acc1);
            corr += da * t0 + db * t1;
        }
        for (((a, b), e), t) in w1.iter().zip(x1).zip(d1).zip(s1) {
            let da = h2f(tab, a.d);
            acc0 = simd
                .fma
                ._mm256_fmadd_ps(simd.avx._mm256_set1_ps(da * e), block(a, b), acc0);
            corr += da * t;
        }
        hsum(simd, simd.avx._mm256_add_ps(acc0, acc1)) - 8.0 * corr
    }

    /// Bytes ahead of the current block that the streaming loops prefetch.
    const PREFETCH_AHEAD: usize = 768;

    /// Ask for the cache line `ahead` bytes past `p` (never faults, even past the slice).
    #[inline(always)]
    fn prefetch<T>(simd: V3, p: &T, ahead: usize) {
        let ptr = (p as *const T).cast::<i8>().wrapping_add(ahead);
        simd.sse._mm_prefetch::<_MM_HINT_T0>(ptr);
    }
}

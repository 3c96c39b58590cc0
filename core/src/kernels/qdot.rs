//! The quantized rows-dots of decode (std builds): weight rows in Q8_0 or Q4_0 against Q8_0
//! activation rows, [`PASS_ROWS`] weight rows per pass, at the kernel level in force:
//!
//! - `avx512` with VNNI: `vpdpbusd`, the four rows interleaved block by block so each activation
//!   block is loaded once for all of them; unsigned weights (Q8_0's q + 128, Q4_0's nibbles)
//!   times the signed activations, each block's sum started at −offset·Σq_x (Σq_x precomputed
//!   per activation block in [`Q8Acts::qsums`]), so every block's integer sum is the
//!   reference's exactly; scales through F16C.
//! - `avx2` (and `avx512` without VNNI): `vpmaddubsw` + `vpmaddwd` (ggml's sign trick for Q8_0),
//!   the rows one after another (interleaving them measured slower there, see `avx2_q8_0`).
//! - `neon`: `sdot` where the CPU has the dot-product extension, `smull` + `sadalp` otherwise;
//!   rows interleaved as for VNNI.
//!
//! The scalar reference is `formats::rows_dot_reference` (`Block::dot` per pair); only the order
//! of the f32 additions of the blocks' scaled sums differs from it.

use super::Level;
use crate::formats::{rows_dot_reference, Block, BlockQ4_0, BlockQ8_0, Pass, Q8Acts, PASS_ROWS};

/// out[r·t + i] = w_r · x_i over weight rows of `row_blocks` blocks and the t activation rows of
/// `x`, at the level in force. Reference: `Block::dot` per pair.
pub(crate) fn rows_dot<B: Block>(w: &[B], row_blocks: usize, x: &Q8Acts, out: &mut [f32]) {
    let pass = match super::level() {
        Level::Scalar => None,
        l => B::simd_pass(l),
    };
    let (Some(pass), rb) = (pass, row_blocks) else {
        return rows_dot_reference(w, row_blocks, x, out);
    };
    if rb == 0 {
        return out.fill(0.0);
    }
    let (t, rows) = (x.rows(), w.len() / rb);
    assert!(x.row_blocks == rb && out.len() >= rows * t);
    for r0 in (0..rows).step_by(PASS_ROWS) {
        // A last group of fewer rows repeats its last row (computed, not stored).
        let n = PASS_ROWS.min(rows - r0);
        let wr: [&[B]; PASS_ROWS] = core::array::from_fn(|j| {
            let r = r0 + j.min(n - 1);
            &w[r * rb..(r + 1) * rb]
        });
        for i in 0..t {
            let b = i * rb..(i + 1) * rb;
            // SAFETY: `simd_pass` chose the pass for the level in force, which this CPU has
            // (`set_level` and the environment check it; VNNI is checked in `Passes::at`).
            let d = unsafe { pass(&wr, &x.blocks[b.clone()], &x.scales[b.clone()], &x.qsums[b]) };
            for (j, &v) in d[..n].iter().enumerate() {
                out[(r0 + j) * t + i] = v;
            }
        }
    }
}

/// A format's passes, one per instruction set it has kernels for.
pub(crate) struct Passes<B: 'static> {
    #[cfg(target_arch = "x86_64")]
    vnni: Pass<B>,
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    avx2: Pass<B>,
    #[cfg(target_arch = "aarch64")]
    neon: Pass<B>,
    #[cfg(target_arch = "aarch64")]
    neon_dot: Pass<B>,
}

/// The instruction set of the passes at a kernel level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// The level has no passes: the reference loop.
    None,
    #[cfg(target_arch = "x86_64")]
    Vnni,
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    Avx2,
    #[cfg(target_arch = "aarch64")]
    Neon,
    #[cfg(target_arch = "aarch64")]
    NeonDot,
}

impl Isa {
    pub(crate) fn at(level: Level) -> Isa {
        match level {
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 if vnni_available() => Isa::Vnni,
            #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
            Level::Avx2 | Level::Avx512 => Isa::Avx2,
            #[cfg(target_arch = "aarch64")]
            Level::Neon if std::arch::is_aarch64_feature_detected!("dotprod") => Isa::NeonDot,
            #[cfg(target_arch = "aarch64")]
            Level::Neon => Isa::Neon,
            _ => Isa::None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Isa::None => "scalar",
            #[cfg(target_arch = "x86_64")]
            Isa::Vnni => "avx512-vnni",
            #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
            Isa::Avx2 => "avx2",
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => "neon",
            #[cfg(target_arch = "aarch64")]
            Isa::NeonDot => "neon-sdot",
        }
    }
}

impl<B> Passes<B> {
    /// The pass for `level`, `None` where the format has none.
    pub(crate) fn at(&self, level: Level) -> Option<Pass<B>> {
        match Isa::at(level) {
            #[cfg(target_arch = "x86_64")]
            Isa::Vnni => Some(self.vnni),
            #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
            Isa::Avx2 => Some(self.avx2),
            #[cfg(target_arch = "aarch64")]
            Isa::NeonDot => Some(self.neon_dot),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => Some(self.neon),
            Isa::None => None,
        }
    }
}

/// Whether the CPU has what the VNNI passes use besides AVX-512F (which the level checked).
#[cfg(target_arch = "x86_64")]
fn vnni_available() -> bool {
    std::is_x86_feature_detected!("avx512vnni")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("f16c")
}

pub(crate) const Q8_0: Passes<BlockQ8_0> = Passes {
    #[cfg(target_arch = "x86_64")]
    vnni: x86::vnni_q8_0,
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    avx2: x86::avx2_q8_0,
    #[cfg(target_arch = "aarch64")]
    neon: arm::q8_0::<false>,
    #[cfg(target_arch = "aarch64")]
    neon_dot: arm::q8_0::<true>,
};

pub(crate) const Q4_0: Passes<BlockQ4_0> = Passes {
    #[cfg(target_arch = "x86_64")]
    vnni: x86::vnni_q4_0,
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    avx2: x86::avx2_q4_0,
    #[cfg(target_arch = "aarch64")]
    neon: arm::q4_0::<false>,
    #[cfg(target_arch = "aarch64")]
    neon_dot: arm::q4_0::<true>,
};

/// The lengths every pass relies on: each weight row, the scales and the sums as long as the
/// activation row.
#[inline(always)]
fn check_lengths<B>(w: &[&[B]; PASS_ROWS], x: &[BlockQ8_0], xd: &[f32], xq: &[i32]) -> usize {
    let rb = x.len();
    assert!(w.iter().all(|r| r.len() == rb) && xd.len() == rb && xq.len() == rb);
    rb
}

#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
mod x86 {
    use super::*;
    use crate::formats::f16_to_f32;
    #[cfg(target_arch = "x86")]
    use core::arch::x86::*;
    #[cfg(target_arch = "x86_64")]
    use core::arch::x86_64::*;
    use pulp::x86::V3;

    /// f16 → f32 for every bit pattern (256 KiB, built on first use) for the AVX2 passes: one
    /// load per block scale instead of a dozen integer instructions and two branches (an AVX2
    /// CPU may lack F16C). ggml keeps the same table.
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

    /// Bytes ahead of each weight row's current block that the x86 passes prefetch. Measured on
    /// the 150M model's decode, one thread, AMD EPYC with AVX-512 VNNI, decode tokens/s (load 2.4,
    /// two runs each): Q8_0 4 KiB 99–101, 8 KiB 129–134, 16 KiB 126–128, 32 KiB 114–123; Q4_0
    /// 172–186, 250–252, 233–239, 218–235 (768 bytes, the distance before the VNNI passes, left
    /// them at a third to a half of that, under load). The AVX2 passes stream one row at a time and keep their
    /// 768 bytes (longer distances did not help them).
    const PREFETCH_Q8_0: usize = 8 << 10;
    const PREFETCH_Q4_0: usize = 8 << 10;
    const PREFETCH_AVX2: usize = 768;

    /// Ask for the cache line `AHEAD` bytes past `p` (never faults, even past the end).
    #[inline(always)]
    fn prefetch<const AHEAD: usize, T>(p: *const T) {
        // SAFETY: prefetch is a hint that never faults; SSE is part of x86-64.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>().wrapping_add(AHEAD));
        }
    }

    // ---------- AVX-512 VNNI ----------

    #[cfg(target_arch = "x86_64")]
    /// The four weight rows' f16 scales of block b times the activation's, as 4 f32.
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    fn scales4(d: [half::f16; PASS_ROWS], xd: f32) -> __m128 {
        let h = _mm_set_epi16(
            0,
            0,
            0,
            0,
            d[3].to_bits() as i16,
            d[2].to_bits() as i16,
            d[1].to_bits() as i16,
            d[0].to_bits() as i16,
        );
        _mm_mul_ps(_mm_cvtph_ps(h), _mm_set1_ps(xd))
    }

    #[cfg(target_arch = "x86_64")]
    /// Σ of each `LANES`-lane group of a zmm: the rows' dots.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn rows_of<const LANES: usize>(acc: &[__m512]) -> [f32; PASS_ROWS] {
        let mut out = [0.0f32; PASS_ROWS];
        for (k, v) in acc.iter().enumerate() {
            let mut lanes = [0.0f32; 16];
            // SAFETY: 16 f32 into an array of 16.
            unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), *v) };
            for (j, g) in lanes.chunks_exact(LANES).enumerate() {
                out[k * 16 / LANES + j] += g.iter().sum::<f32>();
            }
        }
        out
    }

    /// Q8_0: two rows' blocks per zmm (rows 0–1, 2–3), q + 128 as the unsigned operand (Σ(q +
    /// 128)·x − 128·Σx, the correction split as −16·Σx over each row's 8 lanes).
    ///
    /// # Safety
    /// The CPU has AVX-512F/BW, VNNI and F16C.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c,fma")]
    pub(super) unsafe fn vnni_q8_0(
        w: &[&[BlockQ8_0]; PASS_ROWS],
        x: &[BlockQ8_0],
        xd: &[f32],
        xq: &[i32],
    ) -> [f32; PASS_ROWS] {
        let rb = check_lengths(w, x, xd, xq);
        let flip = _mm512_set1_epi8(-128);
        let lo = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
        let hi = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2);
        let mut acc = [_mm512_setzero_ps(); 2];
        for b in 0..rb {
            // SAFETY: b < rb, the length of every slice (check_lengths); loads are unaligned.
            let (blk, xb) = unsafe { (w.map(|r| r.get_unchecked(b)), x.get_unchecked(b)) };
            blk.iter().for_each(|r| prefetch::<PREFETCH_Q8_0, _>(*r));
            // SAFETY: an unaligned load of 32 bytes from a 32-byte array.
            let ld = |q: &[i8; 32]| unsafe { _mm256_loadu_si256(q.as_ptr().cast()) };
            let pair = |a: &BlockQ8_0, c: &BlockQ8_0| {
                _mm512_xor_si512(
                    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(ld(&a.qs)), ld(&c.qs)),
                    flip,
                )
            };
            let xv = _mm512_broadcast_i64x4(ld(&xb.qs));
            // SAFETY: b < rb.
            let (xd, xq) = unsafe { (*xd.get_unchecked(b), *xq.get_unchecked(b)) };
            let bias = _mm512_set1_epi32(-16 * xq);
            let s01 = _mm512_dpbusd_epi32(bias, pair(blk[0], blk[1]), xv);
            let s23 = _mm512_dpbusd_epi32(bias, pair(blk[2], blk[3]), xv);
            let d = _mm512_castps128_ps512(scales4(blk.map(|r| r.d), xd));
            acc[0] = _mm512_fmadd_ps(
                _mm512_cvtepi32_ps(s01),
                _mm512_permutexvar_ps(lo, d),
                acc[0],
            );
            acc[1] = _mm512_fmadd_ps(
                _mm512_cvtepi32_ps(s23),
                _mm512_permutexvar_ps(hi, d),
                acc[1],
            );
        }
        rows_of::<8>(&acc)
    }

    /// Q4_0: the four rows' 16 bytes of nibbles in one zmm (a 128-bit lane per row), low nibbles
    /// (elements 0..16) against the activation's first 16 quants, high against its last 16; the
    /// offset of 8 as −2·Σx over each row's 4 lanes.
    ///
    /// # Safety
    /// The CPU has AVX-512F/BW, VNNI and F16C.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c,fma")]
    pub(super) unsafe fn vnni_q4_0(
        w: &[&[BlockQ4_0]; PASS_ROWS],
        x: &[BlockQ8_0],
        xd: &[f32],
        xq: &[i32],
    ) -> [f32; PASS_ROWS] {
        let rb = check_lengths(w, x, xd, xq);
        let nib = _mm512_set1_epi8(0x0f);
        let spread = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
        // Two accumulators so consecutive blocks' FMAs do not wait on each other.
        let mut acc = [_mm512_setzero_ps(); 2];
        for b in 0..rb {
            // SAFETY: b < rb, the length of every slice (check_lengths); loads are unaligned.
            let (blk, xb) = unsafe { (w.map(|r| r.get_unchecked(b)), x.get_unchecked(b)) };
            if b % 2 == 0 {
                blk.iter().for_each(|r| prefetch::<PREFETCH_Q4_0, _>(*r));
            }
            // SAFETY: an unaligned load of 16 bytes from a 16-byte array.
            let ld = |q: &[u8; 16]| unsafe { _mm_loadu_si128(q.as_ptr().cast()) };
            let q = _mm512_inserti32x4::<3>(
                _mm512_inserti32x4::<2>(
                    _mm512_inserti32x4::<1>(_mm512_castsi128_si512(ld(&blk[0].qs)), ld(&blk[1].qs)),
                    ld(&blk[2].qs),
                ),
                ld(&blk[3].qs),
            );
            let lo = _mm512_and_si512(q, nib);
            let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(q), nib);
            // SAFETY: the activation block's 32 quants, read as two halves.
            let (xlo, xhi) = unsafe {
                (
                    _mm512_broadcast_i32x4(_mm_loadu_si128(xb.qs.as_ptr().cast())),
                    _mm512_broadcast_i32x4(_mm_loadu_si128(xb.qs.as_ptr().add(16).cast())),
                )
            };
            // SAFETY: b < rb.
            let (xd, xq) = unsafe { (*xd.get_unchecked(b), *xq.get_unchecked(b)) };
            let s = _mm512_dpbusd_epi32(_mm512_set1_epi32(-2 * xq), lo, xlo);
            let s = _mm512_dpbusd_epi32(s, hi, xhi);
            let d = _mm512_castps128_ps512(scales4(blk.map(|r| r.d), xd));
            let dv = _mm512_permutexvar_ps(spread, d);
            acc[0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), dv, acc[0]);
            acc.swap(0, 1);
        }
        rows_of::<4>(&[_mm512_add_ps(acc[0], acc[1])])
    }

    // ---------- AVX2 ----------

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
    fn hsum(v: __m256) -> f32 {
        let l: [f32; 8] = pulp::cast(v);
        ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]))
    }

    #[inline(always)]
    fn h2f(t: &[f32; 1 << 16], h: half::f16) -> f32 {
        t[h.to_bits() as usize]
    }

    /// The AVX2 passes stream their four rows one after another with the single-row kernels
    /// they had before the passes (pulp's x86-64-v3 wrappers, two blocks per step): the rows
    /// interleaved block by block as the VNNI passes do, or the same loop written with
    /// `target_feature` intrinsics, measured a quarter to a third slower here for Q8_0.
    ///
    /// # Safety
    /// The CPU has x86-64-v3 (the avx2 and avx512 levels check it).
    pub(super) unsafe fn avx2_q8_0(
        w: &[&[BlockQ8_0]; PASS_ROWS],
        x: &[BlockQ8_0],
        xd: &[f32],
        xq: &[i32],
    ) -> [f32; PASS_ROWS] {
        check_lengths(w, x, xd, xq);
        // SAFETY: the caller's contract.
        let simd = unsafe { V3::new_unchecked() };
        // A plain loop: `array::map`'s closure is not inlined, and outside the vectorized body
        // the intrinsics become calls.
        simd.vectorize(
            #[inline(always)]
            || {
                let mut out = [0.0; PASS_ROWS];
                for (o, r) in out.iter_mut().zip(w) {
                    *o = dot_q8_0(simd, r, x, xd);
                }
                out
            },
        )
    }

    /// # Safety
    /// The CPU has x86-64-v3 (the avx2 and avx512 levels check it).
    pub(super) unsafe fn avx2_q4_0(
        w: &[&[BlockQ4_0]; PASS_ROWS],
        x: &[BlockQ8_0],
        xd: &[f32],
        xq: &[i32],
    ) -> [f32; PASS_ROWS] {
        check_lengths(w, x, xd, xq);
        // SAFETY: the caller's contract.
        let simd = unsafe { V3::new_unchecked() };
        // A plain loop: `array::map`'s closure is not inlined, and outside the vectorized body
        // the intrinsics become calls.
        simd.vectorize(
            #[inline(always)]
            || {
                let mut out = [0.0; PASS_ROWS];
                for (o, r) in out.iter_mut().zip(w) {
                    *o = dot_q4_0(simd, r, x, xd, xq);
                }
                out
            },
        )
    }

    #[inline(always)]
    fn dot_q8_0(simd: V3, w: &[BlockQ8_0], x: &[BlockQ8_0], xd: &[f32]) -> f32 {
        let tab = f16_table();
        let mut acc0 = simd.avx._mm256_setzero_ps();
        let mut acc1 = simd.avx._mm256_setzero_ps();
        let (w2, w1) = pulp::as_arrays::<2, _>(w);
        let (x2, x1) = pulp::as_arrays::<2, _>(x);
        let (d2, d1) = pulp::as_arrays::<2, _>(xd);
        for (([a0, a1], [b0, b1]), [e0, e1]) in w2.iter().zip(x2).zip(d2) {
            prefetch::<PREFETCH_AVX2, _>(a0);
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
        hsum(simd.avx._mm256_add_ps(acc0, acc1))
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
    /// are (2·15·127 cannot saturate); −8·Σy enters each block's i32 sums as −Σy per lane.
    #[inline(always)]
    fn dot_q4_0(simd: V3, w: &[BlockQ4_0], x: &[BlockQ8_0], xd: &[f32], xq: &[i32]) -> f32 {
        let tab = f16_table();
        let ones = simd.avx._mm256_set1_epi16(1);
        let mut acc0 = simd.avx._mm256_setzero_ps();
        let mut acc1 = simd.avx._mm256_setzero_ps();
        let block = |a: &BlockQ4_0, b: &BlockQ8_0, q: i32| {
            let p = simd
                .avx2
                ._mm256_maddubs_epi16(unpack_q4(simd, a.qs), pulp::cast(b.qs));
            let p = simd.avx2._mm256_madd_epi16(p, ones);
            let p = simd
                .avx2
                ._mm256_add_epi32(p, simd.avx._mm256_set1_epi32(-q));
            simd.avx._mm256_cvtepi32_ps(p)
        };
        let (w2, w1) = pulp::as_arrays::<2, _>(w);
        let (x2, x1) = pulp::as_arrays::<2, _>(x);
        let (d2, d1) = pulp::as_arrays::<2, _>(xd);
        let (q2, q1) = pulp::as_arrays::<2, _>(xq);
        for ((([a0, a1], [b0, b1]), [e0, e1]), [t0, t1]) in w2.iter().zip(x2).zip(d2).zip(q2) {
            prefetch::<PREFETCH_AVX2, _>(a0);
            let (da, db) = (h2f(tab, a0.d), h2f(tab, a1.d));
            acc0 = simd.fma._mm256_fmadd_ps(
                simd.avx._mm256_set1_ps(da * e0),
                block(a0, b0, *t0),
                acc0,
            );
            acc1 = simd.fma._mm256_fmadd_ps(
                simd.avx._mm256_set1_ps(db * e1),
                block(a1, b1, *t1),
                acc1,
            );
        }
        for (((a, b), e), t) in w1.iter().zip(x1).zip(d1).zip(q1) {
            let da = h2f(tab, a.d);
            acc0 = simd
                .fma
                ._mm256_fmadd_ps(simd.avx._mm256_set1_ps(da * e), block(a, b, *t), acc0);
        }
        hsum(simd.avx._mm256_add_ps(acc0, acc1))
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::*;
    use crate::formats::f16_to_f32;
    use core::arch::aarch64::*;

    /// acc + Σ of each 4 products a·b into its lane: `sdot` (the dot-product extension, through
    /// asm: its intrinsic is not stable yet) or `smull` + `sadalp`.
    #[inline(always)]
    fn dot4<const SDOT: bool>(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // SAFETY: NEON is part of aarch64; SDOT passes are chosen only where the CPU has dotprod.
        unsafe {
            if SDOT {
                let mut acc = acc;
                core::arch::asm!(
                    ".arch_extension dotprod",
                    "sdot {0:v}.4s, {1:v}.16b, {2:v}.16b",
                    inout(vreg) acc, in(vreg) a, in(vreg) b,
                    options(pure, nomem, nostack),
                );
                acc
            } else {
                let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
                let hi = vmull_high_s8(a, b);
                vpadalq_s16(vpadalq_s16(acc, lo), hi)
            }
        }
    }

    /// The NEON pass over any format: `quants(block)` gives its 32 signed quants as two halves.
    /// Each block's integer sum is exact (|q| ≤ 128, 32 terms), then scaled by both scales.
    #[inline(always)]
    fn pass<B: Block, const SDOT: bool>(
        w: &[&[B]; PASS_ROWS],
        x: &[BlockQ8_0],
        xd: &[f32],
        xq: &[i32],
        quants: impl Fn(&B) -> (int8x16_t, int8x16_t),
        scale: impl Fn(&B) -> half::f16,
    ) -> [f32; PASS_ROWS] {
        let rb = check_lengths(w, x, xd, xq);
        // SAFETY (every intrinsic below): NEON is part of aarch64.
        let mut acc = [unsafe { vdupq_n_f32(0.0) }; PASS_ROWS];
        for b in 0..rb {
            // SAFETY: b < rb, the length of every slice (check_lengths); 16-byte loads.
            let (xl, xh, xd) = unsafe {
                let q = x.get_unchecked(b).qs.as_ptr();
                (vld1q_s8(q), vld1q_s8(q.add(16)), *xd.get_unchecked(b))
            };
            for (a, r) in acc.iter_mut().zip(w) {
                // SAFETY: b < rb.
                let blk = unsafe { r.get_unchecked(b) };
                let (wl, wh) = quants(blk);
                // SAFETY: as above.
                *a = unsafe {
                    let z = vdupq_n_s32(0);
                    let s = dot4::<SDOT>(dot4::<SDOT>(z, wl, xl), wh, xh);
                    vfmaq_n_f32(*a, vcvtq_f32_s32(s), f16_to_f32(scale(blk)) * xd)
                };
            }
        }
        // SAFETY: as above.
        acc.map(|a| unsafe { vaddvq_f32(a) })
    }

    pub(super) unsafe fn q8_0<const SDOT: bool>(
        w: &[&[BlockQ8_0]; PASS_ROWS],
        x: &[BlockQ8_0],
        xd: &[f32],
        xq: &[i32],
    ) -> [f32; PASS_ROWS] {
        pass::<_, SDOT>(
            w,
            x,
            xd,
            xq,
            // SAFETY: two 16-byte loads of the 32 quants.
            |b| unsafe { (vld1q_s8(b.qs.as_ptr()), vld1q_s8(b.qs.as_ptr().add(16))) },
            |b| b.d,
        )
    }

    /// Q4_0's nibbles minus 8 as signed quants (low nibbles are elements 0..16).
    pub(super) unsafe fn q4_0<const SDOT: bool>(
        w: &[&[BlockQ4_0]; PASS_ROWS],
        x: &[BlockQ8_0],
        xd: &[f32],
        xq: &[i32],
    ) -> [f32; PASS_ROWS] {
        pass::<_, SDOT>(
            w,
            x,
            xd,
            xq,
            // SAFETY: one 16-byte load.
            |b| unsafe {
                let q = vld1q_u8(b.qs.as_ptr());
                let eight = vdupq_n_s8(8);
                (
                    vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0f))), eight),
                    vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(q)), eight),
                )
            },
            |b| b.d,
        )
    }
}

//! Q8_0 quantization of activation rows (`formats::Q8Acts::quantize`) with AVX-512: what a
//! prompt block does before its integer GEMM, where the scalar loop (libm's `roundf` per value)
//! took an eighth of a quantized prefill. Bit for bit the reference's (`BlockQ8_0::quantize_row`):
//! the same max|x|, scale, product v · (1/d) and rounding half away from zero, done exactly as
//! trunc(y) ± 1 where |y − trunc(y)| ≥ 0.5 (that difference is exact in f32).

use crate::formats::{BlockQ8_0, QK};
#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;
use half::f16;

/// Quantize `x` into `out` (32 · out.len() values; a shorter rest is ignored, as the reference
/// does) at the level in force; false (nothing written) where that level has no kernel here,
/// for the caller's reference loop.
pub(crate) fn q8_0_rows(x: &[f32], out: &mut [BlockQ8_0]) -> bool {
    assert_eq!(x.len() / QK, out.len());
    #[cfg(target_arch = "x86_64")]
    if super::level() == super::Level::Avx512 {
        for (xb, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
            // SAFETY: the avx512 level is only in force on a CPU with AVX-512F (`set_level`
            // and the environment check it); xb holds 32 values.
            unsafe { q8_0_block(xb, b) };
        }
        return true;
    }
    false
}

/// One block.
///
/// # Safety
/// The CPU has AVX-512F; `x` holds 32 values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn q8_0_block(x: &[f32], b: &mut BlockQ8_0) {
    // SAFETY: the caller's contract bounds both loads and the store.
    unsafe {
        let v = [
            _mm512_loadu_ps(x.as_ptr()),
            _mm512_loadu_ps(x.as_ptr().add(16)),
        ];
        // The reference's max skips NaN; such a (broken) block takes the reference's path.
        if _mm512_cmp_ps_mask(v[0], v[1], _CMP_UNORD_Q) != 0 {
            return <BlockQ8_0 as crate::formats::Block>::quantize_row(x, core::slice::from_mut(b));
        }
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v[0]), _mm512_abs_ps(v[1])));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f16::from_f32(d);
        let (one, half) = (_mm512_set1_ps(1.0), _mm512_set1_ps(0.5));
        for (j, v) in v.into_iter().enumerate() {
            let y = _mm512_mul_ps(v, _mm512_set1_ps(id));
            let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(y);
            let f = _mm512_sub_ps(y, t);
            let up = _mm512_cmp_ps_mask(f, half, _CMP_GE_OQ);
            let down = _mm512_cmp_ps_mask(f, _mm512_set1_ps(-0.5), _CMP_LE_OQ);
            let r = _mm512_mask_add_ps(t, up, t, one);
            let r = _mm512_mask_sub_ps(r, down, r, one);
            // `as i8` saturates (an infinite y, from a subnormal d, gives 127 / −128) and takes
            // NaN (∞ · 0, in a block holding an infinity) to 0.
            let r = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y, y, _CMP_ORD_Q), r);
            let r = _mm512_min_ps(
                _mm512_max_ps(r, _mm512_set1_ps(-128.0)),
                _mm512_set1_ps(127.0),
            );
            let q = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(r));
            _mm_storeu_si128(b.qs.as_mut_ptr().add(16 * j).cast(), q);
        }
    }
}

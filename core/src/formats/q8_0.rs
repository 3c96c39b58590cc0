//! ggml's Q8_0: 32 values as d · q with q in −127..=127 and d = max|x| / 127, in 34 bytes.

use super::{round, Block, QK};
use crate::dtype::DType;
use alloc::vec::Vec;
use half::f16;

/// One Q8_0 block: 32 values in 34 bytes, laid out as ggml's `block_q8_0`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ8_0 {
    /// The scale d = max|x| / 127.
    pub d: f16,
    /// The quants: element i is `d · qs[i]`.
    pub qs: [i8; QK],
}

const _: () = assert!(core::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(core::mem::align_of::<BlockQ8_0>() == 2);

impl Default for BlockQ8_0 {
    fn default() -> Self {
        BlockQ8_0 {
            d: f16::ZERO,
            qs: [0; QK],
        }
    }
}

impl Block for BlockQ8_0 {
    const DTYPE: DType = DType::Q8_0;
    const BYTES: usize = 34;

    fn from_bytes(b: &[u8]) -> Self {
        let mut qs = [0i8; QK];
        for (q, &x) in qs.iter_mut().zip(&b[2..34]) {
            *q = x as i8;
        }
        BlockQ8_0 {
            d: f16::from_le_bytes([b[0], b[1]]),
            qs,
        }
    }

    fn write_bytes(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.d.to_le_bytes());
        out.extend(self.qs.iter().map(|&q| q as u8));
    }

    fn quantize_row(x: &[f32], out: &mut [Self]) {
        debug_assert_eq!(x.len(), out.len() * QK);
        for (xb, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
            let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            b.d = f16::from_f32(d);
            for (q, &v) in b.qs.iter_mut().zip(xb) {
                *q = round(v * id) as i8;
            }
        }
    }

    #[inline(always)]
    fn unpack(&self) -> (f16, [i8; QK]) {
        (self.d, self.qs)
    }

    #[inline(always)]
    fn offset_quads(&self) -> [u32; QK / 4] {
        // q + 128 is q with its sign bit flipped.
        let q = self.qs.map(|v| v as u8);
        let half = |h: usize| {
            u128::from_le_bytes(core::array::from_fn(|j| q[16 * h + j])) ^ (u128::MAX / 255 * 0x80)
        };
        let (lo, hi) = (half(0), half(1));
        core::array::from_fn(|g| ((if g < 4 { lo } else { hi }) >> (32 * (g % 4))) as u32)
    }

    #[cfg(feature = "std")]
    fn simd_pass(level: crate::kernels::Level) -> Option<super::Pass<Self>> {
        crate::kernels::qdot::Q8_0.at(level)
    }
}

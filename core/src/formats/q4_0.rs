//! ggml's Q4_0: 32 values as d · (q − 8) with q in 0..=15 and d = x_m / −8, x_m the value of
//! largest magnitude (sign kept), in 18 bytes. Byte j holds element j in its low nibble, element
//! j + 16 in its high nibble.

use super::{round, Block, QK};
use crate::dtype::DType;
use alloc::vec::Vec;
use half::f16;

/// One Q4_0 block: 32 values in 18 bytes, laid out as ggml's `block_q4_0`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ4_0 {
    /// The scale d.
    pub d: f16,
    /// The 4-bit quants: byte j holds element j (low nibble) and j + 16 (high nibble).
    pub qs: [u8; QK / 2],
}

const _: () = assert!(core::mem::size_of::<BlockQ4_0>() == 18);
const _: () = assert!(core::mem::align_of::<BlockQ4_0>() == 2);

impl Default for BlockQ4_0 {
    fn default() -> Self {
        BlockQ4_0 {
            d: f16::ZERO,
            qs: [0; QK / 2],
        }
    }
}

impl Block for BlockQ4_0 {
    const DTYPE: DType = DType::Q4_0;
    const BYTES: usize = 18;

    fn from_bytes(b: &[u8]) -> Self {
        let mut qs = [0u8; QK / 2];
        qs.copy_from_slice(&b[2..18]);
        BlockQ4_0 {
            d: f16::from_le_bytes([b[0], b[1]]),
            qs,
        }
    }

    fn write_bytes(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.d.to_le_bytes());
        out.extend_from_slice(&self.qs);
    }

    fn quantize_row(x: &[f32], out: &mut [Self]) {
        debug_assert_eq!(x.len(), out.len() * QK);
        for (xb, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
            let mut amax = 0.0f32;
            let mut max = 0.0f32;
            for &v in xb {
                if v.abs() > amax {
                    amax = v.abs();
                    max = v;
                }
            }
            let d = max / -8.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            b.d = f16::from_f32(d);
            let q = |v: f32| (round(v * id) + 8.0).clamp(0.0, 15.0) as u8;
            for j in 0..QK / 2 {
                b.qs[j] = q(xb[j]) | (q(xb[j + QK / 2]) << 4);
            }
        }
    }

    #[inline(always)]
    fn unpack(&self) -> (f16, [i8; QK]) {
        let mut q = [0i8; QK];
        for j in 0..QK / 2 {
            q[j] = (self.qs[j] & 0x0f) as i8 - 8;
            q[j + QK / 2] = (self.qs[j] >> 4) as i8 - 8;
        }
        (self.d, q)
    }

    #[inline(always)]
    fn offset_quads(&self) -> [u32; QK / 4] {
        // Byte j holds element j (low nibble) and j + 16 (high); q + 128 = nibble + 120, which
        // stays inside each byte, so sixteen bytes are added at once.
        let (ones, x) = (u128::MAX / 255, u128::from_le_bytes(self.qs));
        let lo = (x & (ones * 0x0f)) + ones * 120;
        let hi = ((x >> 4) & (ones * 0x0f)) + ones * 120;
        core::array::from_fn(|g| ((if g < 4 { lo } else { hi }) >> (32 * (g % 4))) as u32)
    }

    #[cfg(feature = "std")]
    fn simd_pass(level: crate::kernels::Level) -> Option<super::Pass<Self>> {
        crate::kernels::qdot::Q4_0.at(level)
    }
}

//! Quantized block formats (spec: "Quantized block formats"), one impl of [`Block`] each: ggml's
//! type-trait table, or candle's `GgmlType`.
//!
//! A quantized matrix is a row-major sequence of blocks; each row of `cols` values is `cols / 32`
//! blocks. Weights use Q8_0 or Q4_0; activations are quantized to Q8_0 on the fly so that every
//! product is an integer dot product per block, scaled once by the two blocks' scales.
//!
//! Each format's scalar `dot` is the reference that its SIMD twin (`Block::rows_dot`, in
//! `kernels::simd`) is tested against; the no_std build and the forced `scalar` kernel level run
//! it as is.
//!
//! Adding a format: a module here with its block type and `impl Block`, a row in
//! [`crate::dtype::DType`], and a variant of [`crate::model::Matrix`] (one line in its
//! `each_format!` table).

pub mod q4_0;
pub mod q8_0;

use crate::dtype::DType;
use alloc::borrow::Cow;
use alloc::vec::Vec;

pub use q4_0::BlockQ4_0;
pub use q8_0::BlockQ8_0;

/// Values per block.
pub const QK: usize = 32;

/// The formats a weight matrix may be stored in.
pub const WEIGHT_FORMATS: [DType; 3] = [DType::F32, DType::Q8_0, DType::Q4_0];

/// A block format: its element type, its bytes, its scalar reference and its fast rows-dot.
pub trait Block:
    Copy + Clone + Default + PartialEq + core::fmt::Debug + Send + Sync + 'static
{
    /// The row of the element-type table ([`DType`]) that names this format.
    const DTYPE: DType;
    /// Bytes of one block in a file (the in-memory `repr(C)` size, asserted per format).
    const BYTES: usize;
    /// A block from its `BYTES` bytes in file order (`b` at least that long).
    fn from_bytes(b: &[u8]) -> Self;
    /// Append the block's `BYTES` bytes in file order.
    fn write_bytes(&self, out: &mut Vec<u8>);
    /// Quantize `x` (a multiple of 32 long) into `out`.
    fn quantize_row(x: &[f32], out: &mut [Self]);
    /// The block's scale d and its 32 integer quants q (value i = `d · q[i]`), in element order:
    /// the one statement of the format's values, which dequantization, the reference dot and the
    /// integer GEMM (`kernels::qgemm`) all read.
    fn unpack(&self) -> (half::f16, [i8; QK]);
    /// [`Block::unpack`]'s quants plus 128 as bytes, four to a little-endian u32, in element
    /// order: the unsigned operand of the integer GEMM's `vpdpbusd` (`kernels::qgemm`), which
    /// repacks every weight block of a prompt's products. Formats override it with word
    /// arithmetic (a byte loop here was twice the products' own time).
    fn offset_quads(&self) -> [u32; QK / 4] {
        let q = self.unpack().1;
        core::array::from_fn(|g| {
            u32::from_le_bytes(
                [q[4 * g], q[4 * g + 1], q[4 * g + 2], q[4 * g + 3]].map(|v| v as u8),
            ) ^ 0x8080_8080
        })
    }
    /// Dequantize rows of blocks into `out` (32 values per block).
    fn dequantize_row(blocks: &[Self], out: &mut [f32]) {
        debug_assert_eq!(out.len(), blocks.len() * QK);
        for (b, ob) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
            let (d, q) = b.unpack();
            let d = d.to_f32();
            for (o, &q) in ob.iter_mut().zip(&q) {
                *o = q as f32 * d;
            }
        }
    }
    /// The scalar reference Σ w·x against Q8_0 activations: exact i32 sums per block, scaled by
    /// the two blocks' scales.
    #[inline(always)]
    fn dot(w: &[Self], x: &[BlockQ8_0]) -> f32 {
        debug_assert_eq!(w.len(), x.len());
        let mut sum = 0.0f32;
        for (a, b) in w.iter().zip(x) {
            let (d, q) = a.unpack();
            let qdot: i32 = q
                .iter()
                .zip(&b.qs)
                .map(|(&p, &q)| p as i32 * q as i32)
                .sum();
            sum += qdot as f32 * (d.to_f32() * b.d.to_f32());
        }
        sum
    }
    /// out[r·t + i] = w_r · x_i over weight rows of `row_blocks` blocks and the t activation rows
    /// of `x`, through the kernel level in force (`kernels::level`).
    fn rows_dot(w: &[Self], row_blocks: usize, x: &Q8Acts, out: &mut [f32]) {
        #[cfg(feature = "std")]
        crate::kernels::qdot::rows_dot(w, row_blocks, x, out);
        #[cfg(not(feature = "std"))]
        rows_dot_reference(w, row_blocks, x, out);
    }
    /// The format's SIMD pass (`kernels::qdot`) at a kernel level, `None` where it has none: its
    /// rows-dot then runs the reference loop there.
    #[cfg(feature = "std")]
    #[doc(hidden)]
    fn simd_pass(level: crate::kernels::Level) -> Option<Pass<Self>> {
        let _ = level;
        None
    }
}

/// Weight rows per pass of the SIMD rows-dots: each activation block is loaded once for all of
/// them (and their streams overlap in memory).
pub const PASS_ROWS: usize = 4;

/// One pass of a SIMD rows-dot: [`PASS_ROWS`] weight rows (their blocks) against one activation
/// row (its blocks, f32 scales and Σq per block, all as long as each weight row), giving the
/// PASS_ROWS dots.
///
/// # Safety
/// The CPU has the instruction set the pass was chosen for (`Block::simd_pass`).
#[doc(hidden)]
pub type Pass<B> = unsafe fn(&[&[B]; PASS_ROWS], &[BlockQ8_0], &[f32], &[i32]) -> [f32; PASS_ROWS];

/// Blocks of a quantized tensor: borrowed when aligned on a little-endian target, parsed
/// otherwise. `b.len()` must be a multiple of `B::BYTES` (checked by the loader).
pub fn blocks_from_bytes<B: Block>(b: &[u8]) -> Cow<'_, [B]> {
    if cfg!(target_endian = "little") && b.as_ptr().align_offset(core::mem::align_of::<B>()) == 0 {
        // SAFETY: every block is a repr(C) f16 (u16) and bytes, so every bit pattern is valid and
        // its size is B::BYTES (asserted beside each format); the pointer is aligned for B and
        // the length a multiple of B::BYTES; the slice borrows `b`.
        Cow::Borrowed(unsafe {
            core::slice::from_raw_parts(b.as_ptr().cast::<B>(), b.len() / B::BYTES)
        })
    } else {
        Cow::Owned(b.chunks_exact(B::BYTES).map(B::from_bytes).collect())
    }
}

/// The stored bytes of blocks: the blocks themselves on a little-endian target.
pub fn blocks_to_bytes<B: Block>(b: &[B]) -> Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        // SAFETY: every block is a repr(C) f16 and bytes with no padding (its size is B::BYTES,
        // asserted beside each format), so every byte is initialised and in file order; u8 has
        // no alignment requirement; the slice borrows `b`.
        return Cow::Borrowed(unsafe {
            core::slice::from_raw_parts(b.as_ptr().cast::<u8>(), b.len() * B::BYTES)
        });
    }
    let mut out = alloc::vec::Vec::with_capacity(b.len() * B::BYTES);
    b.iter().for_each(|x| x.write_bytes(&mut out));
    Cow::Owned(out)
}

/// Round half away from zero, as C's `roundf` (ggml's rounding), without std.
#[inline]
fn round(x: f32) -> f32 {
    libm::roundf(x)
}

/// f16 → f32, exact for every input (zero, subnormal, inf and NaN included), without tables or
/// F16C: what the kernels use for the weights' block scales.
/// (F. Giesen's "half_to_float_fast5".)
#[inline(always)]
pub fn f16_to_f32(h: half::f16) -> f32 {
    let h = h.to_bits();
    const SHIFTED_EXP: u32 = 0x7c00 << 13;
    let magic = f32::from_bits(113 << 23);
    let mut o = ((h & 0x7fff) as u32) << 13;
    let exp = SHIFTED_EXP & o;
    o += (127 - 15) << 23;
    if exp == SHIFTED_EXP {
        o += (128 - 16) << 23; // inf / NaN
    } else if exp == 0 {
        o = (f32::from_bits(o + (1 << 23)) - magic).to_bits(); // zero / subnormal
    }
    f32::from_bits(o | ((h & 0x8000) as u32) << 16)
}

/// Rows of activations quantized to Q8_0 for the integer products, with each block's scale d
/// also held as f32 (so the kernels convert only the weights' scales) and Σq (the kernels' offsets
/// — Q4_0's 8, the unsigned operand's 128 — subtracted once per block in exact integers).
#[derive(Clone, Debug, Default)]
pub struct Q8Acts {
    /// The quantized rows, `row_blocks` blocks each.
    pub blocks: Vec<BlockQ8_0>,
    /// Each block's scale d as f32.
    pub scales: Vec<f32>,
    /// Each block's integer sum Σq (exact; Q4_0's offset of 8 per weight is removed with it).
    pub qsums: Vec<i32>,
    /// Blocks per row.
    pub row_blocks: usize,
}

impl Q8Acts {
    /// Quantize rows of `k` values (`k` a multiple of 32).
    pub fn quantize(x: &[f32], k: usize) -> Q8Acts {
        let mut blocks = alloc::vec![BlockQ8_0::default(); x.len() / QK];
        #[cfg(feature = "std")]
        let done = crate::kernels::quantize::q8_0_rows(x, &mut blocks);
        #[cfg(not(feature = "std"))]
        let done = false;
        if !done {
            BlockQ8_0::quantize_row(x, &mut blocks);
        }
        Q8Acts::from_blocks(blocks, k / QK)
    }

    /// Rows of already-quantized blocks, `row_blocks` per row; computes the scales and sums.
    pub fn from_blocks(blocks: Vec<BlockQ8_0>, row_blocks: usize) -> Q8Acts {
        let scales: Vec<f32> = blocks.iter().map(|b| f16_to_f32(b.d)).collect();
        let qsums = blocks
            .iter()
            .map(|b| b.qs.iter().map(|&q| q as i32).sum())
            .collect();
        Q8Acts {
            blocks,
            scales,
            qsums,
            row_blocks,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.blocks.len().checked_div(self.row_blocks).unwrap_or(0)
    }

    /// Row `t`: its blocks and their f32 scales.
    pub fn row(&self, t: usize) -> (&[BlockQ8_0], &[f32]) {
        let r = t * self.row_blocks..(t + 1) * self.row_blocks;
        (&self.blocks[r.clone()], &self.scales[r])
    }
}

/// The rows-dot loop over the scalar reference: what the no_std build and the `scalar` kernel
/// level run for every format.
pub(crate) fn rows_dot_reference<B: Block>(
    w: &[B],
    row_blocks: usize,
    x: &Q8Acts,
    out: &mut [f32],
) {
    let t = x.rows();
    for (wr, o) in w.chunks_exact(row_blocks).zip(out.chunks_exact_mut(t)) {
        for (i, oi) in o.iter_mut().enumerate() {
            *oi = B::dot(wr, x.row(i).0);
        }
    }
}

#[cfg(test)]
mod tests {
    /// Each format's `offset_quads` is its `unpack` quants + 128 (the trait's byte loop).
    #[test]
    fn offset_quads_are_quants_plus_128() {
        let mut rng = crate::Rng::new(5);
        for _ in 0..200 {
            let qs: [u8; 34] = core::array::from_fn(|_| (rng.next_u64() >> 56) as u8);
            fn check<B: Block>(bytes: &[u8]) {
                let b = B::from_bytes(bytes);
                let q = b.unpack().1;
                let want: [u32; QK / 4] = core::array::from_fn(|g| {
                    u32::from_le_bytes(core::array::from_fn(|j| (q[4 * g + j] as i32 + 128) as u8))
                });
                assert_eq!(b.offset_quads(), want, "{:?}", b);
            }
            check::<BlockQ8_0>(&qs);
            check::<BlockQ4_0>(&qs);
        }
    }

    extern crate std;
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use half::f16;

    fn rmse(a: &[f32], b: &[f32]) -> f64 {
        let s: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
            .sum();
        libm::sqrt(s / a.len() as f64)
    }

    /// ggml's test-quantize-fns data: 0.1 + 2·cos(i + offset), smooth and of magnitude ~2.
    fn smooth(n: usize, offset: f32) -> Vec<f32> {
        (0..n)
            .map(|i| 0.1 + 2.0 * libm::cosf(i as f32 + offset))
            .collect()
    }

    /// ggml's `test-quantize-fns` error measure: √(Σ(x − x̂)²) / n (ggml's "rmse" divides the root
    /// by n, not √n), bounded there by 0.002 for every format.
    fn ggml_rmse(a: &[f32], b: &[f32]) -> f64 {
        rmse(a, b) * libm::sqrt(a.len() as f64) / a.len() as f64
    }

    fn round_trip(x: &[f32], f: DType) -> Vec<f32> {
        fn rt<B: Block>(x: &[f32]) -> Vec<f32> {
            let mut b = vec![B::default(); x.len() / QK];
            B::quantize_row(x, &mut b);
            let mut y = vec![0.0; x.len()];
            B::dequantize_row(&b, &mut y);
            y
        }
        match f {
            DType::Q8_0 => rt::<BlockQ8_0>(x),
            _ => rt::<BlockQ4_0>(x),
        }
    }

    /// The spec's bound (ggml's measure and data): ≤ 0.002 on 4096 smooth values.
    #[test]
    fn round_trip_error_within_ggml_bound() {
        for offset in [0.0, 0.5, 1.0] {
            let x = smooth(32 * 128, offset);
            for f in [DType::Q8_0, DType::Q4_0] {
                let e = ggml_rmse(&x, &round_trip(&x, f));
                std::println!(
                    "{f} offset {offset}: ggml rmse {e:.2e}, rmse {:.2e}",
                    rmse(&x, &round_trip(&x, f))
                );
                assert!(e <= 0.002, "{f} offset {offset}: {e}");
            }
        }
    }

    /// Every element is within half a quantization step of its value (plus the f16 rounding of
    /// the scale, at most 127·2⁻¹¹ steps for Q8_0, 8·2⁻¹¹ for Q4_0); Q4_0's clamped element
    /// (+8 → +7) is off by one whole step.
    #[test]
    fn elementwise_error_within_half_a_step() {
        let mut rng = crate::sample::Rng::new(3);
        let x: Vec<f32> = (0..32 * 64)
            .map(|i| rng.normal() as f32 * if i % 97 == 0 { 50.0 } else { 1.0 })
            .collect();
        for f in [DType::Q8_0, DType::Q4_0] {
            let y = round_trip(&x, f);
            for (xb, yb) in x.chunks(QK).zip(y.chunks(QK)) {
                let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let (step, bound) = match f {
                    DType::Q8_0 => (amax / 127.0, 0.5 + 127.0 / 2048.0),
                    _ => (amax / 8.0, 1.0 + 8.0 / 2048.0),
                };
                for (a, b) in xb.iter().zip(yb) {
                    assert!(
                        (a - b).abs() <= bound * step * 1.0001,
                        "{f}: {a} → {b} (step {step})"
                    );
                }
            }
        }
    }

    fn unit_random(n: usize, rng: &mut crate::sample::Rng) -> Vec<f32> {
        let v: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let norm = libm::sqrt(v.iter().map(|x| x * x).sum::<f64>());
        v.iter().map(|x| (x / norm) as f32).collect()
    }

    /// Weights in Q8_0 / Q4_0 times activations quantized to Q8_0, against the exact f64 dot of
    /// the unquantized unit vectors: |error| ≤ 0.02 (spec) for the row lengths models have
    /// (≥ 256; at n = 32 a unit vector's elements are ~0.18 and Q4_0's worst case reaches 0.024).
    #[test]
    fn dot_error_within_bound_on_unit_vectors() {
        let mut rng = crate::sample::Rng::new(11);
        let mut worst = [0.0f64; 2];
        for n in [256usize, 768, 3072] {
            for _ in 0..50 {
                let w = unit_random(n, &mut rng);
                let x = unit_random(n, &mut rng);
                let exact: f64 = w.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
                let mut xq = vec![BlockQ8_0::default(); n / QK];
                BlockQ8_0::quantize_row(&x, &mut xq);
                let mut w8 = vec![BlockQ8_0::default(); n / QK];
                BlockQ8_0::quantize_row(&w, &mut w8);
                let mut w4 = vec![BlockQ4_0::default(); n / QK];
                BlockQ4_0::quantize_row(&w, &mut w4);
                let e8 = (BlockQ8_0::dot(&w8, &xq) as f64 - exact).abs();
                let e4 = (BlockQ4_0::dot(&w4, &xq) as f64 - exact).abs();
                assert!(e8 <= 0.02 && e4 <= 0.02, "n {n}: q8_0 {e8}, q4_0 {e4}");
                worst = [worst[0].max(e8), worst[1].max(e4)];
            }
        }
        std::println!(
            "worst |dot error|: q8_0 {:.2e}, q4_0 {:.2e}",
            worst[0],
            worst[1]
        );
        assert!(
            worst[0] < worst[1] / 4.0,
            "q8_0 should be far more exact than q4_0"
        );
        // ggml's own measure on its smooth data: |error| / n ≤ 0.02.
        let (w, x) = (smooth(4096, 0.0), smooth(4096, 1.0));
        let exact: f64 = w.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
        let mut xq = vec![BlockQ8_0::default(); 128];
        BlockQ8_0::quantize_row(&x, &mut xq);
        let mut w4 = vec![BlockQ4_0::default(); 128];
        BlockQ4_0::quantize_row(&w, &mut w4);
        let e = (BlockQ4_0::dot(&w4, &xq) as f64 - exact).abs() / 4096.0;
        std::println!("ggml measure, q4_0: {e:.2e}");
        assert!(e <= 0.02, "{e}");
    }

    #[test]
    fn q4_0_layout_and_extremes() {
        // x_m = −4 gives d = 0.5 and q = 0; +4 would be q = 16, clamped to 15 (3.5).
        let mut x = [0.0f32; QK];
        x[0] = -4.0;
        x[16] = 4.0;
        x[5] = 0.5;
        let mut b = [BlockQ4_0::default()];
        BlockQ4_0::quantize_row(&x, &mut b);
        assert_eq!(b[0].d.to_f32(), 0.5);
        assert_eq!(b[0].qs[0], 15 << 4, "element 0 → q 0, element 16 → q 15");
        assert_eq!(b[0].qs[5] & 0x0f, 9);
        assert_eq!(b[0].qs[1], 8 | (8 << 4));
        let mut y = [0.0f32; QK];
        BlockQ4_0::dequantize_row(&b, &mut y);
        assert_eq!((y[0], y[16], y[5], y[1]), (-4.0, 3.5, 0.5, 0.0));
    }

    #[test]
    fn zero_block_is_zero() {
        let x = [0.0f32; QK];
        let mut b8 = [BlockQ8_0::default()];
        let mut b4 = [BlockQ4_0::default()];
        BlockQ8_0::quantize_row(&x, &mut b8);
        BlockQ4_0::quantize_row(&x, &mut b4);
        let mut y = [1.0f32; QK];
        BlockQ8_0::dequantize_row(&b8, &mut y);
        assert!(y.iter().all(|&v| v == 0.0));
        BlockQ4_0::dequantize_row(&b4, &mut y);
        assert!(y.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn fast_f16_conversion_is_exact() {
        for bits in 0..=u16::MAX {
            let h = f16::from_bits(bits);
            let (a, b) = (f16_to_f32(h), h.to_f32());
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "{bits:#x}"
            );
        }
    }

    #[test]
    fn bytes_round_trip() {
        let x = smooth(64, 1.0);
        let mut b8 = [BlockQ8_0::default(); 2];
        BlockQ8_0::quantize_row(&x, &mut b8);
        let mut bytes = Vec::new();
        b8.iter().for_each(|b| b.write_bytes(&mut bytes));
        assert_eq!(bytes.len(), 68);
        assert_eq!(BlockQ8_0::from_bytes(&bytes[34..]), b8[1]);
        let mut b4 = [BlockQ4_0::default(); 2];
        BlockQ4_0::quantize_row(&x, &mut b4);
        bytes.clear();
        b4.iter().for_each(|b| b.write_bytes(&mut bytes));
        assert_eq!(bytes.len(), 36);
        assert_eq!(BlockQ4_0::from_bytes(&bytes[18..]), b4[1]);
    }
}

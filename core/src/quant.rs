//! Quantized block formats, defined once: ggml's Q8_0 and Q4_0 (spec: "Quantized block formats").
//!
//! A quantized matrix is a row-major sequence of blocks; each row of `cols` values is `cols / 32`
//! blocks. Weights use Q8_0 or Q4_0; activations are quantized to Q8_0 on the fly so that every
//! product is an integer dot product per block, scaled once by the two blocks' scales.
//!
//! The scalar code here is the reference that the SIMD twins in `kernels::qdot` are tested
//! against; the no_std build runs it as is.

use half::f16;

/// Values per block.
pub const QK: usize = 32;

/// 32 values as d · q with q in −127..=127 and d = max|x| / 127. 34 bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; QK],
}

/// 32 values as d · (q − 8) with q in 0..=15 and d = x_m / −8, x_m the value of largest
/// magnitude (sign kept). Byte j holds element j in its low nibble, element j + 16 in its high
/// nibble. 18 bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; QK / 2],
}

const _: () = assert!(core::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(core::mem::size_of::<BlockQ4_0>() == 18);
const _: () = assert!(core::mem::align_of::<BlockQ8_0>() == 2);
const _: () = assert!(core::mem::align_of::<BlockQ4_0>() == 2);

/// The storage formats a weight matrix may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    F32,
    Q8_0,
    Q4_0,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::F32, Format::Q8_0, Format::Q4_0];

    pub fn name(self) -> &'static str {
        match self {
            Format::F32 => "f32",
            Format::Q8_0 => "q8_0",
            Format::Q4_0 => "q4_0",
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
    }

    /// Bytes of one row of `cols` values (`cols` a multiple of 32 for the block formats).
    pub fn row_bytes(self, cols: usize) -> usize {
        match self {
            Format::F32 => cols * 4,
            Format::Q8_0 => cols / QK * core::mem::size_of::<BlockQ8_0>(),
            Format::Q4_0 => cols / QK * core::mem::size_of::<BlockQ4_0>(),
        }
    }
}

impl core::fmt::Display for Format {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Blocks as raw little-endian bytes and back, for files. `from_bytes` needs `bytes.len()` to be
/// a multiple of the block size (checked by the loader).
pub trait Block: Copy + Clone + Default + 'static {
    const BYTES: usize;
    fn from_bytes(b: &[u8]) -> Self;
    fn write_bytes(&self, out: &mut alloc::vec::Vec<u8>);
}

impl Default for BlockQ8_0 {
    fn default() -> Self {
        BlockQ8_0 {
            d: f16::ZERO,
            qs: [0; QK],
        }
    }
}

impl Default for BlockQ4_0 {
    fn default() -> Self {
        BlockQ4_0 {
            d: f16::ZERO,
            qs: [0; QK / 2],
        }
    }
}

impl Block for BlockQ8_0 {
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
    fn write_bytes(&self, out: &mut alloc::vec::Vec<u8>) {
        out.extend_from_slice(&self.d.to_le_bytes());
        out.extend(self.qs.iter().map(|&q| q as u8));
    }
}

impl Block for BlockQ4_0 {
    const BYTES: usize = 18;
    fn from_bytes(b: &[u8]) -> Self {
        let mut qs = [0u8; QK / 2];
        qs.copy_from_slice(&b[2..18]);
        BlockQ4_0 {
            d: f16::from_le_bytes([b[0], b[1]]),
            qs,
        }
    }
    fn write_bytes(&self, out: &mut alloc::vec::Vec<u8>) {
        out.extend_from_slice(&self.d.to_le_bytes());
        out.extend_from_slice(&self.qs);
    }
}

/// Round half away from zero, as C's `roundf` (ggml's rounding), without std.
#[inline]
fn round(x: f32) -> f32 {
    libm::roundf(x)
}

/// Quantize `x` (a multiple of 32 long) into Q8_0 blocks.
pub fn quantize_row_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
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

pub fn dequantize_row_q8_0(blocks: &[BlockQ8_0], out: &mut [f32]) {
    debug_assert_eq!(out.len(), blocks.len() * QK);
    for (b, ob) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        for (o, &q) in ob.iter_mut().zip(&b.qs) {
            *o = q as f32 * d;
        }
    }
}

/// Quantize `x` (a multiple of 32 long) into Q4_0 blocks.
pub fn quantize_row_q4_0(x: &[f32], out: &mut [BlockQ4_0]) {
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

pub fn dequantize_row_q4_0(blocks: &[BlockQ4_0], out: &mut [f32]) {
    debug_assert_eq!(out.len(), blocks.len() * QK);
    for (b, ob) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        for j in 0..QK / 2 {
            ob[j] = ((b.qs[j] & 0x0f) as i32 - 8) as f32 * d;
            ob[j + QK / 2] = ((b.qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// Σ w·x over Q8_0 rows: per block an exact i32 dot of the quants, scaled by d_w·d_x.
pub fn vec_dot_q8_0_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    debug_assert_eq!(w.len(), x.len());
    let mut sum = 0.0f32;
    for (a, b) in w.iter().zip(x) {
        let mut s = 0i32;
        for (&p, &q) in a.qs.iter().zip(&b.qs) {
            s += p as i32 * q as i32;
        }
        sum += s as f32 * (a.d.to_f32() * b.d.to_f32());
    }
    sum
}

/// Σ w·x with Q4_0 weights and Q8_0 activations.
pub fn vec_dot_q4_0_q8_0(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    debug_assert_eq!(w.len(), x.len());
    let mut sum = 0.0f32;
    for (a, b) in w.iter().zip(x) {
        let mut s = 0i32;
        for j in 0..QK / 2 {
            let lo = (a.qs[j] & 0x0f) as i32 - 8;
            let hi = (a.qs[j] >> 4) as i32 - 8;
            s += lo * b.qs[j] as i32 + hi * b.qs[j + QK / 2] as i32;
        }
        sum += s as f32 * (a.d.to_f32() * b.d.to_f32());
    }
    sum
}

/// f16 → f32, exact for every input (zero, subnormal, inf and NaN included), without tables or
/// F16C: what the kernels use for the weights' block scales.
/// (F. Giesen's "half_to_float_fast5".)
#[inline(always)]
pub fn f16_to_f32(h: f16) -> f32 {
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
/// also held as f32 (so the kernels convert only the weights' scales) and d·Σq (for Q4_0's
/// offset of 8, applied once per block instead of once per element).
#[derive(Clone, Debug, Default)]
pub struct Q8Acts {
    pub blocks: alloc::vec::Vec<BlockQ8_0>,
    pub scales: alloc::vec::Vec<f32>,
    pub sums: alloc::vec::Vec<f32>,
    /// Blocks per row.
    pub row_blocks: usize,
}

impl Q8Acts {
    /// Quantize rows of `k` values (`k` a multiple of 32).
    pub fn quantize(x: &[f32], k: usize) -> Q8Acts {
        let mut blocks = alloc::vec![BlockQ8_0::default(); x.len() / QK];
        quantize_row_q8_0(x, &mut blocks);
        Q8Acts::from_blocks(blocks, k / QK)
    }

    pub fn from_blocks(blocks: alloc::vec::Vec<BlockQ8_0>, row_blocks: usize) -> Q8Acts {
        let scales: alloc::vec::Vec<f32> = blocks.iter().map(|b| f16_to_f32(b.d)).collect();
        let sums = blocks
            .iter()
            .zip(&scales)
            .map(|(b, d)| b.qs.iter().map(|&q| q as i32).sum::<i32>() as f32 * d)
            .collect();
        Q8Acts {
            blocks,
            scales,
            sums,
            row_blocks,
        }
    }

    pub fn rows(&self) -> usize {
        self.blocks.len().checked_div(self.row_blocks).unwrap_or(0)
    }

    pub fn row(&self, t: usize) -> (&[BlockQ8_0], &[f32]) {
        let r = t * self.row_blocks..(t + 1) * self.row_blocks;
        (&self.blocks[r.clone()], &self.scales[r])
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

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

    fn round_trip(x: &[f32], f: Format) -> Vec<f32> {
        let n = x.len() / QK;
        let mut y = vec![0.0; x.len()];
        match f {
            Format::Q8_0 => {
                let mut b = vec![BlockQ8_0::default(); n];
                quantize_row_q8_0(x, &mut b);
                dequantize_row_q8_0(&b, &mut y);
            }
            Format::Q4_0 => {
                let mut b = vec![BlockQ4_0::default(); n];
                quantize_row_q4_0(x, &mut b);
                dequantize_row_q4_0(&b, &mut y);
            }
            Format::F32 => y.copy_from_slice(x),
        }
        y
    }

    /// The spec's bound (ggml's measure and data): ≤ 0.002 on 4096 smooth values.
    #[test]
    fn round_trip_error_within_ggml_bound() {
        for offset in [0.0, 0.5, 1.0] {
            let x = smooth(32 * 128, offset);
            for f in [Format::Q8_0, Format::Q4_0] {
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
        for f in [Format::Q8_0, Format::Q4_0] {
            let y = round_trip(&x, f);
            for (xb, yb) in x.chunks(QK).zip(y.chunks(QK)) {
                let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let (step, bound) = match f {
                    Format::Q8_0 => (amax / 127.0, 0.5 + 127.0 / 2048.0),
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
                quantize_row_q8_0(&x, &mut xq);
                let mut w8 = vec![BlockQ8_0::default(); n / QK];
                quantize_row_q8_0(&w, &mut w8);
                let mut w4 = vec![BlockQ4_0::default(); n / QK];
                quantize_row_q4_0(&w, &mut w4);
                let e8 = (vec_dot_q8_0_q8_0(&w8, &xq) as f64 - exact).abs();
                let e4 = (vec_dot_q4_0_q8_0(&w4, &xq) as f64 - exact).abs();
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
        quantize_row_q8_0(&x, &mut xq);
        let mut w4 = vec![BlockQ4_0::default(); 128];
        quantize_row_q4_0(&w, &mut w4);
        let e = (vec_dot_q4_0_q8_0(&w4, &xq) as f64 - exact).abs() / 4096.0;
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
        quantize_row_q4_0(&x, &mut b);
        assert_eq!(b[0].d.to_f32(), 0.5);
        assert_eq!(b[0].qs[0], 15 << 4, "element 0 → q 0, element 16 → q 15");
        assert_eq!(b[0].qs[5] & 0x0f, 9);
        assert_eq!(b[0].qs[1], 8 | (8 << 4));
        let mut y = [0.0f32; QK];
        dequantize_row_q4_0(&b, &mut y);
        assert_eq!((y[0], y[16], y[5], y[1]), (-4.0, 3.5, 0.5, 0.0));
    }

    #[test]
    fn zero_block_is_zero() {
        let x = [0.0f32; QK];
        let mut b8 = [BlockQ8_0::default()];
        let mut b4 = [BlockQ4_0::default()];
        quantize_row_q8_0(&x, &mut b8);
        quantize_row_q4_0(&x, &mut b4);
        let mut y = [1.0f32; QK];
        dequantize_row_q8_0(&b8, &mut y);
        assert!(y.iter().all(|&v| v == 0.0));
        dequantize_row_q4_0(&b4, &mut y);
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
        quantize_row_q8_0(&x, &mut b8);
        let mut bytes = Vec::new();
        b8.iter().for_each(|b| b.write_bytes(&mut bytes));
        assert_eq!(bytes.len(), 68);
        assert_eq!(BlockQ8_0::from_bytes(&bytes[34..]), b8[1]);
        let mut b4 = [BlockQ4_0::default(); 2];
        quantize_row_q4_0(&x, &mut b4);
        bytes.clear();
        b4.iter().for_each(|b| b.write_bytes(&mut bytes));
        assert_eq!(bytes.len(), 36);
        assert_eq!(BlockQ4_0::from_bytes(&bytes[18..]), b4[1]);
    }
}

//! The integer GEMM of a prompt block over quantized weights (x86-64 with AVX-512 VNNI):
//! out[t, r] = x_t · w_r for Q8_0 activations and weights in any block format. Each block's i32
//! sum is exact and is scaled and added in the scalar reference's order (`Block::dot`:
//! sum += q · (d_w · d_x), block after block), so every output equals that reference's bit for bit.
//!
//! The weights are repacked a panel of [`NR`] rows at a time, and each panel serves every
//! activation row: per block and per group of 4 values, the 4 quants of 16 rows side by side in
//! one zmm, so one `vpdpbusd` adds an activation's 4 values (broadcast) times 16 rows' quants to 16
//! running sums. The instruction multiplies unsigned by signed bytes: activations enter as q + 128
//! and each sum starts at −128·Σq of its row's block, which takes the offset out again.

use crate::formats::{f16_to_f32, Block, Q8Acts, QK};
use alloc::vec;
use alloc::vec::Vec;
#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;

/// Weight rows per panel: two zmm of 16 i32 lanes.
pub(crate) const NR: usize = 32;
/// Activation rows per register tile (4 × 2 sums and 4 × 2 f32 totals stay in registers).
const MR: usize = 4;
/// Values per `vpdpbusd` lane.
const GROUP: usize = 4;
const GROUPS: usize = QK / GROUP;

/// Whether the kernel level in force runs the integer GEMM: AVX-512 with VNNI.
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::level() == super::Level::Avx512 && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Activation quants as the unsigned operand: q + 128, row-major [t, k].
pub(crate) fn offset_acts(x: &Q8Acts) -> Vec<u8> {
    x.blocks
        .iter()
        .flat_map(|b| b.qs.iter().map(|&q| q as u8 ^ 0x80))
        .collect()
}

/// [`NR`] weight rows of `row_blocks` blocks, repacked: quants [block][group][row][4], scales
/// [block][row] as f32, and −128·Σq [block][row]. Rows past the matrix's end are zero.
pub(crate) struct Panel {
    q: Vec<u8>,
    d: Vec<f32>,
    bias: Vec<i32>,
    row_blocks: usize,
}

impl Panel {
    pub(crate) fn new(row_blocks: usize) -> Panel {
        Panel {
            q: vec![0; row_blocks * QK * NR],
            d: vec![0.0; row_blocks * NR],
            bias: vec![0; row_blocks * NR],
            row_blocks,
        }
    }

    /// Repack the rows of `w` (at most [`NR`] whole rows of `row_blocks` blocks).
    pub(crate) fn pack<B: Block>(&mut self, w: &[B]) {
        let rb = self.row_blocks;
        let rows = w.len() / rb;
        debug_assert!(rows <= NR && rows * rb == w.len());
        if rows < NR {
            self.q.fill(0);
            self.d.fill(0.0);
            self.bias.fill(0);
        }
        for (r, row) in w.chunks_exact(rb).enumerate() {
            for (b, block) in row.iter().enumerate() {
                let (d, q) = block.unpack();
                self.d[b * NR + r] = f16_to_f32(d);
                self.bias[b * NR + r] = -128 * q.iter().map(|&v| v as i32).sum::<i32>();
                for (g, four) in q.chunks_exact(GROUP).enumerate() {
                    let at = ((b * GROUPS + g) * NR + r) * GROUP;
                    for (o, &v) in self.q[at..at + GROUP].iter_mut().zip(four) {
                        *o = v as u8;
                    }
                }
            }
        }
    }
}

/// out[i·NR + r] = x_i · w_r for the t activation rows (`xu` from [`offset_acts`], scales `xd`
/// [t, row_blocks]) and the panel's rows. Callers check [`available`] first.
pub(crate) fn panel_product(p: &Panel, xu: &[u8], xd: &[f32], t: usize, out: &mut [f32]) {
    let rb = p.row_blocks;
    let k = rb * QK;
    assert!(xu.len() >= t * k && xd.len() >= t * rb && out.len() >= t * NR);
    assert!(available(), "integer GEMM without AVX-512 VNNI");
    let mut i = 0;
    while i < t {
        let m = (t - i).min(MR);
        // SAFETY: `available` checked the CPU's features; the asserts above keep every tile's
        // reads (m rows of k bytes and rb scales) and writes (m · NR) inside the slices.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            let (x, d, o) = (&xu[i * k..], &xd[i * rb..], &mut out[i * NR..]);
            match m {
                4 => tile::<4>(p, x, d, o),
                3 => tile::<3>(p, x, d, o),
                2 => tile::<2>(p, x, d, o),
                _ => tile::<1>(p, x, d, o),
            }
        }
        i += m;
    }
}

/// M activation rows times the panel's NR rows.
///
/// # Safety
/// The CPU has AVX-512F and VNNI; `x` holds M rows of k = row_blocks·32 bytes, `xd` M rows of
/// row_blocks scales, `out` M · NR values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn tile<const M: usize>(p: &Panel, x: &[u8], xd: &[f32], out: &mut [f32]) {
    // SAFETY: the caller's contract (see above) bounds every pointer offset below.
    unsafe {
        let rb = p.row_blocks;
        let k = rb * QK;
        debug_assert!(x.len() >= M * k && xd.len() >= M * rb && out.len() >= M * NR);
        let (q, d, bias, xp) = (p.q.as_ptr(), p.d.as_ptr(), p.bias.as_ptr(), x.as_ptr());
        let mut total = [[_mm512_setzero_ps(); 2]; M];
        for b in 0..rb {
            let b0 = _mm512_loadu_si512(bias.add(b * NR).cast());
            let b1 = _mm512_loadu_si512(bias.add(b * NR + 16).cast());
            let mut acc = [[b0, b1]; M];
            for g in 0..GROUPS {
                let wq = q.add((b * GROUPS + g) * NR * GROUP);
                let w0 = _mm512_loadu_si512(wq.cast());
                let w1 = _mm512_loadu_si512(wq.add(64).cast());
                for (i, a) in acc.iter_mut().enumerate() {
                    let four = xp
                        .add(i * k + b * QK + g * GROUP)
                        .cast::<i32>()
                        .read_unaligned();
                    let xv = _mm512_set1_epi32(four);
                    a[0] = _mm512_dpbusd_epi32(a[0], xv, w0);
                    a[1] = _mm512_dpbusd_epi32(a[1], xv, w1);
                }
            }
            let dw0 = _mm512_loadu_ps(d.add(b * NR));
            let dw1 = _mm512_loadu_ps(d.add(b * NR + 16));
            for (i, (a, s)) in acc.iter().zip(total.iter_mut()).enumerate() {
                let dx = _mm512_set1_ps(*xd.get_unchecked(i * rb + b));
                let t0 = _mm512_mul_ps(_mm512_cvtepi32_ps(a[0]), _mm512_mul_ps(dw0, dx));
                let t1 = _mm512_mul_ps(_mm512_cvtepi32_ps(a[1]), _mm512_mul_ps(dw1, dx));
                s[0] = _mm512_add_ps(s[0], t0);
                s[1] = _mm512_add_ps(s[1], t1);
            }
        }
        for (i, s) in total.iter().enumerate() {
            _mm512_storeu_ps(out.as_mut_ptr().add(i * NR), s[0]);
            _mm512_storeu_ps(out.as_mut_ptr().add(i * NR + 16), s[1]);
        }
    }
}

//! The products of inference over any weight format, split across threads by rows.
//!
//! Both Pattention products are row dot products when V_P is stored transposed (the quantized
//! layout): scores = K_P·x, out = V_Pᵀ·Θ(scores). f32 V_P keeps the checkpoint's [n, d_out]
//! layout, so its product accumulates score-weighted rows instead (a decode row's split by blocks
//! of rows with partial sums, a prompt block's by activation rows).
//! Activations meeting quantized weights are quantized to Q8_0 once per product.

#[cfg(feature = "std")]
use super::gemm::View;
use super::vector as vec_k;
use crate::formats::{Block, Q8Acts, QK};
use crate::model::{each_format, Matrix};
use alloc::vec;
use alloc::vec::Vec;

/// From this many activation rows on, f32 products go to `gemm` (std builds).
pub const GEMM_MIN_ROWS: usize = 4;

/// out[t, r] = x_t · m_r for the rows m_r (`k` long) of `m` and the rows x_t of `x`: Pattention
/// scores (m = keys), logits (m = embedding), quantized values (m = V_Pᵀ).
pub fn matmul_nt(m: &Matrix<'_>, x: &[f32], k: usize, out: &mut [f32]) {
    let t = x.len() / k;
    let rows = m.len() / k;
    debug_assert_eq!(out.len(), t * rows);
    each_format!(
        m,
        w => {
            #[cfg(feature = "std")]
            if t > GEMM_SWAP_MAX_ROWS {
                return gemm_f32(View::rows(x, t, k, k), View::rows(w, rows, k, k).t(), out);
            }
            #[cfg(feature = "std")]
            if t >= GEMM_MIN_ROWS {
                // outᵀ = W·Xᵀ: gemm then reads the weight rows where they lie instead of
                // packing all of them (the transposing copy cost as much as the products at 64
                // rows); the [rows, t] result is transposed back.
                let mut tmp = vec![0.0; rows * t];
                gemm_f32(View::rows(w, rows, k, k), View::rows(x, t, k, k).t(), &mut tmp);
                return transpose_into(&tmp, rows, t, out);
            }
            row_products(rows, t, out, |r, buf| {
                vec_k::rows_dot_f32(&w[r.start * k..r.end * k], x, k, buf)
            })
        },
        b => {
            let acts = Q8Acts::quantize(x, k);
            let rb = k / QK;
            #[cfg(feature = "std")]
            if t >= GEMM_MIN_ROWS && super::qgemm::available() {
                return integer_gemm(b, rb, &acts, out);
            }
            row_products(rows, t, out, |r, buf| {
                Block::rows_dot(&b[r.start * rb..r.end * rb], rb, &acts, buf)
            })
        }
    )
}

/// Rows of f32 V_P per partial sum of a decode row's values product.
const VALUES_BLOCK: usize = 128;

/// out[t, d_out] = s[t, n] · V_P, with V_P [n, d_out] in f32 or quantized and transposed
/// ([d_out, n], see `model::PattentionWeights`).
pub fn matmul_values(v: &Matrix<'_>, s: &[f32], n: usize, d_out: usize, out: &mut [f32]) {
    let t = s.len() / n;
    debug_assert_eq!(out.len(), t * d_out);
    let Matrix::F32(w) = v else {
        return matmul_nt(v, s, n, out);
    };
    #[cfg(feature = "std")]
    if t >= GEMM_MIN_ROWS {
        return gemm_f32(View::rows(s, t, n, n), View::rows(w, n, d_out, d_out), out);
    }
    out.fill(0.0);
    if t == 1 && n > VALUES_BLOCK {
        // Split by rows of V_P in fixed blocks, each block's score-weighted rows summed into a
        // partial output, the partials added in block order: every thread streams whole rows
        // (split by output columns, each thread read a strided slice of every row, and two
        // threads were slower than one), and the result does not depend on the thread count.
        let blocks = n.div_ceil(VALUES_BLOCK);
        let mut part = vec![0.0; blocks * d_out];
        let per_task = chunk_len(blocks, 1);
        for_each_chunk(&mut part, per_task * d_out, |c, p| {
            for (j, p) in p.chunks_exact_mut(d_out).enumerate() {
                let b = c * per_task + j;
                let r = b * VALUES_BLOCK..((b + 1) * VALUES_BLOCK).min(n);
                let v = &w[r.start * d_out..r.end * d_out];
                vec_k::scores_times_values(&s[r], v, d_out, 0..d_out, p);
            }
        });
        for p in part.chunks_exact(d_out) {
            out.iter_mut().zip(p).for_each(|(o, x)| *o += x);
        }
    } else if t == 1 {
        vec_k::scores_times_values(s, w, d_out, 0..d_out, out);
    } else {
        for_each_chunk(out, d_out, |i, o| {
            vec_k::scores_times_values(&s[i * n..(i + 1) * n], w, d_out, 0..d_out, o)
        });
    }
}

/// out[t, rows] through the integer GEMM (`qgemm`): panels of weight rows split across threads,
/// each repacked once and run against every activation row.
#[cfg(feature = "std")]
fn integer_gemm<B: Block>(w: &[B], rb: usize, acts: &Q8Acts, out: &mut [f32]) {
    use super::qgemm::{panel_product, Panel, NR};
    let (t, rows) = (acts.rows(), w.len() / rb);
    let panels = rows.div_ceil(NR);
    let per_task = chunk_len(panels, 1);
    // [panel][t][NR], scattered into out's [t, rows] at the end.
    let mut tmp: Vec<f32> = vec![0.0; panels * t * NR];
    for_each_chunk(&mut tmp, per_task * t * NR, |c, buf| {
        let mut p = Panel::new(rb);
        for (j, o) in buf.chunks_exact_mut(t * NR).enumerate() {
            let r0 = (c * per_task + j) * NR;
            p.pack(&w[r0 * rb..(r0 + NR).min(rows) * rb]);
            panel_product(&p, acts, o);
        }
    });
    for (p, tile) in tmp.chunks_exact(t * NR).enumerate() {
        let (r0, n) = (p * NR, NR.min(rows - p * NR));
        for (i, src) in tile.chunks_exact(NR).enumerate() {
            out[i * rows + r0..i * rows + r0 + n].copy_from_slice(&src[..n]);
        }
    }
}

/// Up to this many activation rows, f32 `matmul_nt` runs as outᵀ = W·Xᵀ (gemm leaves a
/// unit-stride right operand unpacked while the left one spans at most twice its 64-row tile).
#[cfg(feature = "std")]
const GEMM_SWAP_MAX_ROWS: usize = 128;

/// Rows per task: a few tasks per thread so a stalled thread does not hold everyone up, at
/// least `min` rows so the per-task cost stays small; everything when single-threaded.
pub(crate) fn chunk_len(rows: usize, min: usize) -> usize {
    let threads = super::threads();
    if threads <= 1 {
        return rows.max(1);
    }
    rows.div_ceil(threads * 4).max(min).min(rows.max(1))
}

/// Run `f(index, chunk)` over `chunk`-sized pieces of `out`, in parallel in std builds.
pub(crate) fn for_each_chunk(
    out: &mut [f32],
    chunk: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    #[cfg(feature = "std")]
    if super::threads() > 1 && out.len() > chunk {
        // The chunks through the spinning team (see `team`), or rayon when it is busy.
        struct Chunks(*mut f32, usize, usize);
        // SAFETY: tasks take disjoint chunks of the slice `out` borrows for the whole region.
        unsafe impl Sync for Chunks {}
        impl Chunks {
            /// Chunk i: out[i·chunk .. min((i + 1)·chunk, len)].
            #[allow(clippy::mut_from_ref)]
            fn get(&self, i: usize) -> &mut [f32] {
                let start = i * self.2;
                // SAFETY: each task index is run once per region, so chunk i has one owner.
                unsafe {
                    core::slice::from_raw_parts_mut(self.0.add(start), self.2.min(self.1 - start))
                }
            }
        }
        let at = Chunks(out.as_mut_ptr(), out.len(), chunk);
        let task = |i: usize| f(i, at.get(i));
        if super::team::team(super::threads()).run(out.len().div_ceil(chunk), &task) {
            return;
        }
        use rayon::prelude::*;
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
        return;
    }
    out.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
}

/// Fill out[t, rows] by `f(row range, buf)`, which writes buf[r·t + i] for its rows: split across
/// threads by rows, transposed at the end when t > 1.
fn row_products(
    rows: usize,
    t: usize,
    out: &mut [f32],
    f: impl Fn(core::ops::Range<usize>, &mut [f32]) + Sync + Send,
) {
    let chunk = chunk_len(rows, 16);
    let run = |buf: &mut [f32]| {
        for_each_chunk(buf, chunk * t, |c, b| {
            let r0 = c * chunk;
            f(r0..r0 + b.len() / t, b)
        })
    };
    if t == 1 {
        return run(out);
    }
    let mut tmp: Vec<f32> = vec![0.0; rows * t];
    run(&mut tmp);
    transpose_into(&tmp, rows, t, out);
}

/// dst[c, r] = src[r, c] for src [rows, cols], in tiles so that both sides stay in cache.
fn transpose_into(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const TILE: usize = 16;
    assert!(src.len() == rows * cols && dst.len() == rows * cols);
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            let cn = TILE.min(cols - c0);
            for r in r0..(r0 + TILE).min(rows) {
                let s = &src[r * cols + c0..][..cn];
                for (c, &v) in (c0..).zip(s) {
                    dst[c * rows + r] = v;
                }
            }
        }
    }
}

/// Query rows per attention task of a prompt: fixed, so that a row's result does not depend on
/// the thread count (a block's products sum in an order set by its size). 32: the products of
/// 16-row blocks ran at 0.7 of the speed of 32-row ones, 64-row ones add little.
pub const ATTENTION_ROWS: usize = 32;

/// Causal attention of a prompt block: `t` query rows (q [t, d]) at positions pos0.. over the
/// history k, v ([pos0 + t, d]), what `ops::attention::causal_attention` (the reference) does
/// row by row. Per head, the block's scores against the whole history are one product
/// S = Q_h·K_hᵀ, then the causal softmax of each row (zeros past its position), then
/// O_h = P·V_h written into the head's columns of out [t, d]. One thread: callers split rows.
#[cfg(feature = "std")]
pub fn causal_attention_block(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    d: usize,
    heads: usize,
    pos0: usize,
    out: &mut [f32],
) {
    use super::gemm::gemm;
    let (t, len, hd) = (q.len() / d, k.len() / d, d / heads);
    assert!(len == pos0 + t && v.len() == k.len() && out.len() == q.len());
    let scale = 1.0 / libm::sqrtf(hd as f32);
    // Head h of [rows, d]: [rows, hd] with rows d apart.
    fn head(x: &[f32], rows: usize, h: usize, hd: usize, d: usize) -> View<'_> {
        View::rows(&x[h * hd..], rows, hd, d)
    }
    let mut s = vec![0.0f32; t * len];
    for h in 0..heads {
        let (qh, kh) = (head(q, t, h, hd, d), head(k, len, h, hd, d));
        gemm(qh, kh.t(), &mut s, len, false, 1);
        for (i, row) in s.chunks_exact_mut(len).enumerate() {
            crate::ops::attention::softmax_row(row, pos0 + i, scale);
        }
        let p = View::rows(&s, t, len, len);
        gemm(p, head(v, len, h, hd, d), &mut out[h * hd..], d, false, 1);
    }
}

/// out = a · b (row-major, rows of b's width), across the kernels' threads.
#[cfg(feature = "std")]
fn gemm_f32(a: View<'_>, b: View<'_>, out: &mut [f32]) {
    let n = b.shape().1;
    super::gemm::gemm(a, b, out, n, false, super::threads());
}

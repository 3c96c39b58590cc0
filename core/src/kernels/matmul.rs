//! The products of inference over any weight format, split across threads by rows.
//!
//! Both Pattention products are row dot products when V_P is stored transposed (the quantized
//! layout): scores = K_P·x, out = V_Pᵀ·Θ(scores). f32 V_P keeps the checkpoint's [n, d_out]
//! layout, so its product accumulates score-weighted rows instead (split by output columns).
//! Activations meeting quantized weights are quantized to Q8_0 once per product.

use super::vector as vec_k;
use crate::model::Matrix;
use crate::quant::{Q8Acts, QK};
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
    match m {
        Matrix::F32(w) => {
            #[cfg(feature = "std")]
            if t >= GEMM_MIN_ROWS {
                return gemm_f32(t, rows, k, x, (1, k), w, (k, 1), out);
            }
            row_products(rows, t, out, |r, buf| {
                vec_k::rows_dot_f32(&w[r.start * k..r.end * k], x, k, buf)
            });
        }
        Matrix::Q8_0(b) => {
            let acts = Q8Acts::quantize(x, k);
            let rb = k / QK;
            row_products(rows, t, out, |r, buf| {
                vec_k::rows_dot_q8_0(&b[r.start * rb..r.end * rb], rb, &acts, buf)
            });
        }
        Matrix::Q4_0(b) => {
            let acts = Q8Acts::quantize(x, k);
            let rb = k / QK;
            row_products(rows, t, out, |r, buf| {
                vec_k::rows_dot_q4_0(&b[r.start * rb..r.end * rb], rb, &acts, buf)
            });
        }
    }
}

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
        return gemm_f32(t, d_out, n, s, (1, n), w, (1, d_out), out);
    }
    out.fill(0.0);
    if t == 1 {
        // Split by output columns: each thread streams its slice of every row of V_P.
        let chunk = chunk_len(d_out, 64);
        for_each_chunk(out, chunk, |c, o| {
            vec_k::scores_times_values(s, w, d_out, c * chunk..c * chunk + o.len(), o)
        });
    } else {
        for_each_chunk(out, d_out, |i, o| {
            vec_k::scores_times_values(&s[i * n..(i + 1) * n], w, d_out, 0..d_out, o)
        });
    }
}

/// Rows per task: a few tasks per thread so a stalled thread does not hold everyone up, at
/// least `min` rows so the per-task cost stays small; everything when single-threaded.
fn chunk_len(rows: usize, min: usize) -> usize {
    let threads = super::threads();
    if threads <= 1 {
        return rows.max(1);
    }
    rows.div_ceil(threads * 4).max(min).min(rows.max(1))
}

/// Run `f(index, chunk)` over `chunk`-sized pieces of `out`, in parallel in std builds.
fn for_each_chunk(out: &mut [f32], chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    #[cfg(feature = "std")]
    if super::threads() > 1 && out.len() > chunk {
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
    for (r, row) in tmp.chunks_exact(t).enumerate() {
        for (i, &v) in row.iter().enumerate() {
            out[i * rows + r] = v;
        }
    }
}

/// out[m, n] = lhs[m, k] · rhs[k, n] with (column, row) strides given for lhs and rhs.
#[cfg(feature = "std")]
#[allow(clippy::too_many_arguments)]
fn gemm_f32(
    m: usize,
    n: usize,
    k: usize,
    lhs: &[f32],
    (lhs_cs, lhs_rs): (usize, usize),
    rhs: &[f32],
    (rhs_cs, rhs_rs): (usize, usize),
    out: &mut [f32],
) {
    assert!(out.len() >= m * n);
    assert!(m == 0 || k == 0 || (m - 1) * lhs_rs + (k - 1) * lhs_cs < lhs.len());
    assert!(n == 0 || k == 0 || (k - 1) * rhs_rs + (n - 1) * rhs_cs < rhs.len());
    let threads = super::threads();
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above keep every index gemm forms inside the three slices; out is
    // exclusively borrowed and does not alias the inputs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

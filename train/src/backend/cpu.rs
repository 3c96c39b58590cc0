//! The CPU backend: `gemm` for every product, `rayon` across rows, sequences and heads.
//!
//! Reductions run in a fixed order whatever the thread count (each row or head is one task, and
//! gemm never splits the k sum across threads), so a run is bit-reproducible: resume depends on it.

use super::{AdamStep, Affine, Backend, Dims, Mat, MatMul, Qkv, RopeTables, Theta};
use rayon::prelude::*;
use tokenformer_core::kernels::gemm::{gemm, View};
use tokenformer_core::kernels::vector;
use tokenformer_core::ops::rotary::rotate_row;
use tokenformer_core::ops::{attention, embedding, norm};

/// The CPU backend: buffers are `Vec<f32>`; products run in `gemm`, rows across `rayon` threads.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu;

/// Rows per rayon task for cheap row-wise ops.
const ROW_CHUNK: usize = 16;

/// f(r, out row r, [row r of each input]) for every row of width n, ROW_CHUNK rows per task
/// (rows are independent, so the result does not depend on the split).
fn par_rows<const K: usize>(
    out: &mut [f32],
    n: usize,
    ins: [&[f32]; K],
    f: impl Fn(usize, &mut [f32], [&[f32]; K]) + Sync,
) {
    out.par_chunks_mut(n * ROW_CHUNK)
        .enumerate()
        .for_each(|(c, blk)| {
            for (j, row) in blk.chunks_exact_mut(n).enumerate() {
                let r = c * ROW_CHUNK + j;
                f(r, row, ins.map(|x| &x[r * n..(r + 1) * n]));
            }
        });
}

/// Row-major [rows, cols], or the transpose of a stored [cols, rows] matrix.
fn view(buf: &[f32], t: bool, rows: usize, cols: usize) -> View<'_> {
    if t {
        View::rows(buf, cols, rows, rows).t()
    } else {
        View::rows(buf, rows, cols, cols)
    }
}

/// Threads for one product: all of them from a million multiply-adds on, else one.
fn threads(flops: usize) -> usize {
    if flops >= 1 << 20 {
        rayon::current_num_threads()
    } else {
        1
    }
}

/// Head h of sequence b in a [batch·t, d] buffer: [t, hd] with rows d apart.
fn head(x: &[f32], b: usize, h: usize, t: usize, d: usize, hd: usize) -> View<'_> {
    View::rows(&x[b * t * d + h * hd..], t, hd, d)
}

/// Write the [t, hd] slab of each (sequence, head) task `b·heads + h` into its columns of `out`
/// [batch·t, d]: tasks compute into their own slabs, so no two write the same memory.
fn scatter_heads<'a>(
    slab: impl Fn(usize) -> &'a [f32] + Sync,
    t: usize,
    d: usize,
    heads: usize,
    out: &mut [f32],
) {
    let hd = d / heads;
    out.par_chunks_mut(t * d).enumerate().for_each(|(b, seq)| {
        for h in 0..heads {
            let src = slab(b * heads + h).chunks_exact(hd);
            for (row, src) in seq.chunks_exact_mut(d).zip(src) {
                row[h * hd..(h + 1) * hd].copy_from_slice(src);
            }
        }
    });
}

impl Backend for Cpu {
    type Buf = Vec<f32>;

    fn name(&self) -> &'static str {
        "cpu"
    }

    fn zeros(&self, n: usize) -> Vec<f32> {
        vec![0.0; n]
    }

    fn upload(&self, x: &[f32]) -> Vec<f32> {
        x.to_vec()
    }

    fn download(&self, x: &Vec<f32>) -> Vec<f32> {
        x.clone()
    }

    fn fill_zero(&self, x: &mut Vec<f32>) {
        x.fill(0.0);
    }

    fn len(&self, x: &Vec<f32>) -> usize {
        x.len()
    }

    fn copy_into(&self, x: &Vec<f32>, y: &mut Vec<f32>) {
        y.copy_from_slice(x);
    }

    fn matmul(
        &self,
        size: MatMul,
        a: Mat<'_, Self>,
        b: Mat<'_, Self>,
        c: &mut Vec<f32>,
        accumulate: bool,
    ) {
        let MatMul { m, n, k } = size;
        let (va, vb) = (
            view(a.buf, a.transposed, m, k),
            view(b.buf, b.transposed, k, n),
        );
        gemm(va, vb, c, n, accumulate, threads(m * n * k));
    }

    fn add_assign(&self, y: &mut Vec<f32>, x: &Vec<f32>) {
        assert_eq!(y.len(), x.len());
        y.par_chunks_mut(1 << 14)
            .zip(x.par_chunks(1 << 14))
            .for_each(|(y, x)| y.iter_mut().zip(x).for_each(|(y, x)| *y += x));
    }

    fn embed_forward(&self, table: &Vec<f32>, tokens: &[u32], dims: Dims, out: &mut Vec<f32>) {
        embedding::embed(table, tokens, dims.d, out);
    }

    fn embed_backward(&self, tokens: &[u32], dout: &Vec<f32>, dims: Dims, dtable: &mut Vec<f32>) {
        let d = dims.d;
        // Sequential: repeated tokens add into the same row in a fixed order.
        embedding::embed_backward(tokens, dout, d, dtable);
    }

    fn layer_norm_forward(
        &self,
        x: &Vec<f32>,
        dims: Dims,
        eps: f32,
        y: &mut Vec<f32>,
        rstd: &mut Vec<f32>,
    ) {
        layer_norm_rows(x, dims.d, eps, y, rstd);
    }

    fn layer_norm_backward(
        &self,
        y: &Vec<f32>,
        rstd: &Vec<f32>,
        dy: &Vec<f32>,
        dims: Dims,
        dx: &mut Vec<f32>,
    ) {
        par_rows(dx, dims.d, [y, dy], |r, dxr, [yr, dyr]| {
            norm::layer_norm_backward_row(yr, dyr, rstd[r], dxr)
        });
    }

    fn theta_forward(&self, a: &Vec<f32>, spec: Theta, s: &mut Vec<f32>) {
        let Theta { norm, n, scale_n } = spec;
        par_rows(s, n, [a], |_, sr, [ar]| {
            sr.copy_from_slice(ar);
            vector::theta(sr, norm, scale_n)
        });
    }

    fn theta_backward(
        &self,
        a: &Vec<f32>,
        s: &Vec<f32>,
        ds: &Vec<f32>,
        spec: Theta,
        da: &mut Vec<f32>,
    ) {
        let Theta { norm, n, scale_n } = spec;
        par_rows(da, n, [a, s, ds], |_, dar, [ar, sr, dsr]| {
            vector::theta_backward_row(ar, sr, dsr, norm, scale_n, dar)
        });
    }

    fn rotary(&self, x: &mut Vec<f32>, dims: Dims, rope: &RopeTables<Self>, inverse: bool) {
        let (d, head_dim, h) = (dims.d, dims.head_dim(), rope.half);
        if h == 0 {
            return;
        }
        x.par_chunks_mut(dims.rows.seq * d).for_each(|seq| {
            let angles = rope.cos.chunks_exact(h).zip(rope.sin.chunks_exact(h));
            for (row, (cos, sin)) in seq.chunks_exact_mut(d).zip(angles) {
                rotate_row(row, head_dim, cos, sin, inverse);
            }
        });
    }

    fn attention_forward(
        &self,
        x: Qkv<&Vec<f32>>,
        dims: Dims,
        out: &mut Vec<f32>,
        probs: &mut Vec<f32>,
    ) {
        let (Qkv { q, k, v }, Dims { rows, d, heads }) = (x, dims);
        let t = rows.seq;
        let hd = d / heads;
        let scale = 1.0 / (hd as f32).sqrt();
        assert!(q.len() == rows.count() * d && k.len() == q.len() && v.len() == q.len());
        assert!(out.len() == q.len() && probs.len() == rows.batch * heads * t * t);
        let slabs: Vec<Vec<f32>> = probs
            .par_chunks_mut(t * t)
            .enumerate()
            .map(|(bh, p)| {
                let (b, h) = (bh / heads, bh % heads);
                let kt = head(k, b, h, t, d, hd).t();
                gemm(head(q, b, h, t, d, hd), kt, p, t, false, 1);
                for (i, row) in p.chunks_exact_mut(t).enumerate() {
                    attention::softmax_row(row, i, scale);
                }
                let mut o = vec![0.0f32; t * hd];
                gemm(
                    View::rows(p, t, t, t),
                    head(v, b, h, t, d, hd),
                    &mut o,
                    hd,
                    false,
                    1,
                );
                o
            })
            .collect();
        scatter_heads(|i| &slabs[i], t, d, heads, out);
    }

    fn attention_backward(
        &self,
        x: Qkv<&Vec<f32>>,
        probs: &Vec<f32>,
        dout: &Vec<f32>,
        dims: Dims,
        dx: Qkv<&mut Vec<f32>>,
    ) {
        let (Qkv { q, k, v }, Dims { rows, d, heads }) = (x, dims);
        let Qkv {
            q: dq,
            k: dk,
            v: dv,
        } = dx;
        let t = rows.seq;
        let hd = d / heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let n = rows.count() * d;
        assert!(q.len() == n && k.len() == n && v.len() == n && dout.len() == n);
        assert!(dq.len() == n && dk.len() == n && dv.len() == n);
        assert!(probs.len() == rows.batch * heads * t * t);
        let slabs: Vec<[Vec<f32>; 3]> = probs
            .par_chunks(t * t)
            .enumerate()
            .map(|(bh, p)| {
                let (b, h) = (bh / heads, bh % heads);
                let hv = |x| head(x, b, h, t, d, hd);
                // dP = dO·Vᵀ, then dS row by row.
                let mut ds = vec![0.0f32; t * t];
                gemm(hv(dout), hv(v).t(), &mut ds, t, false, 1);
                for (i, (dsr, pr)) in ds.chunks_exact_mut(t).zip(p.chunks_exact(t)).enumerate() {
                    attention::softmax_backward_row(dsr, pr, i, scale);
                }
                // dQ = dS·K, dK = dSᵀ·Q, dV = Pᵀ·dO
                let (dsv, pv) = (View::rows(&ds, t, t, t), View::rows(p, t, t, t));
                let mut out = [
                    vec![0.0f32; t * hd],
                    vec![0.0f32; t * hd],
                    vec![0.0f32; t * hd],
                ];
                let [oq, ok, ov] = &mut out;
                gemm(dsv, hv(k), oq, hd, false, 1);
                gemm(dsv.t(), hv(q), ok, hd, false, 1);
                gemm(pv.t(), hv(dout), ov, hd, false, 1);
                out
            })
            .collect();
        for (g, grad) in [dq, dk, dv].into_iter().enumerate() {
            scatter_heads(|i| &slabs[i][g], t, d, heads, grad);
        }
    }

    fn affine_norm_forward(
        &self,
        x: &Vec<f32>,
        p: Affine<&Vec<f32>>,
        eps: f32,
        xhat: &mut Vec<f32>,
        rstd: &mut Vec<f32>,
        y: &mut Vec<f32>,
    ) {
        let Affine { weight: w, bias: b } = p;
        let d = w.len();
        layer_norm_rows(x, d, eps, xhat, rstd);
        par_rows(y, d, [xhat], |_, yr, [xr]| norm::affine_row(xr, w, b, yr));
    }

    fn affine_norm_backward(
        &self,
        xhat: &Vec<f32>,
        rstd: &Vec<f32>,
        w: &Vec<f32>,
        dy: &Vec<f32>,
        dx: &mut Vec<f32>,
        dp: Affine<&mut Vec<f32>>,
    ) {
        let Affine {
            weight: dw,
            bias: db,
        } = dp;
        let d = w.len();
        // Parameter gradients: a sequential sum over rows (fixed order).
        norm::affine_params_backward(xhat, dy, dw, db);
        par_rows(dx, d, [xhat, dy], |r, dxr, [xr, gr]| {
            norm::affine_backward_row(xr, rstd[r], w, gr, dxr)
        });
    }

    fn cross_entropy(
        &self,
        logits: &Vec<f32>,
        targets: &[u32],
        vocab: usize,
        grad_scale: f32,
        dlogits: &mut Vec<f32>,
    ) -> Vec<f64> {
        let mut losses = vec![0.0f64; targets.len()];
        dlogits
            .par_chunks_mut(vocab)
            .zip(logits.par_chunks(vocab))
            .zip(targets.par_iter())
            .zip(losses.par_iter_mut())
            .for_each(|(((g, z), &t), loss)| {
                *loss = vector::cross_entropy_row(z, t as usize, grad_scale, g)
            });
        losses
    }

    fn sum_squares(&self, x: &Vec<f32>) -> f64 {
        // Fixed-size chunks summed in order: the same result on any thread count.
        let parts: Vec<f64> = x
            .par_chunks(1 << 14)
            .map(|c| c.iter().map(|&v| v as f64 * v as f64).sum())
            .collect();
        parts.iter().sum()
    }

    fn scale(&self, x: &mut Vec<f32>, s: f32) {
        x.par_chunks_mut(1 << 14)
            .for_each(|c| c.iter_mut().for_each(|v| *v *= s));
    }

    fn adamw(
        &self,
        p: &mut Vec<f32>,
        g: &Vec<f32>,
        m: &mut Vec<f32>,
        v: &mut Vec<f32>,
        s: AdamStep,
    ) {
        const C: usize = 1 << 14;
        p.par_chunks_mut(C)
            .zip(g.par_chunks(C))
            .zip(m.par_chunks_mut(C))
            .zip(v.par_chunks_mut(C))
            .for_each(|(((p, g), m), v)| {
                for i in 0..p.len() {
                    m[i] = s.beta1 * m[i] + (1.0 - s.beta1) * g[i];
                    v[i] = s.beta2 * v[i] + (1.0 - s.beta2) * g[i] * g[i];
                    let mh = m[i] / s.bias1;
                    let vh = v[i] / s.bias2;
                    p[i] -= s.lr * (mh / (vh.sqrt() + s.eps) + s.weight_decay * p[i]);
                }
            });
    }
}

/// y = (x − mean)·rstd for rows of width d; saves rstd.
fn layer_norm_rows(x: &[f32], d: usize, eps: f32, y: &mut [f32], rstd: &mut [f32]) {
    y.par_chunks_mut(d * ROW_CHUNK)
        .zip(rstd.par_chunks_mut(ROW_CHUNK))
        .zip(x.par_chunks(d * ROW_CHUNK))
        .for_each(|((y, r), x)| {
            for ((yr, rr), xr) in y.chunks_exact_mut(d).zip(r).zip(x.chunks_exact(d)) {
                *rr = norm::layer_norm_row(xr, eps, yr);
            }
        });
}

//! The CPU backend: `gemm` for every product, `rayon` across rows, sequences and heads.
//!
//! Reductions run in a fixed order whatever the thread count (each row or head is one task, and
//! gemm never splits the k sum across threads), so a run is bit-reproducible: resume depends on it.

use super::{AdamStep, Affine, Backend, Dims, Mat, MatMul, Qkv, RopeTables, Theta};
use rayon::prelude::*;
use tokenformer_core::ops::activation::{gelu, gelu_grad};
use tokenformer_core::ops::norm::row_stats;
use tokenformer_core::ops::pattention::theta;
use tokenformer_core::ops::rotary::rotate_row;
use tokenformer_core::Norm;

#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu;

/// Rows per rayon task for cheap row-wise ops.
const ROW_CHUNK: usize = 16;

/// A strided view for gemm: element (i, j) at `ptr[i·rs + j·cs]`.
#[derive(Clone, Copy)]
struct View {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}

/// c[m, n] at (c_ptr, c_rs, unit column stride) (+)= a · b.
///
/// # Safety
/// Every view must address only memory it may read (a, b) or write (c) for the given m, n, k,
/// and c must not alias a or b.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_view(
    m: usize,
    n: usize,
    k: usize,
    a: View,
    b: View,
    c: *mut f32,
    c_rs: isize,
    accumulate: bool,
    par: gemm::Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm::gemm(
            m, n, k, c, 1, c_rs, accumulate, a.ptr, a.cs, a.rs, b.ptr, b.cs, b.rs, 1.0f32, 1.0f32,
            false, false, false, par,
        )
    }
}

fn parallelism(flops: usize) -> gemm::Parallelism {
    let threads = rayon::current_num_threads();
    if threads > 1 && flops >= 1 << 20 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    }
}

/// Row-major [rows, cols] view, or the transpose of a stored [cols, rows] matrix.
fn view(buf: &[f32], t: bool, rows: usize, cols: usize) -> View {
    let _ = rows;
    if t {
        // logical (i, j) = stored (j, i), stored row length = rows
        View {
            ptr: buf.as_ptr(),
            rs: 1,
            cs: rows as isize,
        }
    } else {
        View {
            ptr: buf.as_ptr(),
            rs: cols as isize,
            cs: 1,
        }
    }
}

/// A pointer that several rayon tasks write through, each to its own disjoint region.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}
impl SharedMut {
    // A method, so closures capture the wrapper (Sync) rather than its raw-pointer field.
    fn at(self, off: isize) -> *mut f32 {
        self.0.wrapping_offset(off)
    }
}

#[derive(Clone, Copy)]
struct Shared(*const f32);
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}
impl Shared {
    fn at(self, off: isize) -> *const f32 {
        self.0.wrapping_offset(off)
    }
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

    fn copy(&self, x: &Vec<f32>) -> Vec<f32> {
        x.clone()
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
        assert!(a.buf.len() >= m * k && b.buf.len() >= k * n && c.len() >= m * n);
        let (va, vb) = (
            view(a.buf, a.transposed, m, k),
            view(b.buf, b.transposed, k, n),
        );
        // SAFETY: the lengths were checked above; c is a distinct &mut so it aliases nothing.
        unsafe {
            gemm_view(
                m,
                n,
                k,
                va,
                vb,
                c.as_mut_ptr(),
                n as isize,
                accumulate,
                parallelism(m * n * k),
            )
        }
    }

    fn add_assign(&self, y: &mut Vec<f32>, x: &Vec<f32>) {
        assert_eq!(y.len(), x.len());
        y.par_chunks_mut(1 << 14)
            .zip(x.par_chunks(1 << 14))
            .for_each(|(y, x)| y.iter_mut().zip(x).for_each(|(y, x)| *y += x));
    }

    fn embed_forward(&self, table: &Vec<f32>, tokens: &[u32], dims: Dims, out: &mut Vec<f32>) {
        let d = dims.d;
        for (row, &t) in out.chunks_exact_mut(d).zip(tokens) {
            let t = t as usize;
            row.copy_from_slice(&table[t * d..(t + 1) * d]);
        }
    }

    fn embed_backward(&self, tokens: &[u32], dout: &Vec<f32>, dims: Dims, dtable: &mut Vec<f32>) {
        let d = dims.d;
        // Sequential: repeated tokens add into the same row in a fixed order.
        for (row, &t) in dout.chunks_exact(d).zip(tokens) {
            let t = t as usize;
            for (a, g) in dtable[t * d..(t + 1) * d].iter_mut().zip(row) {
                *a += g;
            }
        }
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
        let d = dims.d;
        dx.par_chunks_mut(d * ROW_CHUNK)
            .zip(y.par_chunks(d * ROW_CHUNK))
            .zip(dy.par_chunks(d * ROW_CHUNK))
            .zip(rstd.par_chunks(ROW_CHUNK))
            .for_each(|(((dx, y), dy), r)| {
                for (((dxr, yr), dyr), &rs) in dx
                    .chunks_exact_mut(d)
                    .zip(y.chunks_exact(d))
                    .zip(dy.chunks_exact(d))
                    .zip(r)
                {
                    norm_backward_row(yr, dyr, rs, dxr);
                }
            });
    }

    fn theta_forward(&self, a: &Vec<f32>, spec: Theta, s: &mut Vec<f32>) {
        let Theta { norm, n, scale_n } = spec;
        s.copy_from_slice(a);
        s.par_chunks_mut(n * ROW_CHUNK).for_each(|blk| {
            for row in blk.chunks_exact_mut(n) {
                theta(row, norm, scale_n);
            }
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
        da.par_chunks_mut(n * ROW_CHUNK)
            .zip(a.par_chunks(n * ROW_CHUNK))
            .zip(s.par_chunks(n * ROW_CHUNK))
            .zip(ds.par_chunks(n * ROW_CHUNK))
            .for_each(|(((da, a), s), ds)| {
                for (((dar, ar), sr), dsr) in da
                    .chunks_exact_mut(n)
                    .zip(a.chunks_exact(n))
                    .zip(s.chunks_exact(n))
                    .zip(ds.chunks_exact(n))
                {
                    theta_backward_row(ar, sr, dsr, norm, scale_n, dar);
                }
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
        let (q, k, v) = (Shared(q.as_ptr()), Shared(k.as_ptr()), Shared(v.as_ptr()));
        let o = SharedMut(out.as_mut_ptr());
        probs.par_chunks_mut(t * t).enumerate().for_each(|(bh, p)| {
            let (b, h) = (bh / heads, bh % heads);
            let off = (b * t * d + h * hd) as isize;
            let head = |s: Shared| View {
                ptr: s.at(off),
                rs: d as isize,
                cs: 1,
            };
            let kt = View {
                ptr: head(k).ptr,
                rs: 1,
                cs: d as isize,
            };
            // SAFETY: each view spans t rows of stride d starting inside this sequence's
            // block; p is this task's own [t, t] slab.
            unsafe {
                gemm_view(
                    t,
                    t,
                    hd,
                    head(q),
                    kt,
                    p.as_mut_ptr(),
                    t as isize,
                    false,
                    gemm::Parallelism::None,
                );
            }
            for (i, row) in p.chunks_exact_mut(t).enumerate() {
                let live = &mut row[..=i];
                let m = live
                    .iter()
                    .fold(f32::NEG_INFINITY, |m, &x| m.max(x * scale));
                let mut sum = 0.0f32;
                for x in live.iter_mut() {
                    *x = (*x * scale - m).exp();
                    sum += *x;
                }
                let inv = 1.0 / sum;
                live.iter_mut().for_each(|x| *x *= inv);
                row[i + 1..].fill(0.0);
            }
            let pv = View {
                ptr: p.as_ptr(),
                rs: t as isize,
                cs: 1,
            };
            // SAFETY: this task writes only head h's columns of sequence b's rows.
            unsafe {
                gemm_view(
                    t,
                    hd,
                    t,
                    pv,
                    head(v),
                    o.at(off),
                    d as isize,
                    false,
                    gemm::Parallelism::None,
                );
            }
        });
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
        let (q, k, v, g) = (
            Shared(q.as_ptr()),
            Shared(k.as_ptr()),
            Shared(v.as_ptr()),
            Shared(dout.as_ptr()),
        );
        let (dq, dk, dv) = (
            SharedMut(dq.as_mut_ptr()),
            SharedMut(dk.as_mut_ptr()),
            SharedMut(dv.as_mut_ptr()),
        );
        probs.par_chunks(t * t).enumerate().for_each(|(bh, p)| {
            let (b, h) = (bh / heads, bh % heads);
            let off = (b * t * d + h * hd) as isize;
            // SAFETY (all views below): inside sequence b's rows, head h's columns.
            let head = |s: Shared| View {
                ptr: s.at(off),
                rs: d as isize,
                cs: 1,
            };
            let head_t = |s: Shared| View {
                ptr: s.at(off),
                rs: 1,
                cs: d as isize,
            };
            let pt = View {
                ptr: p.as_ptr(),
                rs: 1,
                cs: t as isize,
            };
            let none = gemm::Parallelism::None;
            let mut ds = vec![0.0f32; t * t];
            // SAFETY: as above; ds is this task's own buffer; each task writes only its own
            // head's columns of dq, dk, dv.
            unsafe {
                // dP = dO·Vᵀ
                gemm_view(
                    t,
                    t,
                    hd,
                    head(g),
                    head_t(v),
                    ds.as_mut_ptr(),
                    t as isize,
                    false,
                    none,
                );
            }
            // dS = P ⊙ (dP − Σ_j P dP) · scale
            for (i, (dsr, pr)) in ds.chunks_exact_mut(t).zip(p.chunks_exact(t)).enumerate() {
                let dot: f32 = dsr[..=i].iter().zip(&pr[..=i]).map(|(a, b)| a * b).sum();
                for (x, &pj) in dsr[..=i].iter_mut().zip(&pr[..=i]) {
                    *x = pj * (*x - dot) * scale;
                }
                dsr[i + 1..].fill(0.0);
            }
            let dsv = View {
                ptr: ds.as_ptr(),
                rs: t as isize,
                cs: 1,
            };
            let dst = View {
                ptr: ds.as_ptr(),
                rs: 1,
                cs: t as isize,
            };
            unsafe {
                // dQ = dS·K, dK = dSᵀ·Q, dV = Pᵀ·dO
                gemm_view(t, hd, t, dsv, head(k), dq.at(off), d as isize, false, none);
                gemm_view(t, hd, t, dst, head(q), dk.at(off), d as isize, false, none);
                gemm_view(t, hd, t, pt, head(g), dv.at(off), d as isize, false, none);
            }
        });
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
        y.par_chunks_mut(d)
            .zip(xhat.par_chunks(d))
            .for_each(|(yr, xr)| {
                for (((o, &xv), &wv), &bv) in yr.iter_mut().zip(xr).zip(w).zip(b) {
                    *o = xv * wv + bv;
                }
            });
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
        for (xr, gr) in xhat.chunks_exact(d).zip(dy.chunks_exact(d)) {
            for i in 0..d {
                dw[i] += gr[i] * xr[i];
                db[i] += gr[i];
            }
        }
        dx.par_chunks_mut(d)
            .zip(xhat.par_chunks(d))
            .zip(dy.par_chunks(d))
            .zip(rstd.par_iter())
            .for_each(|(((dxr, xr), gr), &rs)| {
                let dn: Vec<f32> = gr.iter().zip(w).map(|(g, w)| g * w).collect();
                norm_backward_row(xr, &dn, rs, dxr);
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
                let m = z.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                let mut sum = 0.0f64;
                for (gi, &zi) in g.iter_mut().zip(z) {
                    let e = (zi - m).exp();
                    *gi = e;
                    sum += e as f64;
                }
                *loss = sum.ln() + m as f64 - z[t as usize] as f64;
                let inv = (1.0 / sum) as f32 * grad_scale;
                g.iter_mut().for_each(|gi| *gi *= inv);
                g[t as usize] -= grad_scale;
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
                let (mean, rs) = row_stats(xr, eps);
                for (o, &v) in yr.iter_mut().zip(xr) {
                    *o = ((v as f64 - mean) * rs) as f32;
                }
                *rr = rs as f32;
            }
        });
}

/// Backward of y = (x − mean)·rstd for one row: dx = rstd·(dy − mean(dy) − y·mean(dy⊙y)).
fn norm_backward_row(y: &[f32], dy: &[f32], rstd: f32, dx: &mut [f32]) {
    let n = y.len() as f32;
    let mean_dy = dy.iter().sum::<f32>() / n;
    let mean_dyy = dy.iter().zip(y).map(|(g, y)| g * y).sum::<f32>() / n;
    for ((o, &g), &yv) in dx.iter_mut().zip(dy).zip(y) {
        *o = rstd * (g - mean_dy - yv * mean_dyy);
    }
}

/// Backward of Θ for one row of scores `a` with output `s` and upstream `ds`.
fn theta_backward_row(
    a: &[f32],
    s: &[f32],
    ds: &[f32],
    norm: Norm,
    scale_n: usize,
    da: &mut [f32],
) {
    let sqrt_n = (scale_n as f64).sqrt();
    match norm {
        Norm::L2NormGelu => {
            // u = a·√n/‖a‖, s = GELU(u); da = (√n/‖a‖)·(gu − â(â·gu)), gu = ds·GELU'(u).
            let ss: f64 = a.iter().map(|&x| x as f64 * x as f64).sum();
            if ss == 0.0 {
                da.fill(0.0);
                return;
            }
            let r = ss.sqrt();
            let f = (sqrt_n / r) as f32;
            let mut proj = 0.0f64;
            for ((o, &x), &g) in da.iter_mut().zip(a).zip(ds) {
                let gu = g * gelu_grad(x * f);
                *o = gu;
                proj += gu as f64 * x as f64;
            }
            let c = (proj / ss) as f32; // (â·gu)/‖a‖ folded with the second â
            for (o, &x) in da.iter_mut().zip(a) {
                *o = f * (*o - x * c);
            }
        }
        Norm::GeluL2Norm => {
            // g = GELU(a), s = g·√n/‖g‖; dg = (√n/‖g‖)(ds − ĝ(ĝ·ds)); da = dg·GELU'(a).
            let gs: Vec<f32> = a.iter().map(|&x| gelu(x)).collect();
            let ss: f64 = gs.iter().map(|&x| x as f64 * x as f64).sum();
            if ss == 0.0 {
                da.fill(0.0);
                return;
            }
            let f = (sqrt_n / ss.sqrt()) as f32;
            let proj: f64 = gs.iter().zip(ds).map(|(&g, &h)| g as f64 * h as f64).sum();
            let c = (proj / ss) as f32;
            for (((o, &x), &g), &h) in da.iter_mut().zip(a).zip(&gs).zip(ds) {
                *o = f * (h - g * c) * gelu_grad(x);
            }
        }
        Norm::Softmax => {
            // s = n·softmax(a): da_j = s_j·(ds_j − (1/n)·Σ_i ds_i s_i).
            let n = a.len() as f64;
            let dot: f64 = s.iter().zip(ds).map(|(&x, &g)| x as f64 * g as f64).sum();
            let c = (dot / n) as f32;
            for ((o, &x), &g) in da.iter_mut().zip(s).zip(ds) {
                *o = x * (g - c);
            }
        }
    }
}

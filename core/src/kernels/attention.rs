//! Causal multi-head attention over the KV cache with the dispatched dot and axpy.
//! Reference: `ops::attention::causal_attention` (same loop, scalar dot and axpy).

use super::vector::{axpy, dot};
use alloc::vec;

/// q: [t, d] at positions pos0..pos0+t; k, v: [pos0 + t, d]. out: [t, d].
pub fn causal_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    d: usize,
    n_heads: usize,
    pos0: usize,
    out: &mut [f32],
) {
    let hd = d / n_heads;
    let scale = 1.0 / libm::sqrtf(hd as f32);
    let total = k.len() / d;
    let mut p = vec![0.0f32; total];
    out.fill(0.0);
    for (i, (qrow, orow)) in q.chunks_exact(d).zip(out.chunks_exact_mut(d)).enumerate() {
        let len = pos0 + i + 1;
        for h in 0..n_heads {
            let r = h * hd..(h + 1) * hd;
            let qh = &qrow[r.clone()];
            let mut m = f32::NEG_INFINITY;
            for (j, pj) in p[..len].iter_mut().enumerate() {
                *pj = dot(qh, &k[j * d + r.start..j * d + r.end]) * scale;
                m = m.max(*pj);
            }
            let mut sum = 0.0f32;
            for pj in p[..len].iter_mut() {
                *pj = libm::expf(*pj - m);
                sum += *pj;
            }
            let oh = &mut orow[r.clone()];
            for (j, pj) in p[..len].iter().enumerate() {
                axpy(pj / sum, &v[j * d + r.start..j * d + r.end], oh);
            }
        }
    }
}

//! Dot products and matrix products over row-major slices.
//!
//! Written with independent accumulators so that the compiler vectorises them on any target
//! without reassociation flags; the SIMD twins with runtime dispatch live in `kernels`.

/// Σ a[i]·b[i], eight independent partial sums.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let (ac, ar) = a.split_at(a.len() / 8 * 8);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(8).zip(bc.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ar.iter().zip(br) {
        s += x * y;
    }
    s
}

/// y += alpha · x.
#[inline]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    debug_assert_eq!(x.len(), y.len());
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// out[t, n] = x[t, k] · w[n, k]ᵀ: every output is a row-by-row dot product, so each row of `w`
/// streams once per block of four input rows.
pub fn matmul_nt(x: &[f32], w: &[f32], k: usize, out: &mut [f32]) {
    let t = x.len() / k;
    let n = w.len() / k;
    debug_assert_eq!(out.len(), t * n);
    let mut r = 0;
    while r + 4 <= t {
        let xs = [
            &x[r * k..(r + 1) * k],
            &x[(r + 1) * k..(r + 2) * k],
            &x[(r + 2) * k..(r + 3) * k],
            &x[(r + 3) * k..(r + 4) * k],
        ];
        for (j, wj) in w.chunks_exact(k).enumerate() {
            for (b, xb) in xs.iter().enumerate() {
                out[(r + b) * n + j] = dot(xb, wj);
            }
        }
        r += 4;
    }
    for r in r..t {
        let xr = &x[r * k..(r + 1) * k];
        for (j, wj) in w.chunks_exact(k).enumerate() {
            out[r * n + j] = dot(xr, wj);
        }
    }
}

/// out[t, m] = s[t, n] · v[n, m]: each row of `v` streams once per block of four rows, scaled by
/// the matching score (zero scores, common after GELU, skip the row).
pub fn matmul_nn(s: &[f32], v: &[f32], m: usize, out: &mut [f32]) {
    let n = v.len() / m;
    let t = s.len() / n;
    debug_assert_eq!(out.len(), t * m);
    out.fill(0.0);
    for (s_blk, o_blk) in s.chunks(4 * n).zip(out.chunks_mut(4 * m)) {
        for (j, vj) in v.chunks_exact(m).enumerate() {
            for (srow, orow) in s_blk.chunks_exact(n).zip(o_blk.chunks_exact_mut(m)) {
                let a = srow[j];
                if a != 0.0 {
                    axpy(a, vj, orow);
                }
            }
        }
    }
}

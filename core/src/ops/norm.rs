//! LayerNorm over each row: non-parametric inside the layers, affine at the end.
//! Mean and variance are accumulated in f64 so long rows lose nothing to cancellation.

/// y = (x − mean) / √(var + eps), biased variance, per row of width `d`, in place.
pub fn layer_norm(x: &mut [f32], d: usize, eps: f32) {
    for row in x.chunks_exact_mut(d) {
        let (mean, rstd) = row_stats(row, eps);
        for v in row.iter_mut() {
            *v = ((*v as f64 - mean) * rstd) as f32;
        }
    }
}

/// Affine LayerNorm: y = norm(x) · w + b, in place.
pub fn layer_norm_affine(x: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    let d = w.len();
    for row in x.chunks_exact_mut(d) {
        let (mean, rstd) = row_stats(row, eps);
        for ((v, wi), bi) in row.iter_mut().zip(w).zip(b) {
            *v = ((*v as f64 - mean) * rstd) as f32 * wi + bi;
        }
    }
}

/// (mean, 1/√(var + eps)) of one row.
pub fn row_stats(row: &[f32], eps: f32) -> (f64, f64) {
    let n = row.len() as f64;
    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = row
        .iter()
        .map(|&v| (v as f64 - mean) * (v as f64 - mean))
        .sum::<f64>()
        / n;
    (mean, 1.0 / libm::sqrt(var + eps as f64))
}

/// Forward of one row for training: y = (x − mean)·rstd; returns rstd (saved for the backward).
pub fn layer_norm_row(x: &[f32], eps: f32, y: &mut [f32]) -> f32 {
    let (mean, rstd) = row_stats(x, eps);
    for (o, &v) in y.iter_mut().zip(x) {
        *o = ((v as f64 - mean) * rstd) as f32;
    }
    rstd as f32
}

/// Backward of y = (x − mean)·rstd for one row: dx = rstd·(dy − mean(dy) − y·mean(dy⊙y)).
pub fn layer_norm_backward_row(y: &[f32], dy: &[f32], rstd: f32, dx: &mut [f32]) {
    let n = y.len() as f32;
    let mean_dy = dy.iter().sum::<f32>() / n;
    let mean_dyy = dy.iter().zip(y).map(|(g, y)| g * y).sum::<f32>() / n;
    for ((o, &g), &yv) in dx.iter_mut().zip(dy).zip(y) {
        *o = rstd * (g - mean_dy - yv * mean_dyy);
    }
}

/// The affine part of the final norm on one normalised row: y = x̂·w + b.
pub fn affine_row(xhat: &[f32], w: &[f32], b: &[f32], y: &mut [f32]) {
    for (((o, &xv), &wv), &bv) in y.iter_mut().zip(xhat).zip(w).zip(b) {
        *o = xv * wv + bv;
    }
}

/// The affine norm's parameter gradients, dw += Σ dy⊙x̂ and db += Σ dy over the rows, in row
/// order (a fixed order whatever the thread count).
pub fn affine_params_backward(xhat: &[f32], dy: &[f32], dw: &mut [f32], db: &mut [f32]) {
    let d = dw.len();
    for (xr, gr) in xhat.chunks_exact(d).zip(dy.chunks_exact(d)) {
        for i in 0..d {
            dw[i] += gr[i] * xr[i];
            db[i] += gr[i];
        }
    }
}

/// The affine norm's input gradient for one row: the plain norm's backward of dy⊙w.
pub fn affine_backward_row(xhat: &[f32], rstd: f32, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    let dn: alloc::vec::Vec<f32> = dy.iter().zip(w).map(|(g, w)| g * w).collect();
    layer_norm_backward_row(xhat, &dn, rstd, dx);
}

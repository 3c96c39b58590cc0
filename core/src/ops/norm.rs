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

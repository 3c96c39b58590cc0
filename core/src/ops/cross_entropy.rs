//! Cross-entropy of the next token over one row of logits, with its gradient.

/// Loss −log softmax(z)[target] (accumulated in f64) and, in `g`, its gradient times
/// `grad_scale`: (softmax(z) − onehot(target))·grad_scale.
pub fn cross_entropy_row(z: &[f32], target: usize, grad_scale: f32, g: &mut [f32]) -> f64 {
    let m = z.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let mut sum = 0.0f64;
    for (gi, &zi) in g.iter_mut().zip(z) {
        let e = super::exp_train(zi - m);
        *gi = e;
        sum += e as f64;
    }
    let loss = super::ln_train(sum) + m as f64 - z[target] as f64;
    let inv = (1.0 / sum) as f32 * grad_scale;
    g.iter_mut().for_each(|gi| *gi *= inv);
    g[target] -= grad_scale;
    loss
}

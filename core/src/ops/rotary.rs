//! GPT-NeoX rotary position embedding: the first `rot` dims of each head, "rotate half" pairs
//! (x_i, x_{i+rot/2}), inv_freq_i = base^(−2i/rot), angles computed in f32 as the reference does.

use alloc::vec;
use alloc::vec::Vec;

/// The rotary frequencies; cos and sin are computed per position when applied, so memory does
/// not grow with the context length.
#[derive(Clone, Debug)]
pub struct RopeTable {
    inv_freq: Vec<f32>,
}

impl RopeTable {
    /// Frequencies for `rot` rotated dims per head (even) and the given `base`.
    pub fn new(rot: usize, base: f32) -> RopeTable {
        let half = rot / 2;
        RopeTable {
            inv_freq: (0..half)
                .map(|i| 1.0 / libm::powf(base, (2 * i) as f32 / rot as f32))
                .collect(),
        }
    }

    /// Number of rotated dims per head.
    pub fn dims(&self) -> usize {
        2 * self.inv_freq.len()
    }

    /// cos and sin of position `pos`'s angles, one per rotated pair. The angle is rounded to
    /// f32 before cos/sin, as the reference computes it.
    pub fn angles(&self, pos: usize, cos: &mut [f32], sin: &mut [f32]) {
        for ((c, s), f) in cos.iter_mut().zip(sin.iter_mut()).zip(&self.inv_freq) {
            let angle = pos as f32 * f;
            *c = libm::cosf(angle);
            *s = libm::sinf(angle);
        }
    }

    /// Rotate rows x[t, d] in place; row i sits at position `pos0 + i`. (Training's backward,
    /// the inverse rotation, runs [`rotate_row`] over tables held by its backend.)
    pub fn apply(&self, x: &mut [f32], d: usize, head_dim: usize, pos0: usize) {
        let h = self.inv_freq.len();
        if h == 0 {
            return;
        }
        let mut cos = vec![0.0f32; h];
        let mut sin = vec![0.0f32; h];
        for (i, row) in x.chunks_exact_mut(d).enumerate() {
            self.angles(pos0 + i, &mut cos, &mut sin);
            rotate_row(row, head_dim, &cos, &sin, false);
        }
    }
}

/// Rotate every head of one row by the angles whose cos and sin are given (`cos.len()` pairs
/// per head), or by their negation when `inverse` (the transpose: the backward).
pub fn rotate_row(row: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32], inverse: bool) {
    let h = cos.len();
    for head in row.chunks_exact_mut(head_dim) {
        let (x1, rest) = head.split_at_mut(h);
        let x2 = &mut rest[..h];
        for j in 0..h {
            let s = if inverse { -sin[j] } else { sin[j] };
            let (a, b) = (x1[j], x2[j]);
            x1[j] = a * cos[j] - b * s;
            x2[j] = b * cos[j] + a * s;
        }
    }
}

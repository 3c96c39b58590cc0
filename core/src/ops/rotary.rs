//! GPT-NeoX rotary position embedding: the first `rot` dims of each head, "rotate half" pairs
//! (x_i, x_{i+rot/2}), inv_freq_i = base^(−2i/rot), angles computed in f32 as the reference does.

use alloc::vec::Vec;

/// cos and sin of every (position, frequency) pair up to the context length.
#[derive(Clone, Debug)]
pub struct RopeTable {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTable {
    pub fn new(rot: usize, base: f32, max_positions: usize) -> RopeTable {
        let half = rot / 2;
        let inv_freq: Vec<f32> =
            (0..half).map(|i| 1.0 / libm::powf(base, (2 * i) as f32 / rot as f32)).collect();
        let mut cos = Vec::with_capacity(max_positions * half);
        let mut sin = Vec::with_capacity(max_positions * half);
        for p in 0..max_positions {
            for f in &inv_freq {
                let angle = p as f32 * f;
                cos.push(libm::cosf(angle));
                sin.push(libm::sinf(angle));
            }
        }
        RopeTable { half, cos, sin }
    }

    /// Number of rotated dims per head.
    pub fn dims(&self) -> usize {
        2 * self.half
    }

    /// (cos, sin) rows for one position.
    pub fn at(&self, pos: usize) -> (&[f32], &[f32]) {
        let r = pos * self.half..(pos + 1) * self.half;
        (&self.cos[r.clone()], &self.sin[r])
    }

    /// Rotate rows x[t, d] in place; row i sits at position `pos0 + i`.
    pub fn apply(&self, x: &mut [f32], d: usize, head_dim: usize, pos0: usize) {
        let h = self.half;
        if h == 0 {
            return;
        }
        for (i, row) in x.chunks_exact_mut(d).enumerate() {
            let (cos, sin) = self.at(pos0 + i);
            for head in row.chunks_exact_mut(head_dim) {
                let (x1, rest) = head.split_at_mut(h);
                let x2 = &mut rest[..h];
                for j in 0..h {
                    let (a, b) = (x1[j], x2[j]);
                    x1[j] = a * cos[j] - b * sin[j];
                    x2[j] = b * cos[j] + a * sin[j];
                }
            }
        }
    }
}

//! The token embedding: a row lookup forward, a scatter-add backward. Its tied use as the
//! output head (logits = x·Eᵀ) is a row-dot product (`linalg::rows_dot`, `kernels::matmul`).

/// `out[r] = table[tokens[r]]` (rows of width d).
pub fn embed(table: &[f32], tokens: &[u32], d: usize, out: &mut [f32]) {
    for (row, &t) in out.chunks_exact_mut(d).zip(tokens) {
        let t = t as usize;
        row.copy_from_slice(&table[t * d..(t + 1) * d]);
    }
}

/// `dtable[tokens[r]] += dout[r]`, in row order (repeated tokens add in a fixed order).
pub fn embed_backward(tokens: &[u32], dout: &[f32], d: usize, dtable: &mut [f32]) {
    for (row, &t) in dout.chunks_exact(d).zip(tokens) {
        let t = t as usize;
        for (a, g) in dtable[t * d..(t + 1) * d].iter_mut().zip(row) {
            *a += g;
        }
    }
}

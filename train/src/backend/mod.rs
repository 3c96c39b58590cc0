//! What a device must do to train: every op's forward and its backward, side by side.
//!
//! The tape (`crate::tape`) walks core's model graph and calls these; a backend owns the memory
//! and the arithmetic. `cpu` is the reference device (gemm + rayon); a CUDA backend implements the
//! same trait behind the `cuda` feature.

pub mod cpu;

use tokenformer_core::ops::rotary::RopeTable;
use tokenformer_core::Norm;

/// The shape of one batch of rows: `batch` sequences of `seq` positions, row r at position
/// r % seq of sequence r / seq.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rows {
    pub batch: usize,
    pub seq: usize,
}

impl Rows {
    pub fn count(self) -> usize {
        self.batch * self.seq
    }
}

/// A matrix operand: row-major [rows, cols], or its transpose when `t` is set.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a, B: Backend + ?Sized> {
    pub buf: &'a B::Buf,
    pub t: bool,
}

pub trait Backend: Sync {
    type Buf: Send + Sync;

    fn name(&self) -> &'static str;
    fn zeros(&self, n: usize) -> Self::Buf;
    fn upload(&self, x: &[f32]) -> Self::Buf;
    fn download(&self, x: &Self::Buf) -> Vec<f32>;
    fn fill_zero(&self, x: &mut Self::Buf);

    /// c[m, n] (+)= a[m, k] · b[k, n], each operand possibly stored transposed.
    #[allow(clippy::too_many_arguments)]
    fn matmul(
        &self,
        m: usize,
        n: usize,
        k: usize,
        a: Mat<'_, Self>,
        b: Mat<'_, Self>,
        c: &mut Self::Buf,
        accumulate: bool,
    );
    /// y += x.
    fn add_assign(&self, y: &mut Self::Buf, x: &Self::Buf);

    /// out[r] = table[tokens[r]] (rows of width d).
    fn embed_forward(&self, table: &Self::Buf, tokens: &[u32], d: usize, out: &mut Self::Buf);
    /// dtable[tokens[r]] += dout[r].
    fn embed_backward(&self, tokens: &[u32], dout: &Self::Buf, d: usize, dtable: &mut Self::Buf);

    /// Non-parametric LayerNorm: y = (x − mean)·rstd per row; saves rstd.
    fn layer_norm_forward(
        &self,
        x: &Self::Buf,
        d: usize,
        eps: f32,
        y: &mut Self::Buf,
        rstd: &mut Self::Buf,
    );
    /// dx = rstd·(dy − mean(dy) − y·mean(dy⊙y)).
    fn layer_norm_backward(
        &self,
        y: &Self::Buf,
        rstd: &Self::Buf,
        dy: &Self::Buf,
        d: usize,
        dx: &mut Self::Buf,
    );

    /// Θ row by row over n parameter tokens (spec: "Pattention").
    fn theta_forward(&self, a: &Self::Buf, n: usize, norm: Norm, scale_n: usize, s: &mut Self::Buf);
    /// da from ds, given the scores a and Θ(a) = s.
    #[allow(clippy::too_many_arguments)]
    fn theta_backward(
        &self,
        a: &Self::Buf,
        s: &Self::Buf,
        ds: &Self::Buf,
        n: usize,
        norm: Norm,
        scale_n: usize,
        da: &mut Self::Buf,
    );

    /// Partial rotary in place at each row's position in its sequence; `inverse` rotates back
    /// (the backward).
    fn rotary(
        &self,
        x: &mut Self::Buf,
        rows: Rows,
        d: usize,
        head_dim: usize,
        rope: &RopeTable,
        inverse: bool,
    );

    /// Causal softmax attention per sequence and head; saves the probabilities
    /// [batch, heads, seq, seq].
    #[allow(clippy::too_many_arguments)]
    fn attention_forward(
        &self,
        q: &Self::Buf,
        k: &Self::Buf,
        v: &Self::Buf,
        rows: Rows,
        d: usize,
        heads: usize,
        out: &mut Self::Buf,
        probs: &mut Self::Buf,
    );
    #[allow(clippy::too_many_arguments)]
    fn attention_backward(
        &self,
        q: &Self::Buf,
        k: &Self::Buf,
        v: &Self::Buf,
        probs: &Self::Buf,
        dout: &Self::Buf,
        rows: Rows,
        d: usize,
        heads: usize,
        dq: &mut Self::Buf,
        dk: &mut Self::Buf,
        dv: &mut Self::Buf,
    );

    /// Affine LayerNorm: y = xhat·w + b; saves xhat and rstd.
    #[allow(clippy::too_many_arguments)]
    fn affine_norm_forward(
        &self,
        x: &Self::Buf,
        w: &Self::Buf,
        b: &Self::Buf,
        eps: f32,
        xhat: &mut Self::Buf,
        rstd: &mut Self::Buf,
        y: &mut Self::Buf,
    );
    /// dx, and dw += Σ dy⊙xhat, db += Σ dy.
    #[allow(clippy::too_many_arguments)]
    fn affine_norm_backward(
        &self,
        xhat: &Self::Buf,
        rstd: &Self::Buf,
        w: &Self::Buf,
        dy: &Self::Buf,
        dx: &mut Self::Buf,
        dw: &mut Self::Buf,
        db: &mut Self::Buf,
    );

    /// Per-row cross-entropy of logits [rows, vocab] against targets; writes
    /// dlogits = (softmax − onehot)·grad_scale and returns the per-row losses (nats).
    fn cross_entropy(
        &self,
        logits: &Self::Buf,
        targets: &[u32],
        vocab: usize,
        grad_scale: f32,
        dlogits: &mut Self::Buf,
    ) -> Vec<f64>;

    /// Σ x², accumulated in f64 in a fixed order (clipping must be reproducible).
    fn sum_squares(&self, x: &Self::Buf) -> f64;
    /// x *= s.
    fn scale(&self, x: &mut Self::Buf, s: f32);
    /// One AdamW update of p with gradient g and moments m, v (decoupled weight decay).
    #[allow(clippy::too_many_arguments)]
    fn adamw(
        &self,
        p: &mut Self::Buf,
        g: &Self::Buf,
        m: &mut Self::Buf,
        v: &mut Self::Buf,
        step: AdamStep,
    );
}

/// The scalars of one AdamW update.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// 1 − β1^t and 1 − β2^t for the bias correction.
    pub bias1: f32,
    pub bias2: f32,
}

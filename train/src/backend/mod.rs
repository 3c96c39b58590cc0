//! What a device must do to train: every op's forward and its backward, side by side.
//!
//! The tape (`crate::tape`) walks core's model graph and calls these; a backend owns the memory
//! and the arithmetic. `cpu` is the reference device (gemm + rayon). Nothing in the interface is
//! host memory but token ids and targets (`&[u32]`, which a device backend uploads itself) and
//! the per-row losses it returns: a device backend implements this trait and the tape runs
//! unchanged (`tests/opaque_backend.rs` checks that with buffers reachable only through
//! `upload` / `download`).

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;

use crate::collective::{all_reduce_via_host, Collective};
use tokenformer_core::ops::rotary::RopeTable;
use tokenformer_core::{Config, ThetaKind};

/// The arithmetic of the products. `F32` is exact f32 everywhere (the parity mode, every
/// backend). `Bf16` (CUDA only) rounds the operands of every product to bfloat16 and accumulates
/// in f32 (llm.c's recipe); weights, moments, norms, Θ, softmax and the loss stay f32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// Exact f32 products (every backend).
    #[default]
    F32,
    /// bf16 operands with f32 accumulation (CUDA only).
    Bf16,
}

impl Precision {
    /// The name `--precision` takes: `f32` or `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = PrecisionError;
    fn from_str(s: &str) -> Result<Precision, PrecisionError> {
        match s {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(PrecisionError::Unknown(s.to_string())),
        }
    }
}

/// A precision that is not known, or that a backend does not implement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrecisionError {
    /// A name other than `f32` or `bf16`.
    Unknown(String),
    /// A precision the backend does not implement.
    Unsupported {
        /// The backend.
        backend: &'static str,
        /// The precision asked for.
        precision: Precision,
    },
}

impl std::fmt::Display for PrecisionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PrecisionError::Unknown(s) => write!(f, "--precision must be f32 or bf16, got `{s}`"),
            PrecisionError::Unsupported { backend, precision } => write!(
                f,
                "--precision {}: the {backend} backend computes in f32 only (bf16 is a CUDA mode)",
                precision.name()
            ),
        }
    }
}

impl std::error::Error for PrecisionError {}

/// The CPU backend's answer to a precision: f32 only.
pub fn cpu_precision(p: Precision) -> Result<(), PrecisionError> {
    match p {
        Precision::F32 => Ok(()),
        precision => Err(PrecisionError::Unsupported {
            backend: "cpu",
            precision,
        }),
    }
}

/// The shape of one batch of rows: `batch` sequences of `seq` positions, row r at position
/// r % seq of sequence r / seq.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rows {
    /// Sequences.
    pub batch: usize,
    /// Positions per sequence.
    pub seq: usize,
}

impl Rows {
    /// Rows in all: `batch · seq`.
    pub fn count(self) -> usize {
        self.batch * self.seq
    }
}

/// The shape of an activation: `rows` of width `d`, split into `heads` heads for attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    /// The rows.
    pub rows: Rows,
    /// Width of each row.
    pub d: usize,
    /// Attention heads (they split `d`).
    pub heads: usize,
}

impl Dims {
    /// Rows of the model's width (`d_model`, `n_heads`).
    pub fn new(rows: Rows, cfg: &Config) -> Dims {
        Dims {
            rows,
            d: cfg.d_model,
            heads: cfg.n_heads,
        }
    }

    /// Elements of one activation.
    pub fn numel(self) -> usize {
        self.rows.count() * self.d
    }

    /// Channels per head: `d / heads`.
    pub fn head_dim(self) -> usize {
        self.d / self.heads
    }
}

/// The sizes of c[m, n] (+)= a[m, k] · b[k, n].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatMul {
    /// Rows of a and c.
    pub m: usize,
    /// Columns of b and c.
    pub n: usize,
    /// The summed dimension: columns of a, rows of b.
    pub k: usize,
}

/// A matrix operand: row-major [rows, cols], or its transpose when `transposed` is set.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a, B: Backend + ?Sized> {
    /// The stored matrix.
    pub buf: &'a B::Buf,
    /// Whether the operand is the transpose of what is stored.
    pub transposed: bool,
}

impl<'a, B: Backend + ?Sized> Mat<'a, B> {
    /// The matrix as stored.
    pub fn n(buf: &'a B::Buf) -> Self {
        Mat {
            buf,
            transposed: false,
        }
    }

    /// The transpose of the stored matrix.
    pub fn t(buf: &'a B::Buf) -> Self {
        Mat {
            buf,
            transposed: true,
        }
    }
}

/// Θ over rows of `n` scores (a Pattention's parameter tokens); `scale_n` sets its √n (it
/// differs from n in a model grown with its scale kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Theta {
    /// Which Θ.
    pub norm: ThetaKind,
    /// Scores per row (the parameter-token count).
    pub n: usize,
    /// The token count whose √ scales the scores.
    pub scale_n: usize,
}

/// The three inputs of attention, or their gradients.
#[derive(Clone, Copy, Debug)]
pub struct Qkv<T> {
    /// Queries.
    pub q: T,
    /// Keys.
    pub k: T,
    /// Values.
    pub v: T,
}

impl<T> Qkv<T> {
    /// Apply `f` to q, k and v, in that order.
    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> Qkv<U> {
        let (q, k, v) = (f(self.q), f(self.k), f(self.v));
        Qkv { q, k, v }
    }
}

/// The weight and bias of an affine LayerNorm, or their gradients.
#[derive(Debug)]
pub struct Affine<T> {
    /// The gain, `[d]`.
    pub weight: T,
    /// The bias, `[d]`.
    pub bias: T,
}

/// The rotary tables on the device: cos and sin of position p's angles at
/// [p·half, (p + 1)·half), for positions 0..seq.
pub struct RopeTables<B: Backend + ?Sized> {
    /// cos of the angles, [seq, half].
    pub cos: B::Buf,
    /// sin of the angles, [seq, half].
    pub sin: B::Buf,
    /// Rotated pairs per head (half the rotated dims).
    pub half: usize,
}

impl<B: Backend> RopeTables<B> {
    /// The tables of `rope` for positions `0..seq`, uploaded to `be`.
    pub fn new(be: &B, rope: &RopeTable, seq: usize) -> Self {
        let half = rope.dims() / 2;
        let (mut cos, mut sin) = (vec![0.0; seq * half], vec![0.0; seq * half]);
        if half > 0 {
            let rows = cos.chunks_exact_mut(half).zip(sin.chunks_exact_mut(half));
            for (p, (c, s)) in rows.enumerate() {
                rope.angles(p, c, s);
            }
        }
        RopeTables {
            cos: be.upload(&cos),
            sin: be.upload(&sin),
            half,
        }
    }
}

/// A training device: owns buffers of f32 and runs every op's forward and backward on them.
/// Shapes are given by the caller ([`Dims`], [`MatMul`]); buffers are flat and row-major. The
/// CPU backend ([`cpu::Cpu`]) is the reference every other backend is tested against.
///
/// Every op writes each value of its outputs (unless documented as accumulating, `+=`): the
/// tape hands ops buffers reused from an earlier step, whose stale values must never be read.
pub trait Backend: Sync {
    /// A buffer of f32 values on the device.
    type Buf: Send + Sync;

    /// The backend's name, for logs (`cpu`, `cuda`).
    fn name(&self) -> &'static str;
    /// A buffer of `n` zeros.
    fn zeros(&self, n: usize) -> Self::Buf;
    /// A buffer holding a copy of host values `x`.
    fn upload(&self, x: &[f32]) -> Self::Buf;
    /// A buffer's values, copied to the host.
    fn download(&self, x: &Self::Buf) -> Vec<f32>;
    /// Set every value of `x` to 0.
    fn fill_zero(&self, x: &mut Self::Buf);
    /// The number of values in x (what `zeros` was asked for).
    fn len(&self, x: &Self::Buf) -> usize;
    /// y = x (equal lengths).
    fn copy_into(&self, x: &Self::Buf, y: &mut Self::Buf);

    /// c (+)= a · b, each operand possibly stored transposed.
    fn matmul(
        &self,
        size: MatMul,
        a: Mat<'_, Self>,
        b: Mat<'_, Self>,
        c: &mut Self::Buf,
        accumulate: bool,
    );
    /// y += x.
    fn add_assign(&self, y: &mut Self::Buf, x: &Self::Buf);

    /// `out[r] = table[tokens[r]]` (rows of width d).
    fn embed_forward(&self, table: &Self::Buf, tokens: &[u32], dims: Dims, out: &mut Self::Buf);
    /// `dtable[tokens[r]] += dout[r]`.
    fn embed_backward(&self, tokens: &[u32], dout: &Self::Buf, dims: Dims, dtable: &mut Self::Buf);

    /// Non-parametric LayerNorm: y = (x − mean)·rstd per row; saves rstd.
    fn layer_norm_forward(
        &self,
        x: &Self::Buf,
        dims: Dims,
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
        dims: Dims,
        dx: &mut Self::Buf,
    );

    /// Θ row by row (spec: "Pattention").
    fn theta_forward(&self, a: &Self::Buf, theta: Theta, s: &mut Self::Buf);
    /// da from ds, given the scores a and Θ(a) = s.
    fn theta_backward(
        &self,
        a: &Self::Buf,
        s: &Self::Buf,
        ds: &Self::Buf,
        theta: Theta,
        da: &mut Self::Buf,
    );

    /// Partial rotary in place at each row's position in its sequence; `inverse` rotates back
    /// (the backward).
    fn rotary(&self, x: &mut Self::Buf, dims: Dims, rope: &RopeTables<Self>, inverse: bool);

    /// Causal softmax attention per sequence and head; saves the probabilities
    /// [batch, heads, seq, seq].
    fn attention_forward(
        &self,
        x: Qkv<&Self::Buf>,
        dims: Dims,
        out: &mut Self::Buf,
        probs: &mut Self::Buf,
    );
    /// dq, dk and dv from dout and the saved probabilities (overwritten, not accumulated).
    fn attention_backward(
        &self,
        x: Qkv<&Self::Buf>,
        probs: &Self::Buf,
        dout: &Self::Buf,
        dims: Dims,
        dx: Qkv<&mut Self::Buf>,
    );

    /// Affine LayerNorm: y = xhat·w + b; saves xhat and rstd.
    fn affine_norm_forward(
        &self,
        x: &Self::Buf,
        p: Affine<&Self::Buf>,
        eps: f32,
        xhat: &mut Self::Buf,
        rstd: &mut Self::Buf,
        y: &mut Self::Buf,
    );
    /// dx, and dw += Σ dy⊙xhat, db += Σ dy.
    fn affine_norm_backward(
        &self,
        xhat: &Self::Buf,
        rstd: &Self::Buf,
        w: &Self::Buf,
        dy: &Self::Buf,
        dx: &mut Self::Buf,
        dp: Affine<&mut Self::Buf>,
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
    fn adamw(
        &self,
        p: &mut Self::Buf,
        g: &Self::Buf,
        m: &mut Self::Buf,
        v: &mut Self::Buf,
        step: AdamStep,
    );

    /// Replace each of `bufs` on every rank of `comm` by its sum over the ranks (the gradient
    /// all-reduce of data-parallel training; nothing with one rank). The default goes through
    /// the host ([`all_reduce_via_host`]); a device backend may sum its buffers where they are.
    fn all_reduce_sum(&self, comm: &dyn Collective, bufs: &mut [Self::Buf]) {
        all_reduce_via_host(self, comm, bufs)
    }
}

/// The scalars of one AdamW update.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    /// Learning rate of this step (schedule applied).
    pub lr: f32,
    /// β1 of the first moment.
    pub beta1: f32,
    /// β2 of the second moment.
    pub beta2: f32,
    /// ε added to √v.
    pub eps: f32,
    /// Decoupled weight decay (0 for parameters that are not decayed).
    pub weight_decay: f32,
    /// 1 − β1^t, the bias correction of the first moment.
    pub bias1: f32,
    /// 1 − β2^t, the bias correction of the second moment.
    pub bias2: f32,
}

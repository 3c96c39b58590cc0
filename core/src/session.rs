//! Inference: the graph's `Ops` over f32 slices, with a KV cache for incremental decoding.

use crate::config::{Config, PattentionKind};
use crate::graph::{self, Ops, Pattn};
use crate::kernels::{matmul, vector::Dispatch};
use crate::model::{LayerWeights, Model};
use crate::ops::{attention, norm};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// Rows × cols of f32, row-major: the activations of inference.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Number of rows (positions).
    pub rows: usize,
    /// Values per row.
    pub cols: usize,
    /// `rows · cols` values, row-major.
    pub data: Vec<f32>,
}

impl Tensor {
    /// A `rows × cols` tensor of zeros.
    pub fn zeros(rows: usize, cols: usize) -> Tensor {
        Tensor {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// Row `i` (`cols` values). Panics if `i >= rows`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

/// Why [`Session::feed`] or [`Session::feed_all`] refused its tokens; the cache is unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionError {
    /// Feeding these tokens would pass the model's context length.
    ContextFull {
        /// Tokens already in the cache.
        position: usize,
        /// Tokens in this call.
        requested: usize,
        /// The model's context length.
        max_context: usize,
    },
    /// A token id at or past the embedding's rows.
    TokenOutOfRange {
        /// The id.
        token: u32,
        /// Rows of the embedding.
        vocab_size: usize,
    },
    /// No tokens were given.
    Empty,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::ContextFull { position, requested, max_context } => write!(
                f,
                "context full: {position} tokens in the cache + {requested} new exceeds the model's \
                 max context of {max_context}"
            ),
            SessionError::TokenOutOfRange { token, vocab_size } => {
                write!(f, "token id {token} is out of range for a vocabulary of {vocab_size}")
            }
            SessionError::Empty => write!(f, "no tokens given"),
        }
    }
}

/// Keys (after rotary) and values of every layer for the positions seen so far.
/// Never holds more than `max_context` rows per layer.
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl KvCache {
    fn new(layers: usize) -> KvCache {
        KvCache {
            k: vec![Vec::new(); layers],
            v: vec![Vec::new(); layers],
        }
    }

    fn clear(&mut self) {
        self.k
            .iter_mut()
            .chain(self.v.iter_mut())
            .for_each(Vec::clear);
    }

    /// Bytes currently held.
    pub fn bytes(&self) -> usize {
        self.k.iter().chain(&self.v).map(|x| x.len() * 4).sum()
    }
}

/// A decoding session over one model: feed a prompt block, then one token at a time.
pub struct Session<'m, 'a> {
    model: &'m Model<'a>,
    cache: KvCache,
    pos: usize,
}

impl<'m, 'a> Session<'m, 'a> {
    /// An empty session over `model`; the KV cache grows as tokens are fed (see
    /// [`Session::with_context`] to reserve it up front).
    pub fn new(model: &'m Model<'a>) -> Self {
        Session {
            model,
            cache: KvCache::new(model.config.n_layers),
            pos: 0,
        }
    }

    /// A session whose KV cache is reserved up front for `context` tokens (at most the model's
    /// max context), so it never grows: the layout [`Session::bytes_needed`] assumes.
    pub fn with_context(model: &'m Model<'a>, context: usize) -> Self {
        let mut s = Session::new(model);
        let floats = context.min(model.config.max_context) * model.config.d_model;
        for c in s.cache.k.iter_mut().chain(s.cache.v.iter_mut()) {
            c.reserve_exact(floats);
        }
        s
    }

    /// An upper bound on the heap bytes that a loaded model's own allocations plus a
    /// [`Session::with_context`] session of `context` tokens hold at once, with the logits of the
    /// previous [`Session::feed`] kept by the caller. For firmware authors: size the heap with
    /// this, plus what `checkpoint::load` needs transiently (at most 8 × the safetensors
    /// header's length, checked in `core/tests/heap.rs`) and some headroom for the allocator's
    /// fragmentation (`firmware/` adds 1/16). It depends on the config (layers,
    /// width, parameter-token counts, vocabulary) and the context only, never on the weights'
    /// bytes: weights borrowed from the file (f32 4-aligned, blocks 2-aligned) take no heap.
    /// Prompts may be fed in blocks of any length up to `context`; `feed_all` needs
    /// `T · vocab · 8` bytes more for a block of T. std builds also hold, per thread that runs
    /// a prompt block, the `gemm` crate's packing slab (the L2 cache's size, kept for the
    /// thread's life), which is not counted here.
    pub fn bytes_needed(config: &Config, context: usize) -> usize {
        const F: usize = core::mem::size_of::<f32>();
        let (d, vocab, layers) = (config.d_model, config.vocab_size, config.n_layers);
        let t = context.min(config.max_context);
        let n = [
            PattentionKind::Qkv,
            PattentionKind::Proj,
            PattentionKind::Ffn,
        ]
        .map(|k| config.tokens(k))
        .into_iter()
        .fold(d, usize::max);
        // Q8_0 activations: a 34-byte block plus its f32 scale and sum per 32 values.
        let q8 = |values: usize| values.div_ceil(32) * (34 + 2 * F);
        let cache = 2 * layers * (t * d * F + core::mem::size_of::<Vec<f32>>());
        // A block of t rows through a layer: graph::layer's bindings live to its end (x, y, q,
        // k, v, attention out, projection out, second y: eight [t, d]), and one Pattention holds
        // its scores [t, tokens], output [t, d] and a product buffer [t, max(tokens, d)] beside
        // the quantized activations of its input; attention one row of probabilities.
        let block = t * (9 * d + 2 * n) * F + q8(t * n) + t * F;
        // The last row's final norm and logits (plus the caller's previous logits).
        let head = (2 * d + 2 * vocab) * F + q8(d) + vocab * F;
        let model = layers * core::mem::size_of::<LayerWeights<'_>>() + config.rotary_dims() * F;
        cache + block + head + model
    }

    /// Tokens already in the cache.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The model this session runs.
    pub fn model(&self) -> &'m Model<'a> {
        self.model
    }

    /// The KV cache (for its size: [`KvCache::bytes`]).
    pub fn cache(&self) -> &KvCache {
        &self.cache
    }

    /// Forget every position (the cache keeps its allocation): the next feed starts at position 0.
    pub fn reset(&mut self) {
        self.cache.clear();
        self.pos = 0;
    }

    /// Run `tokens` at the next positions and return the logits of the last one (`[vocab_size]`).
    pub fn feed(&mut self, tokens: &[u32]) -> Result<Vec<f32>, SessionError> {
        Ok(self.run(tokens, false)?.data)
    }

    /// Run `tokens` at the next positions and return every position's logits ([T, vocab_size]).
    pub fn feed_all(&mut self, tokens: &[u32]) -> Result<Tensor, SessionError> {
        self.run(tokens, true)
    }

    fn run(&mut self, tokens: &[u32], all: bool) -> Result<Tensor, SessionError> {
        let cfg = &self.model.config;
        if tokens.is_empty() {
            return Err(SessionError::Empty);
        }
        if let Some(&token) = tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            return Err(SessionError::TokenOutOfRange {
                token,
                vocab_size: cfg.vocab_size,
            });
        }
        if self.pos + tokens.len() > cfg.max_context {
            return Err(SessionError::ContextFull {
                position: self.pos,
                requested: tokens.len(),
                max_context: cfg.max_context,
            });
        }
        let mut ops = SessionOps {
            model: self.model,
            cache: &mut self.cache,
            pos0: self.pos,
            all_logits: all,
        };
        let logits = graph::forward(&mut ops, cfg, tokens);
        self.pos += tokens.len();
        Ok(logits)
    }
}

/// The graph's operations for inference: rows are consecutive positions starting at `pos0`.
/// Weights may be f32 or quantized, matrix by matrix; the products run in `kernels`.
struct SessionOps<'s, 'm, 'a> {
    model: &'m Model<'a>,
    cache: &'s mut KvCache,
    pos0: usize,
    all_logits: bool,
}

impl Ops for SessionOps<'_, '_, '_> {
    type Act = Tensor;

    fn embed(&mut self, tokens: &[u32]) -> Tensor {
        let d = self.model.config.d_model;
        let mut x = Tensor::zeros(tokens.len(), d);
        for (row, &t) in x.data.chunks_exact_mut(d).zip(tokens) {
            self.model.embedding.row_f32(t as usize, d, row);
        }
        x
    }

    fn layer_norm(&mut self, x: &Tensor) -> Tensor {
        let mut y = x.clone();
        norm::layer_norm(&mut y.data, x.cols, self.model.config.layer_norm_eps);
        y
    }

    fn pattention(&mut self, x: &Tensor, layer: usize, p: Pattn) -> Tensor {
        // out = Θ(x·K_Pᵀ)·V_P (ops::pattention::pattention is the scalar reference).
        let w = self.model.layers[layer].get(p);
        let d_in = x.cols;
        let n = w.tokens(d_in);
        let d_out = w.values.len() / n;
        let mut scores = Tensor::zeros(x.rows, n);
        matmul::matmul_nt(&w.keys, &x.data, d_in, &mut scores.data);
        let (norm, scale_n) = (self.model.config.norm, self.model.scale_tokens(p));
        // Rows are independent: a prompt block's rows split across the kernels' threads.
        let rows = matmul::chunk_len(x.rows, 4);
        matmul::for_each_chunk(&mut scores.data, rows * n, |_, block| {
            for row in block.chunks_exact_mut(n) {
                crate::kernels::vector::theta(row, norm, scale_n);
            }
        });
        let mut out = Tensor::zeros(x.rows, d_out);
        matmul::matmul_values(&w.values, &scores.data, n, d_out, &mut out.data);
        out
    }

    fn rotary(&mut self, mut x: Tensor) -> Tensor {
        self.model
            .rope
            .apply(&mut x.data, x.cols, self.model.config.head_dim(), self.pos0);
        x
    }

    fn attention(&mut self, layer: usize, q: &Tensor, k: &Tensor, v: &Tensor) -> Tensor {
        let kc = &mut self.cache.k[layer];
        let vc = &mut self.cache.v[layer];
        kc.extend_from_slice(&k.data);
        vc.extend_from_slice(&v.data);
        let mut out = Tensor::zeros(q.rows, q.cols);
        // Query rows are independent (each sees the history up to its own position): a prompt
        // block's rows split across the kernels' threads in blocks of a fixed size, whose
        // products (`causal_attention_block`) sum in an order set by the block alone, so a row
        // does not depend on the thread count.
        let (d, pos0, heads) = (q.cols, self.pos0, self.model.config.n_heads);
        let rows = matmul::ATTENTION_ROWS;
        let (kc, vc) = (&kc[..], &vc[..]);
        matmul::for_each_chunk(&mut out.data, rows * d, |c, o| {
            let (i0, t) = (c * rows, o.len() / d);
            let seen = (pos0 + i0 + t) * d;
            let (q, k, v) = (&q.data[i0 * d..(i0 + t) * d], &kc[..seen], &vc[..seen]);
            #[cfg(feature = "std")]
            if t >= matmul::GEMM_MIN_ROWS {
                return matmul::causal_attention_block(q, k, v, d, heads, pos0 + i0, o);
            }
            attention::causal_attention(Dispatch, q, k, v, d, heads, pos0 + i0, o);
        });
        out
    }

    fn add(&mut self, mut a: Tensor, b: &Tensor) -> Tensor {
        for (x, y) in a.data.iter_mut().zip(&b.data) {
            *x += y;
        }
        a
    }

    fn final_norm(&mut self, x: &Tensor) -> Tensor {
        // Only the rows whose logits are wanted need the rest of the model.
        let first = if self.all_logits { 0 } else { x.rows - 1 };
        let mut y = Tensor {
            rows: x.rows - first,
            cols: x.cols,
            data: x.data[first * x.cols..].to_vec(),
        };
        let m = self.model;
        norm::layer_norm_affine(
            &mut y.data,
            &m.final_norm_weight,
            &m.final_norm_bias,
            m.config.layer_norm_eps,
        );
        y
    }

    fn logits(&mut self, x: &Tensor) -> Tensor {
        let vocab = self.model.config.vocab_size;
        let mut out = Tensor::zeros(x.rows, vocab);
        matmul::matmul_nt(&self.model.embedding, &x.data, x.cols, &mut out.data);
        out
    }
}

/// ln softmax of one row of logits, computed stably in f64.
pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = m + libm::log(logits.iter().map(|&x| libm::exp(x as f64 - m)).sum::<f64>());
    logits.iter().map(|&x| x as f64 - lse).collect()
}

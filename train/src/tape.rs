//! The recording interpreter of core's model graph.
//!
//! `Tape` implements `tokenformer_core::graph::Ops` as a thin entry. Each op is a node type
//! below that holds what its backward needs, with its `record` (run the forward on the backend,
//! push the node) beside its `backward` (burn-autodiff's pattern); `Tape::backward` walks the
//! nodes in reverse. The model's structure comes only from `tokenformer_core::graph::forward`.

use crate::backend::{Affine, Backend, Dims, Mat, MatMul, Qkv, RopeTables, Rows, Theta};
use crate::params::Params;
use std::collections::HashMap;
use tokenformer_core::graph::{self, Ops, Pattn};
use tokenformer_core::model::Role;
use tokenformer_core::ops::rotary::RopeTable;
use tokenformer_core::Config;

/// An activation on the tape: the index of the node that produced it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeId(usize);

/// Buffers kept from one step's tape for the next. A step asks for the same sizes every time,
/// so from the second step on nothing is allocated, faulted in or zeroed: every op writes all of
/// its output (the `Backend` contract), and a buffer's stale values are never read.
pub struct Pool<B: Backend> {
    free: HashMap<usize, Vec<B::Buf>>,
}

impl<B: Backend> Default for Pool<B> {
    fn default() -> Self {
        Pool {
            free: HashMap::new(),
        }
    }
}

impl<B: Backend> Pool<B> {
    /// A buffer of n values for an op that overwrites all of them (its contents are stale).
    fn take(&mut self, be: &B, n: usize) -> B::Buf {
        match self.free.get_mut(&n).and_then(Vec::pop) {
            Some(buf) => buf,
            None => be.zeros(n),
        }
    }

    fn give(&mut self, be: &B, buf: B::Buf) {
        self.free.entry(be.len(&buf)).or_default().push(buf);
    }
}

/// A recorded op.
trait Node<B: Backend> {
    /// Add the gradients of this node's inputs, given its output `y` and `dy` = ∂L/∂y, and give
    /// the buffers it saved (and dy, once used) back to g's pool.
    fn backward(self: Box<Self>, t: &Tape<'_, B>, y: &B::Buf, dy: B::Buf, g: &mut Gradients<'_, B>);
}

/// What the backward pass accumulates: the gradient of every activation (filled in reverse)
/// and of the parameters.
struct Gradients<'g, B: Backend> {
    be: &'g B,
    acts: Vec<Option<B::Buf>>,
    params: &'g mut Params<B>,
    pool: Pool<B>,
}

impl<B: Backend> Gradients<'_, B> {
    /// Add `dx` into the gradient of activation `a`.
    fn add(&mut self, a: NodeId, dx: B::Buf) {
        match &mut self.acts[a.0] {
            Some(y) => {
                self.be.add_assign(y, &dx);
                self.pool.give(self.be, dx);
            }
            slot @ None => *slot = Some(dx),
        }
    }

    /// Add a borrowed `dx` (copied only when `a` has no gradient yet).
    fn add_ref(&mut self, a: NodeId, dx: &B::Buf) {
        match &mut self.acts[a.0] {
            Some(y) => self.be.add_assign(y, dx),
            None => {
                let mut y = self.take(self.be.len(dx));
                self.be.copy_into(dx, &mut y);
                self.acts[a.0] = Some(y);
            }
        }
    }

    fn take(&mut self, n: usize) -> B::Buf {
        self.pool.take(self.be, n)
    }

    fn free(&mut self, buf: B::Buf) {
        self.pool.give(self.be, buf)
    }
}

/// The recording [`tokenformer_core::graph::Ops`]: a forward pass on backend `B` that keeps what
/// each op's backward needs, then runs them in reverse to accumulate parameter gradients.
pub struct Tape<'p, B: Backend> {
    be: &'p B,
    params: &'p Params<B>,
    dims: Dims,
    rope: RopeTables<B>,
    nodes: Vec<Box<dyn Node<B> + 'p>>,
    values: Vec<B::Buf>,
    pool: Pool<B>,
}

impl<'p, B: Backend> Tape<'p, B> {
    /// An empty tape over `params`, for batches of shape `rows`.
    pub fn new(be: &'p B, params: &'p Params<B>, rows: Rows) -> Self {
        Self::with_pool(be, params, rows, Pool::default())
    }

    /// A tape that takes its buffers from `pool` (see [`Tape::into_pool`]).
    pub fn with_pool(be: &'p B, params: &'p Params<B>, rows: Rows, pool: Pool<B>) -> Self {
        let cfg = &params.config;
        let rope = RopeTable::new(cfg.rotary_dims(), cfg.rotary_base);
        Tape {
            be,
            params,
            dims: Dims::new(rows, cfg),
            rope: RopeTables::new(be, &rope, rows.seq),
            nodes: Vec::new(),
            values: Vec::new(),
            pool,
        }
    }

    /// The pool with every buffer this tape still holds, for the next step's tape.
    pub fn into_pool(mut self) -> Pool<B> {
        for v in std::mem::take(&mut self.values) {
            self.pool.give(self.be, v);
        }
        self.pool
    }

    /// A buffer of n values for an op that overwrites all of them.
    fn take(&mut self, n: usize) -> B::Buf {
        self.pool.take(self.be, n)
    }

    fn cfg(&self) -> &'p Config {
        &self.params.config
    }

    fn push(&mut self, node: impl Node<B> + 'p, value: B::Buf) -> NodeId {
        self.nodes.push(Box::new(node));
        self.values.push(value);
        NodeId(self.values.len() - 1)
    }

    /// Run the model on `tokens` ([batch·seq]) and return the logits activation.
    pub fn forward(&mut self, tokens: &[u32]) -> NodeId {
        assert_eq!(tokens.len(), self.dims.rows.count());
        let cfg = self.cfg();
        graph::forward(self, cfg, tokens)
    }

    /// The value computed at node `a`.
    pub fn value(&self, a: NodeId) -> &B::Buf {
        &self.values[a.0]
    }

    /// Cross-entropy of the logits against `targets`, seeding the backward with its gradient
    /// scaled by `grad_scale` (1 / tokens in the full, possibly accumulated, batch). Returns the
    /// per-row losses in nats.
    pub fn backward_from_cross_entropy(
        &mut self,
        logits: NodeId,
        targets: &[u32],
        grad_scale: f32,
        grads: &mut Params<B>,
    ) -> Vec<f64> {
        let v = self.cfg().vocab_size;
        let mut dlogits = self.take(targets.len() * v);
        let losses =
            self.be
                .cross_entropy(self.value(logits), targets, v, grad_scale, &mut dlogits);
        self.backward(logits, dlogits, grads);
        losses
    }

    /// Backpropagate `seed` = ∂L/∂(activation `out`) through every op, adding the parameter
    /// gradients into `grads`. The ops are consumed: each node's output and saved buffers go
    /// back to the pool once its backward has run (no later node reads them), so the backward
    /// reuses the forward's memory.
    pub fn backward(&mut self, out: NodeId, seed: B::Buf, grads: &mut Params<B>) {
        let mut g = Gradients {
            be: self.be,
            acts: (0..self.nodes.len()).map(|_| None).collect(),
            params: grads,
            pool: std::mem::take(&mut self.pool),
        };
        g.acts[out.0] = Some(seed);
        while let (Some(node), Some(y)) = (self.nodes.pop(), self.values.pop()) {
            if let Some(dy) = g.acts[self.nodes.len()].take() {
                node.backward(self, &y, dy, &mut g);
            }
            g.free(y);
        }
        self.pool = g.pool;
    }
}

impl<B: Backend> Ops for Tape<'_, B> {
    type Act = NodeId;

    fn embed(&mut self, tokens: &[u32]) -> NodeId {
        Embed::record(self, tokens)
    }

    fn layer_norm(&mut self, x: &NodeId) -> NodeId {
        LayerNorm::record(self, *x)
    }

    fn pattention(&mut self, x: &NodeId, layer: usize, proj: Pattn) -> NodeId {
        Pattention::record(self, *x, layer, proj)
    }

    fn rotary(&mut self, x: NodeId) -> NodeId {
        Rotary::record(self, x)
    }

    fn attention(&mut self, _layer: usize, q: &NodeId, k: &NodeId, v: &NodeId) -> NodeId {
        Attention::record(
            self,
            Qkv {
                q: *q,
                k: *k,
                v: *v,
            },
        )
    }

    fn add(&mut self, a: NodeId, b: &NodeId) -> NodeId {
        Add::record(self, a, *b)
    }

    fn final_norm(&mut self, x: &NodeId) -> NodeId {
        FinalNorm::record(self, *x)
    }

    fn logits(&mut self, x: &NodeId) -> NodeId {
        Logits::record(self, *x)
    }
}

/// Rows of the token embedding: out[r] = E[tokens[r]].
struct Embed {
    tokens: Vec<u32>,
}

impl Embed {
    fn record<B: Backend>(t: &mut Tape<'_, B>, tokens: &[u32]) -> NodeId {
        let mut out = t.take(tokens.len() * t.dims.d);
        let table = t.params.get(Role::Embedding);
        t.be.embed_forward(table, tokens, t.dims, &mut out);
        let tokens = tokens.to_vec();
        t.push(Embed { tokens }, out)
    }
}

impl<B: Backend> Node<B> for Embed {
    fn backward(
        self: Box<Self>,
        t: &Tape<'_, B>,
        _: &B::Buf,
        dy: B::Buf,
        g: &mut Gradients<'_, B>,
    ) {
        let de = g.params.get_mut(Role::Embedding);
        t.be.embed_backward(&self.tokens, &dy, t.dims, de);
        g.free(dy);
    }
}

/// Non-parametric LayerNorm, saving rstd.
struct LayerNorm<B: Backend> {
    x: NodeId,
    rstd: B::Buf,
}

impl<B: Backend> LayerNorm<B> {
    fn record(t: &mut Tape<'_, B>, x: NodeId) -> NodeId {
        let (be, dims) = (t.be, t.dims);
        let (mut y, mut rstd) = (t.take(dims.numel()), t.take(dims.rows.count()));
        be.layer_norm_forward(t.value(x), dims, t.cfg().layer_norm_eps, &mut y, &mut rstd);
        t.push(LayerNorm { x, rstd }, y)
    }
}

impl<B: Backend> Node<B> for LayerNorm<B> {
    fn backward(
        self: Box<Self>,
        t: &Tape<'_, B>,
        y: &B::Buf,
        dy: B::Buf,
        g: &mut Gradients<'_, B>,
    ) {
        let mut dx = g.take(t.dims.numel());
        t.be.layer_norm_backward(y, &self.rstd, &dy, t.dims, &mut dx);
        g.free(dy);
        g.free(self.rstd);
        g.add(self.x, dx);
    }
}

/// Pattention: O = Θ(X·Kᵀ)·V, saving the scores A = X·Kᵀ and Θ(A).
struct Pattention<B: Backend> {
    x: NodeId,
    layer: usize,
    proj: Pattn,
    scores: B::Buf,
    theta: B::Buf,
}

impl<B: Backend> Pattention<B> {
    fn spec(cfg: &Config, proj: Pattn) -> Theta {
        Theta {
            norm: cfg.norm,
            n: cfg.tokens(proj.kind()),
            scale_n: cfg.scale_tokens(proj.kind()),
        }
    }

    fn record(t: &mut Tape<'_, B>, x: NodeId, layer: usize, proj: Pattn) -> NodeId {
        let (be, p) = (t.be, t.params);
        let spec = Self::spec(t.cfg(), proj);
        let (r, d, n) = (t.dims.rows.count(), t.dims.d, spec.n);
        let keys = p.get(Role::Keys(layer, proj));
        let values = p.get(Role::Values(layer, proj));
        let (mut scores, mut theta, mut out) = (t.take(r * n), t.take(r * n), t.take(r * d));
        // A = X·Kᵀ, S = Θ(A), O = S·V
        let xa = Mat::n(t.value(x));
        be.matmul(
            MatMul { m: r, n, k: d },
            xa,
            Mat::t(keys),
            &mut scores,
            false,
        );
        be.theta_forward(&scores, spec, &mut theta);
        let size = MatMul { m: r, n: d, k: n };
        be.matmul(size, Mat::n(&theta), Mat::n(values), &mut out, false);
        let node = Pattention {
            x,
            layer,
            proj,
            scores,
            theta,
        };
        t.push(node, out)
    }
}

impl<B: Backend> Node<B> for Pattention<B> {
    fn backward(
        self: Box<Self>,
        t: &Tape<'_, B>,
        _: &B::Buf,
        dy: B::Buf,
        g: &mut Gradients<'_, B>,
    ) {
        let Pattention {
            x,
            layer,
            proj,
            scores,
            theta,
        } = *self;
        let (be, p) = (t.be, t.params);
        let spec = Self::spec(t.cfg(), proj);
        let (r, d, n) = (t.dims.rows.count(), t.dims.d, spec.n);
        let keys = p.get(Role::Keys(layer, proj));
        let values = p.get(Role::Values(layer, proj));
        // dV += Θᵀ·dO
        let dv = g.params.get_mut(Role::Values(layer, proj));
        be.matmul(
            MatMul { m: n, n: d, k: r },
            Mat::t(&theta),
            Mat::n(&dy),
            dv,
            true,
        );
        // dΘ = dO·Vᵀ
        let (mut dtheta, mut da) = (g.take(r * n), g.take(r * n));
        let size = MatMul { m: r, n, k: d };
        be.matmul(size, Mat::n(&dy), Mat::t(values), &mut dtheta, false);
        g.free(dy);
        be.theta_backward(&scores, &theta, &dtheta, spec, &mut da);
        for buf in [dtheta, scores, theta] {
            g.free(buf);
        }
        // A = X·Kᵀ
        let size = MatMul { m: r, n, k: d };
        let dx = xwt_backward(g, Role::Keys(layer, proj), &da, t.value(x), keys, size);
        g.free(da);
        g.add(x, dx);
    }
}

/// Partial rotary at each row's position; its backward is the inverse rotation.
struct Rotary {
    x: NodeId,
}

impl Rotary {
    fn record<B: Backend>(t: &mut Tape<'_, B>, x: NodeId) -> NodeId {
        let mut y = t.take(t.dims.numel());
        t.be.copy_into(t.value(x), &mut y);
        t.be.rotary(&mut y, t.dims, &t.rope, false);
        t.push(Rotary { x }, y)
    }
}

impl<B: Backend> Node<B> for Rotary {
    fn backward(
        self: Box<Self>,
        t: &Tape<'_, B>,
        _: &B::Buf,
        dy: B::Buf,
        g: &mut Gradients<'_, B>,
    ) {
        let mut dx = dy;
        t.be.rotary(&mut dx, t.dims, &t.rope, true);
        g.add(self.x, dx);
    }
}

/// Causal softmax attention, saving the probabilities.
struct Attention<B: Backend> {
    x: Qkv<NodeId>,
    probs: B::Buf,
}

impl<B: Backend> Attention<B> {
    fn record(t: &mut Tape<'_, B>, x: Qkv<NodeId>) -> NodeId {
        let (be, dims) = (t.be, t.dims);
        let Rows { batch, seq } = dims.rows;
        let mut out = t.take(dims.numel());
        let mut probs = t.take(batch * dims.heads * seq * seq);
        be.attention_forward(x.map(|a| t.value(a)), dims, &mut out, &mut probs);
        t.push(Attention { x, probs }, out)
    }
}

impl<B: Backend> Node<B> for Attention<B> {
    fn backward(
        self: Box<Self>,
        t: &Tape<'_, B>,
        _: &B::Buf,
        dy: B::Buf,
        g: &mut Gradients<'_, B>,
    ) {
        let (be, dims, x) = (t.be, t.dims, self.x);
        let mut dx = x.map(|_| g.take(dims.numel()));
        let Qkv { q, k, v } = &mut dx;
        let dqkv = Qkv { q, k, v };
        be.attention_backward(x.map(|a| t.value(a)), &self.probs, &dy, dims, dqkv);
        g.free(dy);
        g.free(self.probs);
        g.add(x.q, dx.q);
        g.add(x.k, dx.k);
        g.add(x.v, dx.v);
    }
}

/// The residual sum a + b.
struct Add {
    a: NodeId,
    b: NodeId,
}

impl Add {
    fn record<B: Backend>(t: &mut Tape<'_, B>, a: NodeId, b: NodeId) -> NodeId {
        let mut y = t.take(t.dims.numel());
        t.be.copy_into(t.value(a), &mut y);
        t.be.add_assign(&mut y, t.value(b));
        t.push(Add { a, b }, y)
    }
}

impl<B: Backend> Node<B> for Add {
    fn backward(
        self: Box<Self>,
        _: &Tape<'_, B>,
        _: &B::Buf,
        dy: B::Buf,
        g: &mut Gradients<'_, B>,
    ) {
        g.add_ref(self.b, &dy);
        g.add(self.a, dy);
    }
}

/// The final affine LayerNorm, saving xhat and rstd.
struct FinalNorm<B: Backend> {
    x: NodeId,
    xhat: B::Buf,
    rstd: B::Buf,
}

impl<B: Backend> FinalNorm<B> {
    fn record(t: &mut Tape<'_, B>, x: NodeId) -> NodeId {
        let (be, dims, p) = (t.be, t.dims, t.params);
        let (mut xhat, mut rstd, mut y) = (
            t.take(dims.numel()),
            t.take(dims.rows.count()),
            t.take(dims.numel()),
        );
        let wb = Affine {
            weight: p.get(Role::FinalNormWeight),
            bias: p.get(Role::FinalNormBias),
        };
        let eps = t.cfg().layer_norm_eps;
        be.affine_norm_forward(t.value(x), wb, eps, &mut xhat, &mut rstd, &mut y);
        t.push(FinalNorm { x, xhat, rstd }, y)
    }
}

impl<B: Backend> Node<B> for FinalNorm<B> {
    fn backward(
        self: Box<Self>,
        t: &Tape<'_, B>,
        _: &B::Buf,
        dy: B::Buf,
        g: &mut Gradients<'_, B>,
    ) {
        let cfg = t.cfg();
        let mut dx = g.take(t.dims.numel());
        let (wi, bi) = (
            crate::params::index(cfg, Role::FinalNormWeight),
            crate::params::index(cfg, Role::FinalNormBias),
        );
        // Split borrows of the two norm gradients.
        let (lo, hi) = g.params.tensors.split_at_mut(bi);
        let dwb = Affine {
            weight: &mut lo[wi],
            bias: &mut hi[0],
        };
        let w = t.params.get(Role::FinalNormWeight);
        t.be.affine_norm_backward(&self.xhat, &self.rstd, w, &dy, &mut dx, dwb);
        for buf in [dy, self.xhat, self.rstd] {
            g.free(buf);
        }
        g.add(self.x, dx);
    }
}

/// Logits against the tied embedding: Z = Y·Eᵀ.
struct Logits {
    x: NodeId,
}

impl Logits {
    fn record<B: Backend>(t: &mut Tape<'_, B>, x: NodeId) -> NodeId {
        let (r, v, d) = (t.dims.rows.count(), t.cfg().vocab_size, t.dims.d);
        let mut z = t.take(r * v);
        let e = Mat::t(t.params.get(Role::Embedding));
        let size = MatMul { m: r, n: v, k: d };
        t.be.matmul(size, Mat::n(t.value(x)), e, &mut z, false);
        t.push(Logits { x }, z)
    }
}

impl<B: Backend> Node<B> for Logits {
    fn backward(
        self: Box<Self>,
        t: &Tape<'_, B>,
        _: &B::Buf,
        dy: B::Buf,
        g: &mut Gradients<'_, B>,
    ) {
        let (r, v, d) = (t.dims.rows.count(), t.cfg().vocab_size, t.dims.d);
        // Z = Y·Eᵀ
        let e = t.params.get(Role::Embedding);
        let size = MatMul { m: r, n: v, k: d };
        let dx = xwt_backward(g, Role::Embedding, &dy, t.value(self.x), e, size);
        g.free(dy);
        g.add(self.x, dx);
    }
}

/// Backward of Z = X·Wᵀ (X [m, k], W [n, k] the parameter `role`, Z [m, n]): dW += dZᵀ·X;
/// returns dX = dZ·W.
fn xwt_backward<B: Backend>(
    g: &mut Gradients<'_, B>,
    role: Role,
    dz: &B::Buf,
    x: &B::Buf,
    w: &B::Buf,
    size: MatMul,
) -> B::Buf {
    let (be, MatMul { m, n, k }) = (g.be, size);
    let dw = g.params.get_mut(role);
    be.matmul(MatMul { m: n, n: k, k: m }, Mat::t(dz), Mat::n(x), dw, true);
    let mut dx = g.take(m * k);
    be.matmul(
        MatMul { m, n: k, k: n },
        Mat::n(dz),
        Mat::n(w),
        &mut dx,
        false,
    );
    dx
}

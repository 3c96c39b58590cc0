//! The recording interpreter of core's model graph.
//!
//! `Tape` implements `tokenformer_core::graph::Ops`: each op runs its forward on the backend,
//! keeps what its backward needs, and `backward` walks the ops in reverse, calling each op's
//! backward (defined beside its forward in `backend`). The model's structure comes only from
//! `tokenformer_core::graph::forward`.

use crate::backend::{Backend, Mat, Rows};
use crate::params::Params;
use tokenformer_core::graph::{self, Ops, Proj};
use tokenformer_core::model::Role;
use tokenformer_core::ops::rotary::RopeTable;
use tokenformer_core::Config;

/// An activation: the index of the op that produced it.
pub type Act = usize;

enum Node<B: Backend> {
    Embed,
    LayerNorm {
        x: Act,
        rstd: B::Buf,
    },
    Pattention {
        x: Act,
        layer: usize,
        proj: Proj,
        scores: B::Buf,
        theta: B::Buf,
    },
    Rotary {
        x: Act,
    },
    Attention {
        q: Act,
        k: Act,
        v: Act,
        probs: B::Buf,
    },
    Add {
        a: Act,
        b: Act,
    },
    FinalNorm {
        x: Act,
        xhat: B::Buf,
        rstd: B::Buf,
    },
    Logits {
        x: Act,
    },
}

pub struct Tape<'p, B: Backend> {
    be: &'p B,
    params: &'p Params<B>,
    rope: RopeTable,
    rows: Rows,
    tokens: Vec<u32>,
    nodes: Vec<Node<B>>,
    values: Vec<B::Buf>,
}

impl<'p, B: Backend> Tape<'p, B> {
    pub fn new(be: &'p B, params: &'p Params<B>, rows: Rows) -> Self {
        let cfg = &params.config;
        Tape {
            be,
            params,
            rope: RopeTable::new(cfg.rotary_dims(), cfg.rotary_base),
            rows,
            tokens: Vec::new(),
            nodes: Vec::new(),
            values: Vec::new(),
        }
    }

    fn cfg(&self) -> &Config {
        &self.params.config
    }

    fn push(&mut self, node: Node<B>, value: B::Buf) -> Act {
        self.nodes.push(node);
        self.values.push(value);
        self.values.len() - 1
    }

    /// Run the model on `tokens` ([batch·seq]) and return the logits activation.
    pub fn forward(&mut self, tokens: &[u32]) -> Act {
        assert_eq!(tokens.len(), self.rows.count());
        let cfg = self.cfg().clone();
        graph::forward(self, &cfg, tokens)
    }

    pub fn value(&self, a: Act) -> &B::Buf {
        &self.values[a]
    }

    /// Cross-entropy of the logits against `targets`, seeding the backward with its gradient
    /// scaled by `grad_scale` (1 / tokens in the full, possibly accumulated, batch). Returns the
    /// per-row losses in nats.
    pub fn backward_from_cross_entropy(
        mut self,
        logits: Act,
        targets: &[u32],
        grad_scale: f32,
        grads: &mut Params<B>,
    ) -> Vec<f64> {
        let v = self.cfg().vocab_size;
        let mut dlogits = self.be.zeros(targets.len() * v);
        let losses =
            self.be
                .cross_entropy(&self.values[logits], targets, v, grad_scale, &mut dlogits);
        self.backward(logits, dlogits, grads);
        losses
    }

    /// Backpropagate `seed` = ∂L/∂(activation `out`) through every op, adding the parameter
    /// gradients into `grads`.
    pub fn backward(&mut self, out: Act, seed: B::Buf, grads: &mut Params<B>) {
        let be = self.be;
        let p = self.params;
        let cfg = p.config.clone();
        let d = cfg.d_model;
        let rows = self.rows;
        let r = rows.count();
        let mut g: Vec<Option<B::Buf>> = (0..self.nodes.len()).map(|_| None).collect();
        g[out] = Some(seed);
        // Adds `x` into the gradient slot of activation `a`.
        let acc = |g: &mut Vec<Option<B::Buf>>, a: Act, x: B::Buf| match &mut g[a] {
            Some(y) => be.add_assign(y, &x),
            slot @ None => *slot = Some(x),
        };
        for i in (0..self.nodes.len()).rev() {
            let Some(dy) = g[i].take() else { continue };
            match &self.nodes[i] {
                Node::Embed => {
                    be.embed_backward(&self.tokens, &dy, d, grads.get_mut(Role::Embedding));
                }
                Node::LayerNorm { x, rstd } => {
                    let mut dx = be.zeros(r * d);
                    be.layer_norm_backward(&self.values[i], rstd, &dy, d, &mut dx);
                    acc(&mut g, *x, dx);
                }
                Node::Pattention {
                    x,
                    layer,
                    proj,
                    scores,
                    theta,
                } => {
                    let n = cfg.tokens(proj.kind());
                    let keys = p.get(Role::Keys(*layer, *proj));
                    let values = p.get(Role::Values(*layer, *proj));
                    // dV += Θᵀ·dO
                    be.matmul(
                        n,
                        d,
                        r,
                        Mat {
                            buf: theta,
                            t: true,
                        },
                        Mat { buf: &dy, t: false },
                        grads.get_mut(Role::Values(*layer, *proj)),
                        true,
                    );
                    // dΘ = dO·Vᵀ
                    let mut dtheta = be.zeros(r * n);
                    be.matmul(
                        r,
                        n,
                        d,
                        Mat { buf: &dy, t: false },
                        Mat {
                            buf: values,
                            t: true,
                        },
                        &mut dtheta,
                        false,
                    );
                    let mut da = be.zeros(r * n);
                    be.theta_backward(
                        scores,
                        theta,
                        &dtheta,
                        n,
                        cfg.norm,
                        cfg.scale_tokens(proj.kind()),
                        &mut da,
                    );
                    drop(dtheta);
                    // dK += dAᵀ·X, dX = dA·K
                    be.matmul(
                        n,
                        d,
                        r,
                        Mat { buf: &da, t: true },
                        Mat {
                            buf: &self.values[*x],
                            t: false,
                        },
                        grads.get_mut(Role::Keys(*layer, *proj)),
                        true,
                    );
                    let mut dx = be.zeros(r * d);
                    be.matmul(
                        r,
                        d,
                        n,
                        Mat { buf: &da, t: false },
                        Mat {
                            buf: keys,
                            t: false,
                        },
                        &mut dx,
                        false,
                    );
                    acc(&mut g, *x, dx);
                }
                Node::Rotary { x } => {
                    let mut dx = dy;
                    be.rotary(&mut dx, rows, d, cfg.head_dim(), &self.rope, true);
                    acc(&mut g, *x, dx);
                }
                Node::Attention { q, k, v, probs } => {
                    let (mut dq, mut dk, mut dv) =
                        (be.zeros(r * d), be.zeros(r * d), be.zeros(r * d));
                    be.attention_backward(
                        &self.values[*q],
                        &self.values[*k],
                        &self.values[*v],
                        probs,
                        &dy,
                        rows,
                        d,
                        cfg.n_heads,
                        &mut dq,
                        &mut dk,
                        &mut dv,
                    );
                    acc(&mut g, *q, dq);
                    acc(&mut g, *k, dk);
                    acc(&mut g, *v, dv);
                }
                Node::Add { a, b } => {
                    let (a, b) = (*a, *b);
                    let mut copy = be.zeros(r * d);
                    be.add_assign(&mut copy, &dy);
                    acc(&mut g, b, copy);
                    acc(&mut g, a, dy);
                }
                Node::FinalNorm { x, xhat, rstd } => {
                    let mut dx = be.zeros(r * d);
                    let (wi, bi) = (
                        crate::params::index(&cfg, Role::FinalNormWeight),
                        crate::params::index(&cfg, Role::FinalNormBias),
                    );
                    // Split borrows of the two norm gradients.
                    let (lo, hi) = grads.tensors.split_at_mut(bi);
                    be.affine_norm_backward(
                        xhat,
                        rstd,
                        p.get(Role::FinalNormWeight),
                        &dy,
                        &mut dx,
                        &mut lo[wi],
                        &mut hi[0],
                    );
                    acc(&mut g, *x, dx);
                }
                Node::Logits { x } => {
                    let v = cfg.vocab_size;
                    let e = p.get(Role::Embedding);
                    // dE += dZᵀ·Y, dY = dZ·E
                    be.matmul(
                        v,
                        d,
                        r,
                        Mat { buf: &dy, t: true },
                        Mat {
                            buf: &self.values[*x],
                            t: false,
                        },
                        grads.get_mut(Role::Embedding),
                        true,
                    );
                    let mut dx = be.zeros(r * d);
                    be.matmul(
                        r,
                        d,
                        v,
                        Mat { buf: &dy, t: false },
                        Mat { buf: e, t: false },
                        &mut dx,
                        false,
                    );
                    acc(&mut g, *x, dx);
                }
            }
        }
    }
}

impl<B: Backend> Ops for Tape<'_, B> {
    type Act = Act;

    fn embed(&mut self, tokens: &[u32]) -> Act {
        let d = self.cfg().d_model;
        let mut out = self.be.zeros(tokens.len() * d);
        self.be
            .embed_forward(self.params.get(Role::Embedding), tokens, d, &mut out);
        self.tokens = tokens.to_vec();
        self.push(Node::Embed, out)
    }

    fn layer_norm(&mut self, x: &Act) -> Act {
        let cfg = self.cfg();
        let (d, eps, r) = (cfg.d_model, cfg.layer_norm_eps, self.rows.count());
        let mut y = self.be.zeros(r * d);
        let mut rstd = self.be.zeros(r);
        self.be
            .layer_norm_forward(&self.values[*x], d, eps, &mut y, &mut rstd);
        self.push(Node::LayerNorm { x: *x, rstd }, y)
    }

    fn pattention(&mut self, x: &Act, layer: usize, proj: Proj) -> Act {
        let cfg = self.cfg();
        let (d, r) = (cfg.d_model, self.rows.count());
        let n = cfg.tokens(proj.kind());
        let (norm, scale_n) = (cfg.norm, cfg.scale_tokens(proj.kind()));
        let be = self.be;
        let keys = self.params.get(Role::Keys(layer, proj));
        let values = self.params.get(Role::Values(layer, proj));
        // A = X·Kᵀ, S = Θ(A), O = S·V
        let mut scores = be.zeros(r * n);
        be.matmul(
            r,
            n,
            d,
            Mat {
                buf: &self.values[*x],
                t: false,
            },
            Mat { buf: keys, t: true },
            &mut scores,
            false,
        );
        let mut theta = be.zeros(r * n);
        be.theta_forward(&scores, n, norm, scale_n, &mut theta);
        let mut out = be.zeros(r * d);
        be.matmul(
            r,
            d,
            n,
            Mat {
                buf: &theta,
                t: false,
            },
            Mat {
                buf: values,
                t: false,
            },
            &mut out,
            false,
        );
        self.push(
            Node::Pattention {
                x: *x,
                layer,
                proj,
                scores,
                theta,
            },
            out,
        )
    }

    fn rotary(&mut self, x: Act) -> Act {
        let cfg = self.cfg();
        let (d, hd) = (cfg.d_model, cfg.head_dim());
        let mut y = self.be.zeros(self.rows.count() * d);
        self.be.add_assign(&mut y, &self.values[x]);
        self.be.rotary(&mut y, self.rows, d, hd, &self.rope, false);
        self.push(Node::Rotary { x }, y)
    }

    fn attention(&mut self, _layer: usize, q: &Act, k: &Act, v: &Act) -> Act {
        let cfg = self.cfg();
        let (d, h) = (cfg.d_model, cfg.n_heads);
        let rows = self.rows;
        let mut out = self.be.zeros(rows.count() * d);
        let mut probs = self.be.zeros(rows.batch * h * rows.seq * rows.seq);
        self.be.attention_forward(
            &self.values[*q],
            &self.values[*k],
            &self.values[*v],
            rows,
            d,
            h,
            &mut out,
            &mut probs,
        );
        self.push(
            Node::Attention {
                q: *q,
                k: *k,
                v: *v,
                probs,
            },
            out,
        )
    }

    fn add(&mut self, a: Act, b: &Act) -> Act {
        let mut y = self.be.zeros(self.rows.count() * self.cfg().d_model);
        self.be.add_assign(&mut y, &self.values[a]);
        self.be.add_assign(&mut y, &self.values[*b]);
        self.push(Node::Add { a, b: *b }, y)
    }

    fn final_norm(&mut self, x: &Act) -> Act {
        let cfg = self.cfg();
        let (d, eps, r) = (cfg.d_model, cfg.layer_norm_eps, self.rows.count());
        let (mut xhat, mut rstd, mut y) =
            (self.be.zeros(r * d), self.be.zeros(r), self.be.zeros(r * d));
        self.be.affine_norm_forward(
            &self.values[*x],
            self.params.get(Role::FinalNormWeight),
            self.params.get(Role::FinalNormBias),
            eps,
            &mut xhat,
            &mut rstd,
            &mut y,
        );
        self.push(Node::FinalNorm { x: *x, xhat, rstd }, y)
    }

    fn logits(&mut self, x: &Act) -> Act {
        let cfg = self.cfg();
        let (d, v, r) = (cfg.d_model, cfg.vocab_size, self.rows.count());
        let mut z = self.be.zeros(r * v);
        self.be.matmul(
            r,
            v,
            d,
            Mat {
                buf: &self.values[*x],
                t: false,
            },
            Mat {
                buf: self.params.get(Role::Embedding),
                t: true,
            },
            &mut z,
            false,
        );
        self.push(Node::Logits { x: *x }, z)
    }
}

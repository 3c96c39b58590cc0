//! The TokenFormer language model, written once.
//!
//! Inference (`session`) and training (the `tokenformer-train` crate) both walk this function,
//! each with its own implementation of [`Ops`]: there is no second copy of the model's structure.

use crate::config::{Config, PattentionKind};

/// The five Pattentions of a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pattn {
    /// The query projection.
    Q,
    /// The key projection.
    K,
    /// The value projection.
    V,
    /// The attention output projection.
    O,
    /// The feed-forward Pattention (replacing the MLP).
    Ffn,
}

impl Pattn {
    /// The five, in layer (and checkpoint) order.
    pub const ALL: [Pattn; 5] = [Pattn::Q, Pattn::K, Pattn::V, Pattn::O, Pattn::Ffn];

    /// Which token count of the config this Pattention has.
    pub fn kind(self) -> PattentionKind {
        match self {
            Pattn::Q | Pattn::K | Pattn::V => PattentionKind::Qkv,
            Pattn::O => PattentionKind::Proj,
            Pattn::Ffn => PattentionKind::Ffn,
        }
    }

    /// The name used in checkpoint tensor names (`layers.{i}.{name}.keys`).
    pub fn name(self) -> &'static str {
        match self {
            Pattn::Q => "q",
            Pattn::K => "k",
            Pattn::V => "v",
            Pattn::O => "o",
            Pattn::Ffn => "ffn",
        }
    }
}

/// What a backend must provide to run the model. Activations are rows of width d (or vocab for
/// logits); an implementation decides what a row is (one sequence, a batch, a tape handle) and
/// which positions its rows sit at.
pub trait Ops {
    /// An activation: rows of values, in whatever memory the implementation uses.
    type Act;
    /// Rows of the token embedding.
    fn embed(&mut self, tokens: &[u32]) -> Self::Act;
    /// Non-parametric LayerNorm (no weight, no bias).
    fn layer_norm(&mut self, x: &Self::Act) -> Self::Act;
    /// Pattention `p` of layer `layer`.
    fn pattention(&mut self, x: &Self::Act, layer: usize, p: Pattn) -> Self::Act;
    /// GPT-NeoX partial rotary embedding at the rows' positions.
    fn rotary(&mut self, x: Self::Act) -> Self::Act;
    /// Causal softmax attention of layer `layer` (k and v join that layer's history, if any).
    fn attention(&mut self, layer: usize, q: &Self::Act, k: &Self::Act, v: &Self::Act)
        -> Self::Act;
    /// a + b.
    fn add(&mut self, a: Self::Act, b: &Self::Act) -> Self::Act;
    /// The final LayerNorm, with weight and bias.
    fn final_norm(&mut self, x: &Self::Act) -> Self::Act;
    /// Logits against the tied embedding.
    fn logits(&mut self, x: &Self::Act) -> Self::Act;
}

/// One layer, pre-LN with sequential residuals (spec: "The TokenFormer language model").
pub fn layer<O: Ops>(o: &mut O, x: O::Act, l: usize) -> O::Act {
    let y = o.layer_norm(&x);
    let q = o.pattention(&y, l, Pattn::Q);
    let k = o.pattention(&y, l, Pattn::K);
    let v = o.pattention(&y, l, Pattn::V);
    let q = o.rotary(q);
    let k = o.rotary(k);
    let a = o.attention(l, &q, &k, &v);
    let proj = o.pattention(&a, l, Pattn::O);
    let h = o.add(x, &proj);
    let y = o.layer_norm(&h);
    let ffn = o.pattention(&y, l, Pattn::Ffn);
    o.add(h, &ffn)
}

/// Embedding → layers → final LayerNorm → tied logits.
pub fn forward<O: Ops>(o: &mut O, cfg: &Config, tokens: &[u32]) -> O::Act {
    let mut x = o.embed(tokens);
    for l in 0..cfg.n_layers {
        x = layer(o, x, l);
    }
    let y = o.final_norm(&x);
    o.logits(&y)
}

//! The tensor layout, defined once: which tensors a config calls for, their names in our
//! checkpoints, their shapes and their order. Checkpoints, `Model::from_matrices` /
//! `Model::tensors`, the trainer's parameter index and `Config`'s parameter counts all derive
//! from [`roles`] and [`Role::shape`].
//!
//! | name | shape |
//! |---|---|
//! | `embedding` | [vocab_size, d] |
//! | `layers.{i}.{q,k,v,o,ffn}.keys` | [n, d] |
//! | `layers.{i}.{q,k,v,o,ffn}.values` | [n, d] |
//! | `final_norm.weight`, `final_norm.bias` | `[d]` |

use crate::config::Config;
use crate::graph::Pattn;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

/// Which tensor of the model a name refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `embedding`: [vocab_size, d], also the output head.
    Embedding,
    /// `layers.{l}.{p}.keys`: [n, d], the key parameter tokens of one Pattention.
    Keys(usize, Pattn),
    /// `layers.{l}.{p}.values`: [n, d], the value parameter tokens of one Pattention.
    Values(usize, Pattn),
    /// `final_norm.weight`: `[d]`.
    FinalNormWeight,
    /// `final_norm.bias`: `[d]`.
    FinalNormBias,
}

/// Tensors per layer: keys and values of each projection.
pub const PER_LAYER: usize = 2 * Pattn::ALL.len();

/// The tensors of layer `l`, in order.
pub fn layer_roles(l: usize) -> impl Iterator<Item = Role> {
    Pattn::ALL
        .into_iter()
        .flat_map(move |p| [Role::Keys(l, p), Role::Values(l, p)])
}

/// Every tensor of a model with `n_layers` layers, in order (lazy: a hostile config with
/// millions of layers costs nothing until walked).
pub fn roles(n_layers: usize) -> impl Iterator<Item = Role> {
    core::iter::once(Role::Embedding)
        .chain((0..n_layers).flat_map(layer_roles))
        .chain([Role::FinalNormWeight, Role::FinalNormBias])
}

/// Number of tensors of a model with `n_layers` layers.
pub fn count(n_layers: usize) -> Option<usize> {
    n_layers.checked_mul(PER_LAYER)?.checked_add(3)
}

/// Position of `role` in [`roles`] order.
pub fn index(n_layers: usize, role: Role) -> usize {
    let in_layer = |r: Role| layer_roles(0).position(|x| x == r).unwrap_or(0);
    match role {
        Role::Embedding => 0,
        Role::Keys(l, p) => 1 + l * PER_LAYER + in_layer(Role::Keys(0, p)),
        Role::Values(l, p) => 1 + l * PER_LAYER + in_layer(Role::Values(0, p)),
        Role::FinalNormWeight => 1 + n_layers * PER_LAYER,
        Role::FinalNormBias => 2 + n_layers * PER_LAYER,
    }
}

impl Role {
    /// The name in our checkpoints.
    pub fn name(self) -> String {
        match self {
            Role::Embedding => "embedding".into(),
            Role::Keys(l, p) => format!("layers.{l}.{}.keys", p.name()),
            Role::Values(l, p) => format!("layers.{l}.{}.values", p.name()),
            Role::FinalNormWeight => "final_norm.weight".into(),
            Role::FinalNormBias => "final_norm.bias".into(),
        }
    }

    /// The logical shape (values are [n, d] whatever their storage).
    pub fn shape(self, cfg: &Config) -> Vec<usize> {
        let d = cfg.d_model;
        match self {
            Role::Embedding => vec![cfg.vocab_size, d],
            Role::Keys(_, p) | Role::Values(_, p) => vec![cfg.tokens(p.kind()), d],
            Role::FinalNormWeight | Role::FinalNormBias => vec![d],
        }
    }

    /// Element count, None on overflow.
    pub fn numel(self, cfg: &Config) -> Option<usize> {
        self.shape(cfg)
            .into_iter()
            .try_fold(1usize, usize::checked_mul)
    }

    /// Whether this tensor is stored transposed when quantized (values: see
    /// `model::PattentionWeights`).
    pub fn transposed_when_quantized(self) -> bool {
        matches!(self, Role::Values(..))
    }

    /// Norms are vectors and stay f32.
    pub fn is_norm(self) -> bool {
        matches!(self, Role::FinalNormWeight | Role::FinalNormBias)
    }
}

/// A tensor the config calls for: its name in our checkpoints and its shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// The name in our checkpoints (`layers.0.q.keys`).
    pub name: String,
    /// The logical shape (values [n, d] whatever their storage).
    pub shape: Vec<usize>,
    /// Which tensor of the model it is.
    pub role: Role,
}

impl TensorSpec {
    /// The spec of `role` in a model of `cfg`.
    pub fn new(role: Role, cfg: &Config) -> TensorSpec {
        TensorSpec {
            name: role.name(),
            shape: role.shape(cfg),
            role,
        }
    }

    /// Element count (the product of the shape).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The stored [rows, cols] of a 2-D tensor when quantized (values transposed).
    pub fn stored_rows_cols(&self) -> (usize, usize) {
        let (r, c) = (self.shape[0], *self.shape.get(1).unwrap_or(&1));
        if self.role.transposed_when_quantized() {
            (c, r)
        } else {
            (r, c)
        }
    }
}

/// The specs of every tensor, lazily, in order.
pub fn tensor_specs_iter(cfg: &Config) -> impl Iterator<Item = TensorSpec> + '_ {
    roles(cfg.n_layers).map(move |r| TensorSpec::new(r, cfg))
}

/// The specs of every tensor, in order.
pub fn tensor_specs(cfg: &Config) -> Vec<TensorSpec> {
    tensor_specs_iter(cfg).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_the_position_in_roles() {
        let cfg = Config::preset("tiny").unwrap();
        let all: Vec<Role> = roles(cfg.n_layers).collect();
        assert_eq!(Some(all.len()), count(cfg.n_layers));
        for (i, r) in all.into_iter().enumerate() {
            assert_eq!(index(cfg.n_layers, r), i, "{r:?}");
        }
    }
}

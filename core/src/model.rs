//! Model weights and the tensor names of our checkpoint format, defined in one place.

use crate::config::{Config, ConfigError, PattentionKind};
use crate::graph::Proj;
use crate::ops::rotary::RopeTable;
use alloc::borrow::Cow;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

/// A weight tensor: borrowed straight from the file when it is aligned f32, owned otherwise
/// (converted from f16/bf16, or copied when misaligned).
pub type Weight<'a> = Cow<'a, [f32]>;

/// Keys [n, d_in] and values [n, d_out] of one Pattention.
#[derive(Clone, Debug)]
pub struct PattentionWeights<'a> {
    pub keys: Weight<'a>,
    pub values: Weight<'a>,
}

impl PattentionWeights<'_> {
    pub fn tokens(&self, d_in: usize) -> usize {
        self.keys.len() / d_in
    }
}

#[derive(Clone, Debug)]
pub struct LayerWeights<'a> {
    pub q: PattentionWeights<'a>,
    pub k: PattentionWeights<'a>,
    pub v: PattentionWeights<'a>,
    pub o: PattentionWeights<'a>,
    pub ffn: PattentionWeights<'a>,
}

impl<'a> LayerWeights<'a> {
    pub fn get(&self, p: Proj) -> &PattentionWeights<'a> {
        match p {
            Proj::Q => &self.q,
            Proj::K => &self.k,
            Proj::V => &self.v,
            Proj::O => &self.o,
            Proj::Ffn => &self.ffn,
        }
    }
}

/// A loaded, validated model ready to run.
#[derive(Clone, Debug)]
pub struct Model<'a> {
    pub config: Config,
    /// [vocab_size, d]; also the output head (tied).
    pub embedding: Weight<'a>,
    pub layers: Vec<LayerWeights<'a>>,
    pub final_norm_weight: Weight<'a>,
    pub final_norm_bias: Weight<'a>,
    pub rope: RopeTable,
}

/// Why tensors could not be assembled into a model.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelError {
    Config(ConfigError),
    TensorCount {
        expected: usize,
        got: usize,
    },
    Length {
        name: String,
        expected: usize,
        got: usize,
    },
}

impl core::fmt::Display for ModelError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ModelError::Config(e) => write!(f, "{e}"),
            ModelError::TensorCount { expected, got } => {
                write!(f, "expected {expected} tensors, got {got}")
            }
            ModelError::Length {
                name,
                expected,
                got,
            } => {
                write!(
                    f,
                    "tensor `{name}` has {got} elements, the config needs {expected}"
                )
            }
        }
    }
}

/// Which tensor of the model a name refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Embedding,
    Keys(usize, Proj),
    Values(usize, Proj),
    FinalNormWeight,
    FinalNormBias,
}

/// A tensor the config calls for: its name in our checkpoints and its shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub role: Role,
}

impl TensorSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Every tensor of a model with this config, in file order:
///
/// | name | shape |
/// |---|---|
/// | `embedding` | [vocab_size, d] |
/// | `layers.{i}.{q,k,v,o,ffn}.keys` | [n, d] |
/// | `layers.{i}.{q,k,v,o,ffn}.values` | [n, d] |
/// | `final_norm.weight`, `final_norm.bias` | [d] |
pub fn tensor_specs(cfg: &Config) -> Vec<TensorSpec> {
    tensor_specs_iter(cfg).collect()
}

/// Number of tensors a model with this config has, without building their names.
pub fn tensor_count(cfg: &Config) -> Option<usize> {
    cfg.n_layers
        .checked_mul(2 * Proj::ALL.len())?
        .checked_add(3)
}

/// The specs of `tensor_specs`, generated lazily: a loader can stop at the first missing tensor
/// without materialising millions of names for a hostile config.
pub fn tensor_specs_iter(cfg: &Config) -> impl Iterator<Item = TensorSpec> + '_ {
    let d = cfg.d_model;
    let embedding = TensorSpec {
        name: "embedding".into(),
        shape: vec![cfg.vocab_size, d],
        role: Role::Embedding,
    };
    let layers = (0..cfg.n_layers).flat_map(move |l| {
        Proj::ALL.into_iter().flat_map(move |p| {
            let n = cfg.tokens(p.kind());
            [
                TensorSpec {
                    name: format!("layers.{l}.{}.keys", p.name()),
                    shape: vec![n, d],
                    role: Role::Keys(l, p),
                },
                TensorSpec {
                    name: format!("layers.{l}.{}.values", p.name()),
                    shape: vec![n, d],
                    role: Role::Values(l, p),
                },
            ]
        })
    });
    let norms = [
        TensorSpec {
            name: "final_norm.weight".into(),
            shape: vec![d],
            role: Role::FinalNormWeight,
        },
        TensorSpec {
            name: "final_norm.bias".into(),
            shape: vec![d],
            role: Role::FinalNormBias,
        },
    ];
    core::iter::once(embedding).chain(layers).chain(norms)
}

impl<'a> Model<'a> {
    /// Assemble a model from tensors given in `tensor_specs` order, checking every length.
    pub fn from_tensors(config: Config, tensors: Vec<Weight<'a>>) -> Result<Model<'a>, ModelError> {
        config.validate().map_err(ModelError::Config)?;
        let specs = tensor_specs(&config);
        if specs.len() != tensors.len() {
            return Err(ModelError::TensorCount {
                expected: specs.len(),
                got: tensors.len(),
            });
        }
        for (s, t) in specs.iter().zip(&tensors) {
            if s.numel() != t.len() {
                return Err(ModelError::Length {
                    name: s.name.clone(),
                    expected: s.numel(),
                    got: t.len(),
                });
            }
        }
        let mut it = tensors.into_iter();
        let mut next = || it.next().unwrap_or_default();
        let embedding = next();
        let mut layers = Vec::with_capacity(config.n_layers);
        for _ in 0..config.n_layers {
            let mut pw = || PattentionWeights {
                keys: next(),
                values: next(),
            };
            let (q, k, v, o, ffn) = (pw(), pw(), pw(), pw(), pw());
            layers.push(LayerWeights { q, k, v, o, ffn });
        }
        let final_norm_weight = next();
        let final_norm_bias = next();
        let rope = RopeTable::new(config.rotary_dims(), config.rotary_base);
        Ok(Model {
            config,
            embedding,
            layers,
            final_norm_weight,
            final_norm_bias,
            rope,
        })
    }

    /// The tensors in `tensor_specs` order (for writing checkpoints).
    pub fn tensors(&self) -> Vec<&[f32]> {
        self.weights().into_iter().map(|w| &**w).collect()
    }

    /// A copy that owns all of its weights.
    pub fn into_owned(self) -> Model<'static> {
        let own = |w: Weight<'a>| -> Weight<'static> { Cow::Owned(w.into_owned()) };
        let pw = |p: PattentionWeights<'a>| PattentionWeights {
            keys: own(p.keys),
            values: own(p.values),
        };
        Model {
            config: self.config,
            embedding: own(self.embedding),
            layers: self
                .layers
                .into_iter()
                .map(|l| LayerWeights {
                    q: pw(l.q),
                    k: pw(l.k),
                    v: pw(l.v),
                    o: pw(l.o),
                    ffn: pw(l.ffn),
                })
                .collect(),
            final_norm_weight: own(self.final_norm_weight),
            final_norm_bias: own(self.final_norm_bias),
            rope: self.rope,
        }
    }

    /// How many weight bytes are borrowed from the file (not copied).
    pub fn borrowed_bytes(&self) -> usize {
        self.weights()
            .iter()
            .filter(|w| matches!(w, Cow::Borrowed(_)))
            .map(|w| w.len() * 4)
            .sum()
    }

    fn weights(&self) -> Vec<&Weight<'a>> {
        let mut v = vec![&self.embedding];
        for l in &self.layers {
            for p in Proj::ALL {
                v.push(&l.get(p).keys);
                v.push(&l.get(p).values);
            }
        }
        v.push(&self.final_norm_weight);
        v.push(&self.final_norm_bias);
        v
    }

    pub fn scale_tokens(&self, p: Proj) -> usize {
        self.config.scale_tokens(p.kind())
    }

    pub fn kind_tokens(&self, k: PattentionKind) -> usize {
        self.config.tokens(k)
    }
}

//! The authors' released checkpoints (GPT-NeoX layout) → our model.
//!
//! Official names (spec: "Tensor names in the released pytorch_model.bin"), L layers:
//!
//! | official | ours |
//! |---|---|
//! | `sequential.0.word_embeddings.weight` [vocab, d] | `embedding` |
//! | `sequential.{l+2}.attention.{query,key,value}.{key,value}_param_tokens` [n_qkv, d] | `layers.{l}.{q,k,v}.{keys,values}` |
//! | `sequential.{l+2}.attention.proj.{key,value}_param_tokens` [n_proj, d] | `layers.{l}.o.{keys,values}` |
//! | `sequential.{l+2}.mlp.{key,value}_param_tokens` [n_ffn, d] | `layers.{l}.ffn.{keys,values}` |
//! | `sequential.{L+3}.norm.{weight,bias}` `[d]` | `final_norm.{weight,bias}` |
//!
//! Layers, d, vocab and the three token counts are read from the shapes; heads cannot be (900M
//! has 16 heads of 80), so they come from a preset or the caller. Every tensor our config calls
//! for must be present with exactly the shape the others imply, and nothing else may be: a swapped,
//! transposed or stray tensor is an error naming it, never a silently wrong model.

use crate::checkpoint::{self, container::is_float, Safetensors};
use crate::config::{Config, ConfigError, ThetaKind};
use crate::dtype::DType;
use crate::graph::Pattn;
use crate::model::{tensor_specs, Model, ModelError, Role};
use crate::torch::{self, TensorView, TorchError};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// The official layout's module path of each Pattention, under `sequential.{l+2}.`.
pub fn official_module(p: Pattn) -> &'static str {
    match p {
        Pattn::Q => "attention.query",
        Pattn::K => "attention.key",
        Pattn::V => "attention.value",
        Pattn::O => "attention.proj",
        Pattn::Ffn => "mlp",
    }
}

/// The official name of the tensor in `role`, for a model of `n_layers` layers.
pub fn official_name(role: Role, n_layers: usize) -> String {
    let layer = |l: usize, p: Pattn| format!("sequential.{}.{}", l + 2, official_module(p));
    match role {
        Role::Embedding => "sequential.0.word_embeddings.weight".into(),
        Role::Keys(l, p) => format!("{}.key_param_tokens", layer(l, p)),
        Role::Values(l, p) => format!("{}.value_param_tokens", layer(l, p)),
        Role::FinalNormWeight => format!("sequential.{}.norm.weight", n_layers + 3),
        Role::FinalNormBias => format!("sequential.{}.norm.bias", n_layers + 3),
    }
}

/// What the shapes cannot tell.
#[derive(Clone, Debug, PartialEq)]
pub enum Hyper {
    /// A released size: its heads and the rest, and the file's geometry must match it exactly.
    Preset {
        /// The preset's name (`150m`, …).
        name: String,
        /// Its config.
        config: Config,
    },
    /// Any geometry: heads given, the rest from the arguments.
    Heads {
        /// Attention heads (the shapes give d, not how it splits).
        n_heads: usize,
        /// Fraction of each head's dims that rotary embedding rotates.
        rotary_pct: f32,
        /// The Θ normalisation.
        norm: ThetaKind,
        /// Default: 50,277 when the embedding has the released 50,304 rows, else every row.
        tokenizer_vocab: Option<usize>,
        /// Context length.
        max_context: usize,
    },
}

/// The released padding of the GPT-NeoX vocabulary and the tokenizer's real size.
pub const NEOX_PADDED_VOCAB: usize = 50304;
/// Ids the GPT-NeoX tokenizer produces (the rest of the 50,304 rows is padding).
pub const NEOX_TOKENIZER_VOCAB: usize = 50277;

/// Why a state dict could not be converted. Each variant names the tensor or field at fault.
#[derive(Clone, Debug, PartialEq)]
pub enum ConvertError {
    /// The torch.save container or pickle was refused.
    Torch(TorchError),
    /// The safetensors input was refused.
    Safetensors(checkpoint::LoadError),
    /// The input is already one of our checkpoints.
    AlreadyConverted,
    /// A tensor of an element type that cannot hold weights.
    UnsupportedDtype {
        /// The tensor.
        name: String,
        /// Its element type.
        dtype: String,
    },
    /// A name that occurs twice in the input.
    DuplicateTensor(String),
    /// A tensor the model needs is absent.
    MissingTensor(String),
    /// A tensor that maps to no part of the model.
    UnknownTensor(String),
    /// A tensor whose shape disagrees with what the other tensors imply.
    ShapeMismatch {
        /// The tensor.
        name: String,
        /// The shape the other tensors imply.
        expected: Vec<usize>,
        /// Its shape.
        got: Vec<usize>,
    },
    /// A tensor that must be a matrix (or vector) but has another rank.
    Rank {
        /// The tensor.
        name: String,
        /// The rank it must have.
        expected: usize,
        /// Its shape.
        got: Vec<usize>,
    },
    /// The file's geometry differs from the named preset's.
    PresetMismatch {
        /// The preset.
        preset: String,
        /// The config field that differs.
        field: &'static str,
        /// The preset's value.
        preset_value: usize,
        /// The value the file's shapes imply.
        file_value: usize,
    },
    /// A stored rotary buffer (`inv_freq`) that disagrees with the config.
    RotaryBuffer {
        /// The tensor.
        name: String,
        /// What disagrees.
        reason: &'static str,
    },
    /// The config built from the file does not validate.
    Config(ConfigError),
    /// The converted tensors do not assemble into a model.
    Model(ModelError),
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ConvertError::*;
        match self {
            Torch(e) => write!(f, "{e}"),
            Safetensors(e) => write!(f, "{e}"),
            AlreadyConverted => write!(f, "this is already a tokenformer checkpoint; nothing to convert"),
            UnsupportedDtype { name, dtype } => {
                write!(f, "tensor `{name}` has dtype {dtype}; only F32, F16 and BF16 convert")
            }
            DuplicateTensor(n) => write!(f, "tensor `{n}` appears twice"),
            MissingTensor(n) => write!(f, "missing tensor `{n}`"),
            UnknownTensor(n) => write!(
                f,
                "unexpected tensor `{n}`: not part of the official TokenFormer layout"
            ),
            ShapeMismatch { name, expected, got } => write!(
                f,
                "tensor `{name}` has shape {got:?}, but the other tensors imply {expected:?}"
            ),
            Rank { name, expected, got } => {
                write!(f, "tensor `{name}` has shape {got:?}; expected {expected} dimensions")
            }
            PresetMismatch { preset, field, preset_value, file_value } => write!(
                f,
                "the file has {field} = {file_value}, preset `{preset}` has {preset_value}; use --heads for other geometries"
            ),
            RotaryBuffer { name, reason } => write!(f, "rotary buffer `{name}`: {reason}"),
            Config(e) => write!(f, "{e}"),
            ConvertError::Model(e) => write!(f, "{e}"),
        }
    }
}

impl From<TorchError> for ConvertError {
    fn from(e: TorchError) -> Self {
        ConvertError::Torch(e)
    }
}

/// The tensors of a state dict file: a torch.save zip (or a legacy torch file, refused with a
/// clear error) or a safetensors file with the official names.
pub fn read_official(bytes: &[u8]) -> Result<Vec<TensorView<'_>>, ConvertError> {
    // A zip's first local header, or the pickled magic number that opens a legacy torch file
    // (a safetensors file starts with its header length, which may begin 0x80 0x02 0x00).
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"\x80\x02\x8a") {
        return Ok(torch::read(bytes)?);
    }
    let st = checkpoint::parse(bytes).map_err(ConvertError::Safetensors)?;
    views_from_safetensors(&st)
}

/// Safetensors tensors as packed views.
pub fn views_from_safetensors<'a>(
    st: &Safetensors<'a>,
) -> Result<Vec<TensorView<'a>>, ConvertError> {
    if st.metadata.get(checkpoint::FORMAT_KEY).map(String::as_str) == Some(checkpoint::FORMAT_VALUE)
    {
        return Err(ConvertError::AlreadyConverted);
    }
    st.tensors
        .iter()
        .map(|t| {
            let dtype = DType::from_safetensors(&t.dtype)
                .filter(|&d| is_float(d))
                .ok_or_else(|| ConvertError::UnsupportedDtype {
                    name: t.name.clone(),
                    dtype: t.dtype.clone(),
                })?;
            Ok(TensorView::packed(
                t.name.clone(),
                dtype,
                t.shape.clone(),
                t.bytes,
            )?)
        })
        .collect()
}

/// `sequential.{i}.` and the rest of a name.
fn split_index(name: &str) -> Option<(usize, &str)> {
    let rest = name.strip_prefix("sequential.")?;
    let dot = rest.find('.')?;
    let digits = &rest[..dot];
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    Some((digits.parse().ok()?, &rest[dot + 1..]))
}

fn matrix(name: &str, v: &TensorView<'_>) -> Result<(usize, usize), ConvertError> {
    match v.shape.as_slice() {
        [a, b] => Ok((*a, *b)),
        _ => Err(ConvertError::Rank {
            name: name.into(),
            expected: 2,
            got: v.shape.clone(),
        }),
    }
}

/// The config the tensors imply, completed by `hyper`, validated.
pub fn infer_config(
    by_name: &BTreeMap<&str, &TensorView<'_>>,
    hyper: &Hyper,
) -> Result<Config, ConvertError> {
    let get = |n: &str| {
        by_name
            .get(n)
            .copied()
            .ok_or_else(|| ConvertError::MissingTensor(n.into()))
    };
    let emb = official_name(Role::Embedding, 0);
    let (vocab, d) = matrix(&emb, get(&emb)?)?;
    // Layers are the distinct indices of attention/mlp tensors; the specs below then demand
    // exactly indices 2..L+2, so a gap is reported as the first missing tensor.
    let n_layers = by_name
        .keys()
        .filter_map(|name| split_index(name))
        .filter(|(_, rest)| rest.starts_with("attention.") || rest.starts_with("mlp."))
        .map(|(i, _)| i)
        .collect::<BTreeSet<_>>()
        .len();
    let tokens = |p: Pattn| -> Result<usize, ConvertError> {
        let n = official_name(Role::Keys(0, p), n_layers);
        Ok(matrix(&n, get(&n)?)?.0)
    };
    let (qkv, proj, ffn) = (tokens(Pattn::Q)?, tokens(Pattn::O)?, tokens(Pattn::Ffn)?);
    let config = match hyper {
        Hyper::Preset { name, config } => {
            for (field, p, f) in [
                ("n_layers", config.n_layers, n_layers),
                ("d_model", config.d_model, d),
                ("vocab_size", config.vocab_size, vocab),
                ("qkv_tokens", config.qkv_tokens, qkv),
                ("proj_tokens", config.proj_tokens, proj),
                ("ffn_tokens", config.ffn_tokens, ffn),
            ] {
                if p != f {
                    return Err(ConvertError::PresetMismatch {
                        preset: name.clone(),
                        field,
                        preset_value: p,
                        file_value: f,
                    });
                }
            }
            config.clone()
        }
        Hyper::Heads {
            n_heads,
            rotary_pct,
            norm,
            tokenizer_vocab,
            max_context,
        } => Config {
            qkv_tokens: qkv,
            proj_tokens: proj,
            qkv_scale_tokens: qkv,
            proj_scale_tokens: proj,
            rotary_pct: *rotary_pct,
            norm: *norm,
            vocab_size: vocab,
            tokenizer_vocab: tokenizer_vocab.unwrap_or(if vocab == NEOX_PADDED_VOCAB {
                NEOX_TOKENIZER_VOCAB
            } else {
                vocab
            }),
            max_context: *max_context,
            ..Config::released(n_layers, d, *n_heads, ffn)
        },
    };
    config.validate().map_err(ConvertError::Config)?;
    Ok(config)
}

/// GPT-NeoX's rotary buffer, if a file carries it, must be the one our config computes.
fn check_inv_freq(name: &str, v: &TensorView<'_>, cfg: &Config) -> Result<(), ConvertError> {
    let rot = cfg.rotary_dims();
    if v.shape != [rot / 2] {
        return Err(ConvertError::ShapeMismatch {
            name: name.into(),
            expected: alloc::vec![rot / 2],
            got: v.shape.clone(),
        });
    }
    let got = v.to_f32()?;
    for (i, &x) in got.iter().enumerate() {
        let want = libm::pow(cfg.rotary_base as f64, -2.0 * i as f64 / rot as f64);
        let err = libm::fabs(x as f64 - want);
        if err.is_nan() || err > 1e-3 * want {
            return Err(ConvertError::RotaryBuffer {
                name: name.into(),
                reason: "values differ from base 10000 over the configured rotary dims",
            });
        }
    }
    Ok(())
}

/// Convert an official state dict. Packed aligned f32 tensors stay borrowed from the input.
pub fn convert<'a>(tensors: &[TensorView<'a>], hyper: &Hyper) -> Result<Model<'a>, ConvertError> {
    let mut by_name: BTreeMap<&str, &TensorView<'a>> = BTreeMap::new();
    for t in tensors {
        if by_name.insert(t.name.as_str(), t).is_some() {
            return Err(ConvertError::DuplicateTensor(t.name.clone()));
        }
    }
    let config = infer_config(&by_name, hyper)?;
    let mut picked = Vec::new();
    for spec in tensor_specs(&config) {
        let name = official_name(spec.role, config.n_layers);
        let t = by_name
            .remove(name.as_str())
            .ok_or_else(|| ConvertError::MissingTensor(name.clone()))?;
        if t.shape != spec.shape {
            return Err(ConvertError::ShapeMismatch {
                name,
                expected: spec.shape,
                got: t.shape.clone(),
            });
        }
        picked.push(t);
    }
    for l in 0..config.n_layers {
        let name = format!("sequential.{}.attention.rotary_emb.inv_freq", l + 2);
        if let Some(t) = by_name.remove(name.as_str()) {
            check_inv_freq(&name, t, &config)?;
        }
    }
    if let Some(name) = by_name.keys().next() {
        return Err(ConvertError::UnknownTensor(name.to_string()));
    }
    let weights = picked
        .iter()
        .map(|t| t.to_f32())
        .collect::<Result<Vec<_>, _>>()?;
    Model::from_tensors(config, weights).map_err(ConvertError::Model)
}

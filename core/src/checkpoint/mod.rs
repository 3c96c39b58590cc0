//! Checkpoints: safetensors with the model's `Config` as JSON under `__metadata__.config`, so one
//! file is self-describing.
//!
//! The container is the `safetensors` crate's (`container`: parsing, writing, and its errors named
//! as ours); this module is our format on top of it. Loading takes `&[u8]` (a memory map in std
//! builds) and validates everything before a single weight is used: the config in the metadata,
//! every tensor present and nothing unknown, dtypes, shapes against the config, the quantization
//! metadata. Aligned little-endian f32 tensors are borrowed from the bytes, never copied; f16
//! and bf16 are widened to f32. The order of tensors in the file is not part of the format.
//!
//! Quantized matrices (Q8_0, Q4_0) are U8 tensors of shape [rows, row_bytes] under the same
//! names; `__metadata__.quantization` is a JSON object that gives, for each of them, the block
//! format, the logical shape (the f32 tensor's) and whether it is stored transposed (values are:
//! see `model::PattentionWeights`). Their blocks are borrowed when 2-byte aligned.

pub mod container;

use crate::config::{Config, ConfigError};
use crate::dtype::DType;
use crate::model::{format_error, tensor_specs_iter, Matrix, Model, ModelError, TensorSpec};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use container::{decode, is_float, Out, RawTensor};
pub use container::{parse, Safetensors, MAX_HEADER_BYTES};
use core::fmt;

/// Metadata key that holds the config JSON.
pub const CONFIG_KEY: &str = "config";
/// Metadata key and value that mark our format.
pub const FORMAT_KEY: &str = "format";
/// The value of [`FORMAT_KEY`] in our checkpoints.
pub const FORMAT_VALUE: &str = "tokenformer";
/// Metadata key of the quantized tensors' descriptions.
pub const QUANT_KEY: &str = "quantization";

/// How one quantized tensor is stored (an entry of `__metadata__.quantization`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantEntry {
    /// `q8_0` or `q4_0`.
    pub format: String,
    /// The logical shape, as the f32 tensor of this name would have.
    pub shape: Vec<usize>,
    /// Stored as `[shape[1], shape[0]]` rows of blocks.
    #[serde(default)]
    pub transposed: bool,
}

/// Why a checkpoint was refused. Every variant that concerns one tensor or field names it.
#[derive(Clone, Debug, PartialEq)]
pub enum LoadError {
    /// Fewer than the 8 bytes of the header length.
    TooShort {
        /// Bytes in the input.
        len: usize,
    },
    /// The header is longer than [`MAX_HEADER_BYTES`].
    HeaderTooLarge {
        /// The header length the file states.
        header_len: u64,
    },
    /// The stated header length runs past the end of the input.
    HeaderPastEnd {
        /// The header length the file states.
        header_len: u64,
        /// Bytes in the input.
        file_len: usize,
    },
    /// The header is not safetensors JSON (the parser's message says where and why).
    InvalidJson(String),
    /// data_offsets that leave a gap, overlap, run backwards, or do not span the tensor.
    BadOffsets {
        /// The tensor.
        name: String,
        /// What is wrong with its offsets.
        reason: &'static str,
    },
    /// A tensor whose element count overflows `usize`.
    ShapeOverflow {
        /// The tensor.
        name: String,
    },
    /// The data region does not end where the last tensor does (truncated or padded file).
    DataLength {
        /// Where the last tensor ends, in bytes from the start of the data.
        end: u64,
        /// Bytes of the data region.
        data_len: u64,
    },
    /// `__metadata__.format` is missing or not `tokenformer`.
    NotTokenFormer,
    /// `__metadata__.config` is missing.
    MissingConfig,
    /// The config is not valid JSON for a [`Config`] (the parser's message).
    InvalidConfig(String),
    /// The config parses but does not validate.
    Config(ConfigError),
    /// A tensor the config calls for is absent.
    MissingTensor(String),
    /// A tensor the config does not call for is present.
    UnknownTensor(String),
    /// A tensor's dtype is not F32, F16, BF16 (or U8 for a quantized one).
    UnsupportedDtype {
        /// The tensor.
        name: String,
        /// Its safetensors dtype.
        dtype: String,
    },
    /// A tensor's shape differs from what the config implies.
    WrongShape {
        /// The tensor.
        name: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape in the file.
        got: Vec<usize>,
    },
    /// A quantized tensor (or the quantization metadata) that does not follow the convention.
    BadQuant {
        /// The tensor (or `quantization` for the metadata itself).
        name: String,
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use LoadError::*;
        match self {
            TooShort { len } => write!(f, "file is {len} bytes: too short for a safetensors header"),
            HeaderTooLarge { header_len } => {
                write!(f, "header length {header_len} exceeds the limit of {MAX_HEADER_BYTES} bytes")
            }
            HeaderPastEnd { header_len, file_len } => {
                write!(f, "header length {header_len} runs past the end of the {file_len}-byte file")
            }
            InvalidJson(e) => write!(f, "header is not valid safetensors JSON: {e}"),
            BadOffsets { name, reason } => write!(f, "tensor `{name}`: {reason}"),
            ShapeOverflow { name } => write!(f, "tensor `{name}`: element count overflows"),
            DataLength { end, data_len } => write!(
                f,
                "the tensors end at byte {end} of the data, which is {data_len} bytes long (truncated or padded file)"
            ),
            NotTokenFormer => write!(f, "metadata `{FORMAT_KEY}` is not `{FORMAT_VALUE}`"),
            MissingConfig => write!(f, "no `{CONFIG_KEY}` in the header's __metadata__"),
            InvalidConfig(e) => write!(f, "metadata `{CONFIG_KEY}` is not a valid config: {e}"),
            Config(e) => write!(f, "invalid config: {e}"),
            MissingTensor(n) => write!(f, "missing tensor `{n}`"),
            UnknownTensor(n) => write!(f, "unknown tensor `{n}`"),
            UnsupportedDtype { name, dtype } => {
                write!(f, "tensor `{name}` has dtype {dtype}; expected F32, F16 or BF16")
            }
            WrongShape { name, expected, got } => {
                write!(f, "tensor `{name}` has shape {got:?}; the config needs {expected:?}")
            }
            BadQuant { name, reason } => write!(f, "quantized tensor `{name}`: {reason}"),
        }
    }
}

/// The config stored in a checkpoint's metadata, validated.
pub fn read_config(metadata: &BTreeMap<String, String>) -> Result<Config, LoadError> {
    if metadata.get(FORMAT_KEY).is_some_and(|f| f != FORMAT_VALUE) {
        return Err(LoadError::NotTokenFormer);
    }
    let json = metadata.get(CONFIG_KEY).ok_or(LoadError::MissingConfig)?;
    let cfg: Config =
        serde_json::from_str(json).map_err(|e| LoadError::InvalidConfig(e.to_string()))?;
    cfg.validate().map_err(LoadError::Config)?;
    Ok(cfg)
}

/// `got` must be `expected`, the shape of `spec`'s tensor as stored.
fn check_shape(spec: &TensorSpec, expected: &[usize], got: &[usize]) -> Result<(), LoadError> {
    if expected == got {
        return Ok(());
    }
    Err(LoadError::WrongShape {
        name: spec.name.clone(),
        expected: expected.to_vec(),
        got: got.to_vec(),
    })
}

/// One tensor's data as f32 (borrowed when aligned F32).
fn to_f32<'a>(spec: &TensorSpec, t: &RawTensor<'a>) -> Result<Matrix<'a>, LoadError> {
    let dtype = DType::from_safetensors(&t.dtype)
        .filter(|&d| is_float(d))
        .ok_or_else(|| LoadError::UnsupportedDtype {
            name: t.name.clone(),
            dtype: t.dtype.clone(),
        })?;
    check_shape(spec, &spec.shape, &t.shape)?;
    Ok(Matrix::F32(decode(dtype, t.bytes)))
}

/// Validate one quantized tensor against its spec and its metadata entry.
fn to_quantized<'a>(
    spec: &TensorSpec,
    t: &RawTensor<'a>,
    q: &QuantEntry,
) -> Result<Matrix<'a>, LoadError> {
    let bad = |reason: String| LoadError::BadQuant {
        name: spec.name.clone(),
        reason,
    };
    let format = DType::parse(&q.format)
        .filter(|f| f.is_block())
        .ok_or_else(|| bad(format!("format `{}` is not q8_0 or q4_0", q.format)))?;
    check_shape(spec, &spec.shape, &q.shape)?;
    let transposed = spec.role.transposed_when_quantized();
    if q.transposed != transposed {
        return Err(bad(format!(
            "must be stored with transposed = {transposed} (values transposed, nothing else)"
        )));
    }
    if let Some(reason) = format_error(spec, format) {
        return Err(bad(reason.into()));
    }
    if t.dtype != DType::U8.info().safetensors.unwrap_or_default() {
        return Err(bad(format!("has dtype {}; quantized data is U8", t.dtype)));
    }
    let (rows, cols) = spec.stored_rows_cols();
    check_shape(spec, &[rows, format.bytes_for(cols)], &t.shape)?;
    Matrix::from_block_bytes(format, t.bytes)
        .ok_or_else(|| bad(format!("format `{format}` has no block type")))
}

/// Load and validate a model from checkpoint bytes. Aligned f32 and block weights borrow from
/// `bytes`.
pub fn load(bytes: &[u8]) -> Result<Model<'_>, LoadError> {
    let st = parse(bytes)?;
    let config = read_config(&st.metadata)?;
    let mut quant: BTreeMap<String, QuantEntry> = match st.metadata.get(QUANT_KEY) {
        Some(json) => serde_json::from_str(json).map_err(|e| LoadError::BadQuant {
            name: QUANT_KEY.into(),
            reason: format!("metadata is not a map of {{format, shape, transposed}}: {e}"),
        })?,
        None => BTreeMap::new(),
    };
    let mut by_name: BTreeMap<&str, &RawTensor> =
        st.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    // Specs are generated lazily and the loop stops at the first missing tensor, so a hostile
    // config (millions of layers in a tiny file) costs no more memory than the file holds.
    let mut weights = Vec::new();
    for spec in tensor_specs_iter(&config) {
        let t = by_name
            .remove(spec.name.as_str())
            .ok_or_else(|| LoadError::MissingTensor(spec.name.clone()))?;
        weights.push(match quant.remove(&spec.name) {
            Some(q) => to_quantized(&spec, t, &q)?,
            None => to_f32(&spec, t)?,
        });
    }
    if let Some(name) = by_name.keys().next() {
        return Err(LoadError::UnknownTensor(name.to_string()));
    }
    if let Some(name) = quant.keys().next() {
        return Err(LoadError::BadQuant {
            name: name.clone(),
            reason: "is described in the metadata but is no tensor of the model".into(),
        });
    }
    Model::from_matrices(config, weights).map_err(|e| match e {
        ModelError::Config(c) => LoadError::Config(c),
        other => LoadError::InvalidConfig(other.to_string()),
    })
}

/// What the crate writes for `model`: its tensors (f32 ones stored as `float_as`: F32, F16 or
/// BF16; quantized ones as U8 blocks) and the metadata (format, config, quantization, `extra`).
#[allow(clippy::type_complexity)]
pub fn to_write<'m>(
    model: &'m Model<'_>,
    float_as: DType,
    extra: &[(&str, &str)],
) -> (Vec<(String, Out<'m>)>, Vec<(String, String)>) {
    let mut meta: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    meta.push((FORMAT_KEY.into(), FORMAT_VALUE.into()));
    let config = serde_json::to_string(&model.config).unwrap_or_default();
    meta.push((CONFIG_KEY.into(), config));
    let mut quant = BTreeMap::new();
    let mut tensors = Vec::new();
    for spec in tensor_specs_iter(&model.config) {
        let matrix = model.tensor(spec.role);
        let mut shape = spec.shape.clone();
        if let Some(format) = DType::parse(matrix.format().name()).filter(|f| f.is_block()) {
            let (rows, cols) = spec.stored_rows_cols();
            shape = alloc::vec![rows, format.bytes_for(cols)];
            let entry = QuantEntry {
                format: format.name().into(),
                shape: spec.shape.clone(),
                transposed: spec.role.transposed_when_quantized(),
            };
            quant.insert(spec.name.clone(), entry);
        }
        let out = Out {
            shape,
            matrix,
            float_as,
        };
        tensors.push((spec.name, out));
    }
    if !quant.is_empty() {
        let q = serde_json::to_string(&quant).unwrap_or_default();
        meta.push((QUANT_KEY.into(), q));
    }
    (tensors, meta)
}

/// A whole checkpoint in memory (small models, tests, no_std). `dtype` as in [`to_write`].
pub fn to_bytes(model: &Model<'_>, dtype: DType) -> Vec<u8> {
    let (tensors, meta) = to_write(model, dtype, &[]);
    let mut bytes =
        safetensors::serialize(tensors, Some(meta.into_iter().collect())).unwrap_or_default();
    container::canonical_header(&mut bytes);
    bytes
}

//! Checkpoints: safetensors with the model's `Config` as JSON under `__metadata__.config`, so one
//! file is self-describing.
//!
//! Loading takes `&[u8]` (a memory map in std builds) and validates everything before a single
//! weight is used: header length, JSON, every tensor present and nothing unknown, dtypes, shapes
//! against the config, offsets inside the data and not overlapping. Aligned little-endian f32
//! tensors are borrowed from the bytes, never copied; f16 and bf16 are widened to f32.
//!
//! Quantized matrices (Q8_0, Q4_0) are U8 tensors of shape [rows, row_bytes] under the same
//! names; `__metadata__.quantization` is a JSON object that gives, for each of them, the block
//! format, the logical shape (the f32 tensor's) and whether it is stored transposed (values are:
//! see `model::PattentionWeights`). Their blocks are borrowed when 2-byte aligned.

use crate::config::{Config, ConfigError};
use crate::formats::Block;
use crate::model::{
    format_error, tensor_specs, tensor_specs_iter, transposed_when_quantized, Matrix, Model,
    ModelError, TensorSpec, Weight,
};
use crate::Format;
use alloc::borrow::Cow;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use serde_json::Value;

/// Headers larger than this are refused before any parsing (safetensors uses the same bound).
pub const MAX_HEADER_BYTES: u64 = 100 << 20;

/// Metadata key that holds the config JSON.
pub const CONFIG_KEY: &str = "config";
/// Metadata key and value that mark our format.
pub const FORMAT_KEY: &str = "format";
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
    /// Stored as [shape[1], shape[0]] rows of blocks.
    #[serde(default)]
    pub transposed: bool,
}

/// Element types a checkpoint may store weights in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    BF16,
}

impl Dtype {
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
        }
    }

    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
        }
    }

    pub fn parse(s: &str) -> Option<Dtype> {
        [Dtype::F32, Dtype::F16, Dtype::BF16]
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(s))
    }
}

/// Why a checkpoint was refused. Every variant that concerns one tensor or field names it.
#[derive(Clone, Debug, PartialEq)]
pub enum LoadError {
    /// Fewer than the 8 bytes of the header length.
    TooShort {
        len: usize,
    },
    HeaderTooLarge {
        header_len: u64,
    },
    HeaderPastEnd {
        header_len: u64,
        file_len: usize,
    },
    InvalidJson(String),
    /// A header entry that is not `{dtype, shape, data_offsets}`.
    MalformedEntry {
        name: String,
        reason: &'static str,
    },
    NotTokenFormer,
    MissingConfig,
    InvalidConfig(String),
    Config(ConfigError),
    MissingTensor(String),
    UnknownTensor(String),
    UnsupportedDtype {
        name: String,
        dtype: String,
    },
    WrongShape {
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    ShapeOverflow {
        name: String,
    },
    /// data_offsets whose span does not equal numel · dtype size.
    BadOffsets {
        name: String,
        start: u64,
        end: u64,
        expected_bytes: u64,
    },
    OutOfBounds {
        name: String,
        end: u64,
        data_len: u64,
    },
    Overlap {
        first: String,
        second: String,
    },
    /// A quantized tensor (or the quantization metadata) that does not follow the convention.
    BadQuant {
        name: String,
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
            InvalidJson(e) => write!(f, "header is not valid JSON: {e}"),
            MalformedEntry { name, reason } => write!(f, "header entry `{name}`: {reason}"),
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
            ShapeOverflow { name } => write!(f, "tensor `{name}`: element count overflows"),
            BadOffsets { name, start, end, expected_bytes } => write!(
                f,
                "tensor `{name}`: data_offsets [{start}, {end}] do not span the {expected_bytes} bytes its shape needs"
            ),
            OutOfBounds { name, end, data_len } => {
                write!(f, "tensor `{name}` ends at byte {end}, past the {data_len} bytes of data")
            }
            Overlap { first, second } => write!(f, "tensors `{first}` and `{second}` overlap"),
            BadQuant { name, reason } => write!(f, "quantized tensor `{name}`: {reason}"),
        }
    }
}

/// One tensor entry of a safetensors header, validated for internal consistency.
#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor<'a> {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    /// The tensor's bytes (inside the data region, length checked against shape and dtype when
    /// the dtype is known).
    pub bytes: &'a [u8],
}

/// A parsed safetensors file: metadata and tensors, offsets checked, nothing interpreted yet.
#[derive(Clone, Debug)]
pub struct Safetensors<'a> {
    pub metadata: BTreeMap<String, String>,
    pub tensors: Vec<RawTensor<'a>>,
}

fn dtype_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "U8" | "I8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
        _ => return None,
    })
}

/// Parse the safetensors container: header length, JSON, entries, offsets (in bounds, sized to
/// their shape, not overlapping).
pub fn parse_safetensors(bytes: &[u8]) -> Result<Safetensors<'_>, LoadError> {
    if bytes.len() < 8 {
        return Err(LoadError::TooShort { len: bytes.len() });
    }
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(&bytes[..8]);
    let header_len = u64::from_le_bytes(len8);
    if header_len > MAX_HEADER_BYTES {
        return Err(LoadError::HeaderTooLarge { header_len });
    }
    if header_len > (bytes.len() - 8) as u64 {
        return Err(LoadError::HeaderPastEnd {
            header_len,
            file_len: bytes.len(),
        });
    }
    let header = &bytes[8..8 + header_len as usize];
    let data = &bytes[8 + header_len as usize..];
    let json: BTreeMap<String, Value> =
        serde_json::from_slice(header).map_err(|e| LoadError::InvalidJson(e.to_string()))?;

    let mut metadata = BTreeMap::new();
    let mut tensors = Vec::new();
    let mut spans: Vec<(u64, u64, usize)> = Vec::new();
    for (name, entry) in json {
        let bad = |reason| LoadError::MalformedEntry {
            name: name.clone(),
            reason,
        };
        if name == "__metadata__" {
            let obj = entry
                .as_object()
                .ok_or_else(|| bad("must be an object of strings"))?;
            for (k, v) in obj {
                let v = v.as_str().ok_or_else(|| bad("values must be strings"))?;
                metadata.insert(k.clone(), v.to_string());
            }
            continue;
        }
        let obj = entry.as_object().ok_or_else(|| bad("must be an object"))?;
        if obj
            .keys()
            .any(|k| !matches!(k.as_str(), "dtype" | "shape" | "data_offsets"))
        {
            return Err(bad("has a field other than dtype, shape, data_offsets"));
        }
        let dtype = obj
            .get("dtype")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("dtype must be a string"))?;
        let shape_v = obj
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("shape must be an array"))?;
        let mut shape = Vec::with_capacity(shape_v.len().min(8));
        for s in shape_v {
            let s = s
                .as_u64()
                .ok_or_else(|| bad("shape entries must be non-negative integers"))?;
            shape.push(
                usize::try_from(s).map_err(|_| LoadError::ShapeOverflow { name: name.clone() })?,
            );
        }
        let offs = obj
            .get("data_offsets")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("data_offsets must be an array"))?;
        let (start, end) = match offs.as_slice() {
            [a, b] => (
                a.as_u64()
                    .ok_or_else(|| bad("data_offsets must be integers"))?,
                b.as_u64()
                    .ok_or_else(|| bad("data_offsets must be integers"))?,
            ),
            _ => return Err(bad("data_offsets must have two entries")),
        };
        let numel = shape
            .iter()
            .try_fold(1usize, |acc, &s| acc.checked_mul(s))
            .ok_or_else(|| LoadError::ShapeOverflow { name: name.clone() })?;
        if let Some(size) = dtype_size(dtype) {
            let nbytes = numel
                .checked_mul(size)
                .ok_or_else(|| LoadError::ShapeOverflow { name: name.clone() })?
                as u64;
            if end < start || end - start != nbytes {
                return Err(LoadError::BadOffsets {
                    name: name.clone(),
                    start,
                    end,
                    expected_bytes: nbytes,
                });
            }
        } else if end < start {
            return Err(LoadError::BadOffsets {
                name: name.clone(),
                start,
                end,
                expected_bytes: 0,
            });
        }
        if end > data.len() as u64 {
            return Err(LoadError::OutOfBounds {
                name: name.clone(),
                end,
                data_len: data.len() as u64,
            });
        }
        spans.push((start, end, tensors.len()));
        tensors.push(RawTensor {
            name: name.clone(),
            dtype: dtype.to_string(),
            shape,
            bytes: &data[start as usize..end as usize],
        });
    }
    spans.sort_unstable();
    for w in spans.windows(2) {
        let ((_, end_a, a), (start_b, end_b, b)) = (w[0], w[1]);
        // Empty tensors occupy no bytes and cannot overlap anything.
        if start_b < end_a && start_b < end_b {
            return Err(LoadError::Overlap {
                first: tensors[a].name.clone(),
                second: tensors[b].name.clone(),
            });
        }
    }
    Ok(Safetensors { metadata, tensors })
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

/// Widen or borrow one tensor's data as f32.
fn to_f32<'a>(t: &RawTensor<'a>) -> Result<Weight<'a>, LoadError> {
    let dtype = Dtype::parse(&t.dtype)
        .filter(|d| d.name() == t.dtype)
        .ok_or_else(|| LoadError::UnsupportedDtype {
            name: t.name.clone(),
            dtype: t.dtype.clone(),
        })?;
    Ok(decode(dtype, t.bytes))
}

impl Dtype {
    /// One little-endian element (`b` holds exactly `self.size()` bytes).
    pub fn read(self, b: &[u8]) -> f32 {
        match self {
            Dtype::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Dtype::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            Dtype::BF16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        }
    }
}

/// Packed little-endian elements as f32: borrowed when they are aligned f32 on a little-endian
/// machine, widened (or copied) otherwise. A trailing partial element is ignored.
pub fn decode(dtype: Dtype, b: &[u8]) -> Weight<'_> {
    if dtype == Dtype::F32 && cfg!(target_endian = "little") && b.as_ptr().align_offset(4) == 0 {
        // SAFETY: the pointer is 4-byte aligned, the length is rounded down to a multiple of 4,
        // every bit pattern is a valid f32, and the slice borrows `b` for its lifetime.
        return Cow::Borrowed(unsafe {
            core::slice::from_raw_parts(b.as_ptr().cast::<f32>(), b.len() / 4)
        });
    }
    Cow::Owned(
        b.chunks_exact(dtype.size())
            .map(|c| dtype.read(c))
            .collect(),
    )
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
    let format = Format::parse(&q.format)
        .filter(|f| f.is_block())
        .ok_or_else(|| bad(format!("format `{}` is not q8_0 or q4_0", q.format)))?;
    if q.shape != spec.shape {
        return Err(LoadError::WrongShape {
            name: spec.name.clone(),
            expected: spec.shape.clone(),
            got: q.shape.clone(),
        });
    }
    let transposed = transposed_when_quantized(spec.role);
    if q.transposed != transposed {
        return Err(bad(format!(
            "must be stored with transposed = {transposed} (values transposed, nothing else)"
        )));
    }
    if let Some(reason) = format_error(spec, format) {
        return Err(bad(reason.into()));
    }
    if t.dtype != "U8" {
        return Err(bad(format!("has dtype {}; quantized data is U8", t.dtype)));
    }
    let (rows, cols) = if transposed {
        (spec.shape[1], spec.shape[0])
    } else {
        (spec.shape[0], spec.shape[1])
    };
    let stored = alloc::vec![rows, format.bytes_for(cols)];
    if t.shape != stored {
        return Err(LoadError::WrongShape {
            name: spec.name.clone(),
            expected: stored,
            got: t.shape.clone(),
        });
    }
    Matrix::from_block_bytes(format, t.bytes)
        .ok_or_else(|| bad(format!("{format} is not a weight format")))
}

/// Load and validate a model from checkpoint bytes. Aligned f32 and block weights borrow from
/// `bytes`.
pub fn load(bytes: &[u8]) -> Result<Model<'_>, LoadError> {
    let st = parse_safetensors(bytes)?;
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
        if let Some(q) = quant.remove(&spec.name) {
            weights.push(to_quantized(&spec, t, &q)?);
            continue;
        }
        if t.shape != spec.shape {
            return Err(LoadError::WrongShape {
                name: spec.name.clone(),
                expected: spec.shape.clone(),
                got: t.shape.clone(),
            });
        }
        weights.push(Matrix::F32(to_f32(t)?));
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

/// The header (length prefix included) of a checkpoint for `model`, its f32 tensors stored as
/// `dtype`, its quantized ones as U8 blocks; tensors follow in `tensor_specs` order, packed.
/// The JSON is space-padded so data starts 8-aligned.
pub fn header(model: &Model<'_>, dtype: Dtype, extra_metadata: &[(&str, &str)]) -> Vec<u8> {
    let config = &model.config;
    let mut meta = serde_json::Map::new();
    meta.insert(FORMAT_KEY.into(), FORMAT_VALUE.into());
    meta.insert(
        CONFIG_KEY.into(),
        serde_json::to_string(config).unwrap_or_default().into(),
    );
    for (k, v) in extra_metadata {
        meta.insert((*k).into(), (*v).into());
    }
    let mut root = serde_json::Map::new();
    let mut quant = BTreeMap::new();
    let mut off = 0u64;
    for (spec, m) in tensor_specs(config).into_iter().zip(model.tensors()) {
        let entry = if m.format() == Format::F32 {
            let n = (spec.numel() * dtype.size()) as u64;
            let e = serde_json::json!({"dtype": dtype.name(), "shape": spec.shape, "data_offsets": [off, off + n]});
            off += n;
            e
        } else {
            let transposed = transposed_when_quantized(spec.role);
            let (rows, cols) = if transposed {
                (spec.shape[1], spec.shape[0])
            } else {
                (spec.shape[0], spec.shape[1])
            };
            let n = m.bytes() as u64;
            let e = serde_json::json!({"dtype": "U8", "shape": [rows, m.format().bytes_for(cols)], "data_offsets": [off, off + n]});
            off += n;
            quant.insert(
                spec.name.clone(),
                QuantEntry {
                    format: m.format().name().into(),
                    shape: spec.shape.clone(),
                    transposed,
                },
            );
            e
        };
        root.insert(spec.name, entry);
    }
    if !quant.is_empty() {
        meta.insert(
            QUANT_KEY.into(),
            serde_json::to_string(&quant).unwrap_or_default().into(),
        );
    }
    root.insert("__metadata__".into(), Value::Object(meta));
    let mut json = serde_json::to_vec(&Value::Object(root)).unwrap_or_default();
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

/// Stream a checkpoint of `model` into `sink` (header, then each tensor: f32 ones as `dtype`,
/// quantized ones as their blocks).
pub fn write<E>(
    model: &Model<'_>,
    dtype: Dtype,
    extra_metadata: &[(&str, &str)],
    mut sink: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    sink(&header(model, dtype, extra_metadata))?;
    let mut buf = Vec::with_capacity(1 << 16);
    fn blocks<B: Block, E>(
        b: &[B],
        buf: &mut Vec<u8>,
        sink: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        for chunk in b.chunks(1 << 10) {
            buf.clear();
            chunk.iter().for_each(|x| x.write_bytes(buf));
            sink(buf)?;
        }
        Ok(())
    }
    for m in model.tensors() {
        match &m {
            Matrix::F32(t) => {
                for chunk in t.chunks(1 << 14) {
                    buf.clear();
                    for &x in chunk {
                        match dtype {
                            Dtype::F32 => buf.extend_from_slice(&x.to_le_bytes()),
                            Dtype::F16 => {
                                buf.extend_from_slice(&half::f16::from_f32(x).to_le_bytes())
                            }
                            Dtype::BF16 => {
                                buf.extend_from_slice(&half::bf16::from_f32(x).to_le_bytes())
                            }
                        }
                    }
                    sink(&buf)?;
                }
            }
            Matrix::Q8_0(b) => blocks(b, &mut buf, &mut sink)?,
            Matrix::Q4_0(b) => blocks(b, &mut buf, &mut sink)?,
        }
    }
    Ok(())
}

/// A whole checkpoint in memory (small models, tests, no_std).
pub fn to_bytes(model: &Model<'_>, dtype: Dtype) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = write::<()>(model, dtype, &[], |b| {
        out.extend_from_slice(b);
        Ok(())
    });
    out
}

/// A short description of a stored tensor for error messages and `inspect`.
pub fn describe(t: &RawTensor<'_>) -> String {
    format!("{} {} {:?}", t.name, t.dtype, t.shape)
}

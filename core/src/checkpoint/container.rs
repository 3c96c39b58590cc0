//! Glue to the `safetensors` crate, which parses and writes the container: our header-size cap
//! before it sees the bytes, its refusals turned into [`LoadError`]s that name the tensor, its
//! tensors as borrowed byte slices, and the [`View`]s that writing streams through.

use super::LoadError;
use crate::dtype::DType;
use crate::model::{Matrix, Weight};
use alloc::borrow::Cow;
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use safetensors::tensor::TensorInfo;
use safetensors::{Dtype, SafeTensorError, SafeTensors, View};

/// Headers larger than this are refused before the crate sees them, so a hostile length never
/// becomes an allocation (the crate's own bound, 10⁸ bytes, applies below it).
pub const MAX_HEADER_BYTES: u64 = 100 << 20;

/// One tensor of a safetensors file: the crate checked that its bytes lie in the data region,
/// span exactly its shape times its dtype's size and overlap no other tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor<'a> {
    /// The tensor's name in the header.
    pub name: String,
    /// The safetensors dtype name (`F32`, `U8`, and types we do not load).
    pub dtype: String,
    /// Its shape as stored.
    pub shape: Vec<usize>,
    /// Its data, borrowed from the file's bytes.
    pub bytes: &'a [u8],
}

/// A parsed safetensors file: metadata and tensors (sorted by name), nothing interpreted yet.
#[derive(Clone, Debug)]
pub struct Safetensors<'a> {
    /// The header's `__metadata__` (string to string).
    pub metadata: BTreeMap<String, String>,
    /// Every tensor, sorted by name.
    pub tensors: Vec<RawTensor<'a>>,
}

/// Parse the container through the crate, after our bounds on the header length.
pub fn parse(bytes: &[u8]) -> Result<Safetensors<'_>, LoadError> {
    let len8: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or(LoadError::TooShort { len: bytes.len() })?;
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
    let (header, data) = bytes[8..].split_at(header_len as usize);
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| refused(e, header, data))?;
    let mut tensors: Vec<RawTensor<'_>> = meta
        .tensors()
        .into_iter()
        .map(|(name, info)| RawTensor {
            name,
            dtype: info.dtype.to_string(),
            shape: info.shape.clone(),
            bytes: &data[info.data_offsets.0..info.data_offsets.1],
        })
        .collect();
    tensors.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    let metadata = meta.metadata().iter().flatten();
    Ok(Safetensors {
        metadata: metadata.map(|(k, v)| (k.clone(), v.clone())).collect(),
        tensors,
    })
}

/// The crate's refusal as ours, naming the tensor where the crate does not.
fn refused(e: SafeTensorError, header: &[u8], data: &[u8]) -> LoadError {
    use SafeTensorError as E;
    match e {
        E::HeaderTooLarge => LoadError::HeaderTooLarge {
            header_len: header.len() as u64,
        },
        E::InvalidHeaderDeserialization(j) | E::JsonError(j) => LoadError::InvalidJson(j.to_string()),
        E::InvalidOffset(name) => LoadError::BadOffsets {
            name,
            reason: "data_offsets do not start where the previous tensor ends (a gap, an overlap or a reversed range)",
        },
        E::TensorInvalidInfo
        | E::ValidationOverflow
        | E::MisalignedSlice
        | E::MetadataIncompleteBuffer => locate(header, data.len()),
        other => LoadError::InvalidJson(other.to_string()),
    }
}

/// Find the tensor behind one of the crate's nameless refusals (the header parsed as JSON
/// before, so this only runs on files the crate refused).
fn locate(header: &[u8], data_len: usize) -> LoadError {
    let entries: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(header).unwrap_or_default();
    let mut end = 0;
    for (name, v) in entries {
        let Ok(info) = serde_json::from_value::<TensorInfo>(v) else {
            continue; // __metadata__
        };
        let (start, stop) = info.data_offsets;
        let bits = info
            .shape
            .iter()
            .try_fold(info.dtype.bitsize(), |a, &d| a.checked_mul(d));
        match bits {
            None => return LoadError::ShapeOverflow { name },
            Some(b) if b % 8 != 0 || Some(b / 8) != stop.checked_sub(start) => {
                return LoadError::BadOffsets {
                    name,
                    reason: "data_offsets do not span its shape times its dtype's size",
                }
            }
            _ => end = end.max(stop),
        }
    }
    LoadError::DataLength {
        end: end as u64,
        data_len: data_len as u64,
    }
}

/// Whether tensors of this type load as f32 (widened when narrower).
pub fn is_float(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F16 | DType::BF16)
}

/// One little-endian element of a float type (`b` holds exactly its size).
pub fn read(dtype: DType, b: &[u8]) -> f32 {
    match dtype {
        DType::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
        DType::BF16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        _ => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
    }
}

/// Packed little-endian elements of a float type as f32: borrowed when they are aligned f32 on
/// a little-endian machine, widened (or copied) otherwise. A trailing partial element is
/// ignored.
pub fn decode(dtype: DType, b: &[u8]) -> Weight<'_> {
    if dtype == DType::F32 && cfg!(target_endian = "little") && b.as_ptr().align_offset(4) == 0 {
        // SAFETY: the pointer is 4-byte aligned, the length is rounded down to a multiple of 4,
        // every bit pattern is a valid f32, and the slice borrows `b` for its lifetime.
        return Cow::Borrowed(unsafe {
            core::slice::from_raw_parts(b.as_ptr().cast::<f32>(), b.len() / 4)
        });
    }
    let size = dtype.bytes_for(1);
    Cow::Owned(b.chunks_exact(size).map(|c| read(dtype, c)).collect())
}

/// A tensor as the crate writes it; its bytes are produced only when the crate asks for them,
/// so writing a file holds at most one converted tensor in memory.
pub struct Out<'a> {
    /// The stored shape ([rows, row bytes] for quantized matrices).
    pub shape: Vec<usize>,
    /// The values to store.
    pub matrix: Matrix<'a>,
    /// How f32 values are stored: F32, F16 or BF16 (anything else stores F32).
    pub float_as: DType,
}

impl View for Out<'_> {
    fn dtype(&self) -> Dtype {
        match (&self.matrix, self.float_as) {
            (Matrix::F32(_), DType::F16) => Dtype::F16,
            (Matrix::F32(_), DType::BF16) => Dtype::BF16,
            (Matrix::F32(_), _) => Dtype::F32,
            _ => Dtype::U8,
        }
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        match (&self.matrix, self.dtype()) {
            (Matrix::F32(x), Dtype::F16) => x
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
            (Matrix::F32(x), Dtype::BF16) => x
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
            (m, _) => m.stored_bytes(),
        }
    }

    fn data_len(&self) -> usize {
        match &self.matrix {
            Matrix::F32(x) => x.len() * self.dtype().bitsize() / 8,
            m => m.bytes(),
        }
    }
}

/// Sort the keys of a header the crate wrote (its `__metadata__` comes from a `HashMap`, in
/// random order) so that equal models give equal files. Same length: compact JSON either way.
pub fn canonical_header(file: &mut [u8]) {
    let Some(n) = file
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(|b| u64::from_le_bytes(b) as usize)
    else {
        return;
    };
    let Some(header) = file.get_mut(8..8 + n) else {
        return;
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(header) else {
        return;
    };
    if let Ok(json) = serde_json::to_vec(&v) {
        if json.len() <= n {
            header[..json.len()].copy_from_slice(&json);
            header[json.len()..].fill(b' ');
        }
    }
}

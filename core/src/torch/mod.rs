//! Reading `torch.save` state dicts (`pytorch_model.bin`) without Python.
//!
//! A torch.save file is a zip archive (read by the `zip` crate) holding `{archive}/data.pkl`, a
//! pickle of the state dict (`pickle`), and one STORED entry `{archive}/data/{key}` per storage
//! with its raw little-endian bytes, borrowed in place from the memory map at the offset the
//! archive gives. Every tensor becomes a [`TensorView`], a strided view of a storage's bytes
//! whose extent has been checked against the storage.

pub mod pickle;

use crate::checkpoint::container::{decode, is_float, read as read_element};
use crate::dtype::DType;
use crate::model::Weight;
use alloc::borrow::Cow;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
pub use pickle::PickleError;

/// Why the zip container was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ZipError {
    /// The zip crate refused the archive (truncated, not a zip, corrupt directory).
    Archive(String),
    /// An entry torch.save does not write (compressed or encrypted), or one outside the file.
    Unsupported {
        /// The entry.
        name: String,
        /// What it uses that torch.save does not write.
        reason: &'static str,
    },
    /// An entry whose data does not match the CRC-32 recorded for it.
    Crc {
        /// The entry.
        name: String,
        /// The recorded CRC-32.
        expected: u32,
        /// The data's CRC-32.
        got: u32,
    },
}

impl fmt::Display for ZipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZipError::Archive(e) => write!(f, "not a readable torch.save zip: {e}"),
            ZipError::Unsupported { name, reason } => write!(f, "zip entry `{name}`: {reason}"),
            ZipError::Crc { name, expected, got } => write!(
                f,
                "zip entry `{name}` has CRC-32 {got:08x}, the directory records {expected:08x}: the file is corrupt"
            ),
        }
    }
}

/// One stored file of the archive, borrowed from the archive's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The entry's path inside the archive.
    pub name: String,
    /// Its (stored, uncompressed) bytes.
    pub data: &'a [u8],
    /// CRC-32 recorded in the central directory.
    pub crc32: u32,
}

impl Entry<'_> {
    /// Compare the data's CRC-32 with the recorded one.
    pub fn verify_crc(&self) -> Result<(), ZipError> {
        let got = crc32fast::hash(self.data);
        if got != self.crc32 {
            return Err(ZipError::Crc {
                name: self.name.clone(),
                expected: self.crc32,
                got,
            });
        }
        Ok(())
    }
}

/// The entries of a zip archive, read in place: the crate parses the directories and finds where
/// each entry's data starts; entries must be STORED (what torch.save writes), so their bytes are
/// the file's own.
pub fn entries(bytes: &[u8]) -> Result<Vec<Entry<'_>>, ZipError> {
    let archive = |e: zip::result::ZipError| ZipError::Archive(e.to_string());
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(archive)?;
    (0..zip.len())
        .map(|i| {
            let f = zip.by_index_raw(i).map_err(archive)?;
            let unsupported = |reason| ZipError::Unsupported {
                name: f.name().to_string(),
                reason,
            };
            if f.encrypted() || f.compression() != zip::CompressionMethod::Stored {
                return Err(unsupported(
                    "is compressed or encrypted; torch.save writes stored entries only",
                ));
            }
            if f.size() != f.compressed_size() {
                return Err(unsupported("is stored with two different sizes"));
            }
            let data = usize::try_from(f.data_start())
                .ok()
                .zip(usize::try_from(f.size()).ok())
                .and_then(|(start, n)| bytes.get(start..start.checked_add(n)?))
                .ok_or_else(|| unsupported("runs past the end of the file (truncated?)"))?;
            Ok(Entry {
                name: f.name().to_string(),
                data,
                crc32: f.crc32(),
            })
        })
        .collect()
}

/// Why a torch.save file was refused.
#[derive(Clone, Debug, PartialEq)]
pub enum TorchError {
    /// The zip container was refused.
    Zip(ZipError),
    /// The pickle (`data.pkl`) was refused.
    Pickle(PickleError),
    /// A pickle at the start of the file: the format torch.save used before PyTorch 1.6.
    Legacy,
    /// No `data.pkl` entry in the archive.
    NoDataPkl,
    /// The archive's `byteorder` entry is not `little`.
    ByteOrder(String),
    /// A tensor refers to a storage the archive lacks.
    MissingStorage {
        /// The tensor.
        tensor: String,
        /// The storage key.
        key: String,
    },
    /// A storage entry whose size is not its element count times its element size.
    StorageSize {
        /// The storage key.
        key: String,
        /// Bytes its element count implies.
        expected: u64,
        /// Bytes of the entry.
        got: u64,
    },
    /// One storage key used with two different types or sizes.
    StorageConflict {
        /// The storage key.
        key: String,
    },
    /// A tensor whose size, stride and offset reach past the end of its storage.
    TensorPastStorage {
        /// The tensor.
        name: String,
        /// Bytes its view reaches.
        needs: u64,
        /// Bytes of the storage.
        has: u64,
    },
    /// A tensor whose size or extent overflows.
    Overflow {
        /// The tensor.
        name: String,
    },
    /// The tensors together hold more elements than the file can justify (stride-0 views).
    TooManyElements {
        /// Elements of every tensor.
        total: u64,
        /// The most the file's size allows.
        limit: u64,
    },
    /// A tensor of an element type that cannot be read as weights.
    UnsupportedDtype {
        /// The tensor.
        name: String,
        /// Its element type.
        dtype: DType,
    },
}

impl fmt::Display for TorchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use TorchError::*;
        match self {
            Zip(e) => write!(f, "{e}"),
            Pickle(e) => write!(f, "{e}"),
            Legacy => write!(
                f,
                "this is the legacy (pre-1.6, non-zip) torch.save format; re-save it with a current PyTorch"
            ),
            NoDataPkl => write!(f, "no `<archive>/data.pkl` entry: not a torch.save zip file"),
            ByteOrder(o) => write!(f, "the file's byte order is `{o}`; only little-endian is supported"),
            MissingStorage { tensor, key } => {
                write!(f, "tensor `{tensor}` uses storage `{key}`, which is not in the archive")
            }
            StorageSize { key, expected, got } => write!(
                f,
                "storage `{key}` holds {got} bytes; its declared element count needs {expected}"
            ),
            StorageConflict { key } => {
                write!(f, "storage `{key}` is declared with two different types or sizes")
            }
            TensorPastStorage { name, needs, has } => write!(
                f,
                "tensor `{name}` needs {needs} elements of its storage, which holds only {has}"
            ),
            Overflow { name } => write!(f, "tensor `{name}`: size or stride overflows"),
            TooManyElements { total, limit } => write!(
                f,
                "the tensors view {total} elements in total, more than this file's limit of {limit}"
            ),
            UnsupportedDtype { name, dtype } => write!(
                f,
                "tensor `{name}` is stored as {}; only FloatStorage, HalfStorage and BFloat16Storage (f32, f16, bf16) convert",
                dtype.info().torch.unwrap_or(dtype.name())
            ),
        }
    }
}

impl From<ZipError> for TorchError {
    fn from(e: ZipError) -> Self {
        TorchError::Zip(e)
    }
}

impl From<PickleError> for TorchError {
    fn from(e: PickleError) -> Self {
        TorchError::Pickle(e)
    }
}

/// A strided view of one storage's bytes; the extent is checked when it is made.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorView<'a> {
    /// The state-dict key of the tensor.
    pub name: String,
    /// Element type of the storage.
    pub dtype: DType,
    /// Logical shape.
    pub shape: Vec<usize>,
    /// Strides in elements, one per dimension.
    pub strides: Vec<usize>,
    /// Offset into the storage, in elements.
    pub offset: usize,
    /// The whole storage.
    pub storage: &'a [u8],
}

fn usizes(xs: &[u64], name: &str) -> Result<Vec<usize>, TorchError> {
    xs.iter()
        .map(|&x| usize::try_from(x).map_err(|_| TorchError::Overflow { name: name.into() }))
        .collect()
}

impl<'a> TensorView<'a> {
    /// Check that every element of the view lies inside `storage`.
    pub fn new(
        name: String,
        dtype: DType,
        shape: Vec<usize>,
        strides: Vec<usize>,
        offset: usize,
        storage: &'a [u8],
    ) -> Result<TensorView<'a>, TorchError> {
        let over = || TorchError::Overflow { name: name.clone() };
        let numel = shape
            .iter()
            .try_fold(1usize, |a, &s| a.checked_mul(s))
            .ok_or_else(over)?;
        let has = (storage.len() / dtype.bytes_for(1)) as u64;
        if numel > 0 {
            // The last element a view touches: offset + Σ (size_i − 1)·stride_i.
            let last = shape
                .iter()
                .zip(&strides)
                .try_fold(offset, |a, (&s, &st)| {
                    a.checked_add((s - 1).checked_mul(st)?)
                })
                .ok_or_else(over)?;
            if last as u64 >= has {
                return Err(TorchError::TensorPastStorage {
                    name,
                    needs: last as u64 + 1,
                    has,
                });
            }
        }
        Ok(TensorView {
            name,
            dtype,
            shape,
            strides,
            offset,
            storage,
        })
    }

    /// A packed row-major view (safetensors tensors).
    pub fn packed(
        name: String,
        dtype: DType,
        shape: Vec<usize>,
        bytes: &'a [u8],
    ) -> Result<TensorView<'a>, TorchError> {
        let strides = row_major(&shape);
        TensorView::new(name, dtype, shape, strides, 0, bytes)
    }

    /// Element count (the product of the shape).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    fn contiguous(&self) -> bool {
        let want = row_major(&self.shape);
        // A dimension of size 1 may carry any stride.
        self.shape
            .iter()
            .zip(self.strides.iter().zip(&want))
            .all(|(&s, (&a, &b))| s == 1 || a == b)
    }

    /// The elements in row-major order as f32: borrowed from the storage when they are packed,
    /// aligned f32, gathered through the strides otherwise.
    pub fn to_f32(&self) -> Result<Weight<'a>, TorchError> {
        let dtype = self.dtype;
        if !is_float(dtype) {
            return Err(TorchError::UnsupportedDtype {
                name: self.name.clone(),
                dtype,
            });
        }
        let es = dtype.bytes_for(1);
        let n = self.numel();
        if n == 0 {
            return Ok(Cow::Owned(Vec::new()));
        }
        // Extents were checked in `new`, so these indices are in bounds.
        if self.contiguous() {
            let b = &self.storage[self.offset * es..(self.offset + n) * es];
            return Ok(decode(dtype, b));
        }
        let mut out = Vec::with_capacity(n);
        let rank = self.shape.len();
        let mut idx = vec![0usize; rank];
        let mut at = self.offset;
        for _ in 0..n {
            out.push(read_element(dtype, &self.storage[at * es..(at + 1) * es]));
            // Odometer over the shape, moving `at` by the strides.
            for d in (0..rank).rev() {
                // Wrapping: a size-1 dimension may carry any stride; `at` returns in range.
                idx[d] += 1;
                at = at.wrapping_add(self.strides[d]);
                if idx[d] < self.shape[d] {
                    break;
                }
                at = at.wrapping_sub(self.strides[d].wrapping_mul(self.shape[d]));
                idx[d] = 0;
            }
        }
        Ok(Cow::Owned(out))
    }
}

/// Row-major strides of a shape, in elements.
pub fn row_major(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1].saturating_mul(shape[i + 1]);
    }
    s
}

/// Read the state dict of a torch.save file, verifying every CRC-32 it uses.
pub fn read(bytes: &[u8]) -> Result<Vec<TensorView<'_>>, TorchError> {
    read_with(bytes, true)
}

/// `read` with the CRC check optional (fuzzing reaches past it only when it is off).
pub fn read_with(bytes: &[u8], verify_crc: bool) -> Result<Vec<TensorView<'_>>, TorchError> {
    let entries = match entries(bytes) {
        Ok(e) => e,
        // Protocol-2 pickle magic at byte 0 and no zip: the pre-1.6 format.
        Err(ZipError::Archive(_)) if bytes.starts_with(&[0x80, 0x02]) => {
            return Err(TorchError::Legacy)
        }
        Err(e) => return Err(e.into()),
    };
    // `{archive}/data.pkl`, where `archive` is one directory level (torch uses the file's stem).
    let mut pkls = entries.iter().filter(|e| {
        e.name
            .strip_suffix("/data.pkl")
            .is_some_and(|p| !p.is_empty() && !p.contains('/'))
    });
    let pkl = pkls.next().ok_or(TorchError::NoDataPkl)?;
    if pkls.next().is_some() {
        return Err(TorchError::NoDataPkl);
    }
    let prefix = &pkl.name[..pkl.name.len() - "data.pkl".len()];
    let by_name: BTreeMap<&str, &Entry<'_>> =
        entries.iter().map(|e| (e.name.as_str(), e)).collect();
    if let Some(order) = by_name.get(format!("{prefix}byteorder").as_str()) {
        if order.data != b"little" {
            return Err(TorchError::ByteOrder(
                String::from_utf8_lossy(order.data).into_owned(),
            ));
        }
    }
    if verify_crc {
        pkl.verify_crc()?;
    }
    let dict = pickle::state_dict(pkl.data)?;

    // Element budget: an honest file stores every element it shows at least once in ≥ 2 bytes,
    // so twice the file's length is generous (tied tensors share a storage) yet bounds memory.
    let limit = 2 * bytes.len() as u64;
    let mut total = 0u64;
    let mut storages: BTreeMap<String, pickle::Storage> = BTreeMap::new();
    let mut out = Vec::with_capacity(dict.len());
    for (name, t) in dict {
        let s = &t.storage;
        if let Some(prev) = storages.get(&s.key) {
            if prev.dtype != s.dtype || prev.numel != s.numel {
                return Err(TorchError::StorageConflict { key: s.key.clone() });
            }
        } else {
            let entry = by_name
                .get(format!("{prefix}data/{}", s.key).as_str())
                .ok_or_else(|| TorchError::MissingStorage {
                    tensor: name.clone(),
                    key: s.key.clone(),
                })?;
            let expected = s.numel.checked_mul(s.dtype.bytes_for(1) as u64);
            if expected != Some(entry.data.len() as u64) {
                return Err(TorchError::StorageSize {
                    key: s.key.clone(),
                    expected: expected.unwrap_or(u64::MAX),
                    got: entry.data.len() as u64,
                });
            }
            if verify_crc {
                entry.verify_crc()?;
            }
            storages.insert(s.key.clone(), s.clone());
        }
        let data = by_name[format!("{prefix}data/{}", s.key).as_str()].data;
        let (shape, strides) = (usizes(&t.shape, &name)?, usizes(&t.stride, &name)?);
        let offset = usizes(&[t.offset], &name)?[0];
        let view = TensorView::new(name, s.dtype, shape, strides, offset, data)?;
        total = total.saturating_add(view.numel() as u64);
        if total > limit {
            return Err(TorchError::TooManyElements { total, limit });
        }
        out.push(view);
    }
    Ok(out)
}

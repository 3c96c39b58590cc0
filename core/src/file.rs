//! std only: open checkpoints by path through a memory map, and write files atomically.

use crate::checkpoint::{self, LoadError};
use crate::dtype::DType;
use crate::model::Model;
use std::format;
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// A checkpoint file mapped into memory; `model()` borrows its f32 weights without copying.
pub struct ModelFile {
    map: memmap2::Mmap,
    path: PathBuf,
}

/// Why a checkpoint file could not be opened or loaded; both variants name the path.
#[derive(Debug)]
pub enum FileError {
    /// Opening or mapping the file failed (missing, a directory, no permission).
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The bytes are not a valid checkpoint (see [`LoadError`]).
    Load {
        /// The file.
        path: PathBuf,
        /// What is wrong with its contents.
        source: LoadError,
    },
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            FileError::Load { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for FileError {}

impl ModelFile {
    /// Map the file at `path` read-only. Nothing is validated yet: [`ModelFile::model`] does that.
    /// Errors: [`FileError::Io`] when the file cannot be opened or mapped, or is a directory.
    pub fn open(path: impl AsRef<Path>) -> Result<ModelFile, FileError> {
        let path = path.as_ref().to_path_buf();
        let io_err = |source| FileError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io_err)?;
        if file.metadata().map_err(io_err)?.is_dir() {
            return Err(io_err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "is a directory",
            )));
        }
        // SAFETY: the map is read-only; as with every mmap-based loader, the file must not be
        // truncated by another process while it is mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err)?;
        Ok(ModelFile { map, path })
    }

    /// The mapped bytes of the whole file.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Validate and borrow the model.
    pub fn model(&self) -> Result<Model<'_>, FileError> {
        checkpoint::load(&self.map).map_err(|source| FileError::Load {
            path: self.path.clone(),
            source,
        })
    }
}

/// Write a file atomically: a temporary file beside the target, fsync, rename, fsync the
/// directory. A crash at any point leaves either the old file or the new one, never a mix.
pub fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    write_atomic_path(path, |tmp| {
        let mut w = io::BufWriter::with_capacity(1 << 20, File::create(tmp)?);
        fill(&mut w)?;
        w.flush()
    })
}

/// [`write_atomic`] for writers that take a path: `fill` writes the temporary file, which is
/// then fsynced and renamed over `path`.
pub fn write_atomic_path(
    path: &Path,
    fill: impl FnOnce(&Path) -> io::Result<()>,
) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        fill(&tmp)?;
        File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Save a model as a checkpoint, atomically, streamed through the safetensors crate. f32
/// weights are stored as `dtype`: F32, F16 or BF16.
pub fn save(
    path: &Path,
    model: &Model<'_>,
    dtype: DType,
    extra_metadata: &[(&str, &str)],
) -> io::Result<()> {
    if !checkpoint::container::is_float(dtype) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("weights are stored as f32, f16 or bf16, not {dtype}"),
        ));
    }
    let (tensors, meta) = checkpoint::to_write(model, dtype, extra_metadata);
    write_atomic_path(path, |tmp| {
        safetensors::serialize_to_file(tensors, Some(meta.into_iter().collect()), tmp)
            .map_err(io::Error::other)?;
        // Canonical key order in the header (see `canonical_header`), rewritten in place.
        let mut f = fs::OpenOptions::new().read(true).write(true).open(tmp)?;
        let mut len8 = [0u8; 8];
        f.read_exact(&mut len8)?;
        let mut head = len8.to_vec();
        head.resize(8 + u64::from_le_bytes(len8) as usize, 0);
        f.read_exact(&mut head[8..])?;
        checkpoint::container::canonical_header(&mut head);
        f.seek(io::SeekFrom::Start(0))?;
        f.write_all(&head)
    })
}

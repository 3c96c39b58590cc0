//! std only: open checkpoints by path through a memory map, and write files atomically.

use crate::checkpoint::{self, Dtype, LoadError};
use crate::model::Model;
use std::format;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A checkpoint file mapped into memory; `model()` borrows its f32 weights without copying.
pub struct ModelFile {
    map: memmap2::Mmap,
    path: PathBuf,
}

#[derive(Debug)]
pub enum FileError {
    Io { path: PathBuf, source: io::Error },
    Load { path: PathBuf, source: LoadError },
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

    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

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
        let f = File::create(&tmp)?;
        let mut w = io::BufWriter::with_capacity(1 << 20, f);
        fill(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
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

/// Save a model as a checkpoint, atomically.
pub fn save(
    path: &Path,
    model: &Model<'_>,
    dtype: Dtype,
    extra_metadata: &[(&str, &str)],
) -> io::Result<()> {
    write_atomic(path, |w| {
        checkpoint::write(model, dtype, extra_metadata, |b| w.write_all(b))
    })
}

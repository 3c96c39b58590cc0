//! Helpers shared by the subcommands: loading models and tokenizers, reading token input.

use std::path::{Path, PathBuf};
use tokenformer_core::checkpoint;
use tokenformer_core::file::{self, ModelFile};
use tokenformer_core::{DType, Model};
use tokenizers::Tokenizer;

pub fn open_model(path: &Path) -> Result<ModelFile, String> {
    ModelFile::open(path).map_err(|e| e.to_string())
}

/// Save a checkpoint atomically; errors name the file.
pub fn save(
    path: &Path,
    model: &Model<'_>,
    dtype: DType,
    meta: &[(&str, &str)],
) -> Result<(), String> {
    file::save(path, model, dtype, meta).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn load_tokenizer(path: &Path) -> Result<Tokenizer, String> {
    Tokenizer::from_file(path)
        .map_err(|e| format!("{}: cannot load tokenizer: {e}", path.display()))
}

/// Parse "1,2, 3" into ids.
pub fn parse_ids(s: &str) -> Result<Vec<u32>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<u32>()
                .map_err(|_| format!("invalid token id `{t}` (expected comma-separated integers)"))
        })
        .collect()
}

pub fn encode(tok: &Tokenizer, text: &str) -> Result<Vec<u32>, String> {
    let enc = tok
        .encode(text, false)
        .map_err(|e| format!("tokenization failed: {e}"))?;
    Ok(enc.get_ids().to_vec())
}

pub fn decode(tok: &Tokenizer, ids: &[u32]) -> Result<String, String> {
    tok.decode(ids, false)
        .map_err(|e| format!("decoding failed: {e}"))
}

/// Check every id against the model's embedding rows, with a clear message.
pub fn check_ids(ids: &[u32], vocab_size: usize) -> Result<(), String> {
    if let Some(&t) = ids.iter().find(|&&t| t as usize >= vocab_size) {
        return Err(format!(
            "token id {t} is out of range for the model's vocabulary of {vocab_size}"
        ));
    }
    Ok(())
}

/// The bundled Shakespeare model (models/MODEL.md) quantized to Q8_0, and its tokenizer: inside
/// the binary, so `generate` works from any directory once installed. The wrapper aligns the
/// bytes to 16 so the checkpoint loader borrows the blocks instead of copying them.
#[repr(C, align(16))]
struct Aligned<T: ?Sized>(T);
static BUNDLED_MODEL: &Aligned<[u8]> =
    &Aligned(*include_bytes!("../assets/shakespeare-q8_0.safetensors"));
static BUNDLED_TOKENIZER: &[u8] = include_bytes!("../assets/tokenizer.json");
pub const BUNDLED_NAME: &str = "the bundled Shakespeare model (Q8_0, inside the binary)";

/// Where the weights come from: a memory-mapped `--model` file, or the bundled bytes.
pub enum ModelSource {
    File(ModelFile),
    Bundled,
}

impl ModelSource {
    /// `--model` if given (a missing file is named as such), else the bundled model.
    pub fn open(p: &Option<PathBuf>) -> Result<ModelSource, String> {
        match p {
            Some(p) if !p.exists() => Err(format!("{}: no such model file", p.display())),
            Some(p) => open_model(p).map(ModelSource::File),
            None => Ok(ModelSource::Bundled),
        }
    }

    pub fn name(&self) -> String {
        match self {
            ModelSource::File(f) => f.path().display().to_string(),
            ModelSource::Bundled => BUNDLED_NAME.into(),
        }
    }

    /// Validate and borrow the model; errors name the source.
    pub fn model(&self) -> Result<Model<'_>, String> {
        match self {
            ModelSource::File(f) => f.model().map_err(|e| e.to_string()),
            ModelSource::Bundled => {
                checkpoint::load(&BUNDLED_MODEL.0).map_err(|e| format!("{}: {e}", self.name()))
            }
        }
    }

    /// `--tokenizer`, else `tokenizer.json` beside the model file (the Hugging Face layout), else
    /// the bundled model's own.
    pub fn tokenizer(&self, given: &Option<PathBuf>) -> Result<Tokenizer, String> {
        match (given, self) {
            (Some(p), _) => load_tokenizer(p),
            (None, ModelSource::File(f)) => {
                let beside = f.path().with_file_name("tokenizer.json");
                if !beside.exists() {
                    return Err(format!(
                        "text input needs --tokenizer tokenizer.json (none beside {})",
                        f.path().display()
                    ));
                }
                load_tokenizer(&beside)
            }
            (None, ModelSource::Bundled) => Tokenizer::from_bytes(BUNDLED_TOKENIZER)
                .map_err(|e| format!("the bundled tokenizer: {e}")),
        }
    }
}

/// Resident memory split into anonymous (heap: copies, caches) and file-backed (mapped weights)
/// pages, from /proc/self/status on Linux, plus how many weight bytes the model borrows from the
/// map instead of copying.
pub fn memory_report(model: &Model<'_>) -> String {
    let borrowed = model.borrowed_bytes() as f64 / (1 << 20) as f64;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    match (field("RssAnon:"), field("RssFile:")) {
        (Some(anon), Some(file)) => format!(
            "resident: {anon:.1} MiB anonymous + {file:.1} MiB file-backed; {borrowed:.1} MiB of weights mapped, not copied"
        ),
        _ => format!("{borrowed:.1} MiB of weights mapped, not copied"),
    }
}

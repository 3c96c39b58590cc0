//! Helpers shared by the subcommands: loading models and tokenizers, reading token input.

use std::path::{Path, PathBuf};
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

/// `p` if given, else `fallback` if it exists, else the error `missing`.
fn given_or(p: &Option<PathBuf>, fallback: PathBuf, missing: String) -> Result<PathBuf, String> {
    match p {
        Some(p) => Ok(p.clone()),
        None if fallback.exists() => Ok(fallback),
        None => Err(missing),
    }
}

/// --model, or the model trained by this project (models/MODEL.md).
pub fn model_path(p: &Option<PathBuf>) -> Result<PathBuf, String> {
    let b = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/shakespeare.safetensors");
    let missing = format!(
        "no --model given and the bundled model is missing ({})",
        b.display()
    );
    given_or(p, b, missing)
}

/// --tokenizer, or `tokenizer.json` beside the model (the Hugging Face layout).
pub fn tokenizer_path(p: &Option<PathBuf>, model: &Path) -> Result<PathBuf, String> {
    let beside = model.with_file_name("tokenizer.json");
    let missing = format!(
        "text input needs --tokenizer tokenizer.json (none beside {})",
        model.display()
    );
    given_or(p, beside, missing)
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

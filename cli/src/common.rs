//! Helpers shared by the subcommands: loading models and tokenizers, reading token input.

use std::path::{Path, PathBuf};
use tokenformer_core::file::ModelFile;
use tokenizers::Tokenizer;

pub fn open_model(path: &Path) -> Result<ModelFile, String> {
    ModelFile::open(path).map_err(|e| e.to_string())
}

pub fn load_tokenizer(path: &Path) -> Result<Tokenizer, String> {
    Tokenizer::from_file(path).map_err(|e| format!("{}: cannot load tokenizer: {e}", path.display()))
}

/// Parse "1,2, 3" into ids.
pub fn parse_ids(s: &str) -> Result<Vec<u32>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.parse::<u32>().map_err(|_| format!("invalid token id `{t}` (expected comma-separated integers)")))
        .collect()
}

pub fn encode(tok: &Tokenizer, text: &str) -> Result<Vec<u32>, String> {
    let enc = tok.encode(text, false).map_err(|e| format!("tokenization failed: {e}"))?;
    Ok(enc.get_ids().to_vec())
}

pub fn decode(tok: &Tokenizer, ids: &[u32]) -> Result<String, String> {
    tok.decode(ids, false).map_err(|e| format!("decoding failed: {e}"))
}

/// Check every id against the model's embedding rows, with a clear message.
pub fn check_ids(ids: &[u32], vocab_size: usize) -> Result<(), String> {
    if let Some(&t) = ids.iter().find(|&&t| t as usize >= vocab_size) {
        return Err(format!("token id {t} is out of range for the model's vocabulary of {vocab_size}"));
    }
    Ok(())
}

pub fn default_tokenizer_hint(p: &Option<PathBuf>) -> Result<&Path, String> {
    p.as_deref().ok_or_else(|| "--text and --file need --tokenizer tokenizer.json".to_string())
}

//! `tokenizer-train`: a byte-level BPE learned from text files ([`train_bpe`]); its
//! `<|endoftext|>` (id 0) is what `train` puts between documents.

use std::path::PathBuf;
use tokenformer_core::file::write_atomic;
use tokenformer_train::data::{split_point, train_bpe, EOS};
/// 256 byte symbols + `<|endoftext|>`.
const MIN_VOCAB: usize = 257;
/// Ids must fit the token files and the embedding comfortably.
const MAX_VOCAB: usize = 1 << 20;

#[derive(clap::Args)]
pub struct Args {
    /// Text files (UTF-8) to learn merges from.
    #[arg(long, num_args = 1.., required = true)]
    files: Vec<PathBuf>,
    /// Vocabulary size including the 256 bytes and `<|endoftext|>`.
    #[arg(long)]
    vocab_size: usize,
    /// Where to write tokenizer.json.
    #[arg(long)]
    out: PathBuf,
    /// A pair must occur at least this often to be merged.
    #[arg(long, default_value_t = 2)]
    min_frequency: u64,
    /// Learn only from the training part of each file: the tail that `train --heldout-frac`
    /// holds out is left out here too, so the tokenizer never sees held-out text.
    #[arg(long, default_value_t = 0.0)]
    heldout_frac: f64,
}

pub fn run(a: Args) -> Result<(), String> {
    if !(MIN_VOCAB..=MAX_VOCAB).contains(&a.vocab_size) {
        return Err(format!(
            "--vocab-size {} must be in {MIN_VOCAB}..={MAX_VOCAB} (256 bytes + {EOS} at least)",
            a.vocab_size
        ));
    }
    if !(0.0..1.0).contains(&a.heldout_frac) {
        return Err(format!(
            "--heldout-frac must be in [0, 1), got {}",
            a.heldout_frac
        ));
    }
    let mut texts = Vec::with_capacity(a.files.len());
    for f in &a.files {
        let bytes = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let text = String::from_utf8(bytes)
            .map_err(|e| format!("{}: not UTF-8 text: {e}", f.display()))?;
        let cut = split_point(&text, a.heldout_frac);
        texts.push(text[..cut].to_string());
    }
    let tok = train_bpe(&texts, a.vocab_size, a.min_frequency).map_err(|e| e.to_string())?;
    let json = tok
        .to_string(true)
        .map_err(|e| format!("cannot serialize the tokenizer: {e}"))?;
    write_atomic(&a.out, |w| w.write_all(json.as_bytes()))
        .map_err(|e| format!("{}: {e}", a.out.display()))?;
    let bytes: usize = texts.iter().map(String::len).sum();
    println!(
        "byte-level BPE: {} tokens ({} merges) from {bytes} bytes in {} files, {EOS} = {}; wrote {}",
        tok.get_vocab_size(true),
        tok.get_vocab_size(true).saturating_sub(MIN_VOCAB),
        texts.len(),
        tok.token_to_id(EOS).unwrap_or(u32::MAX),
        a.out.display()
    );
    Ok(())
}

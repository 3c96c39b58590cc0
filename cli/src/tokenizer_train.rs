//! `tokenizer-train`: a byte-level BPE (GPT-2 / GPT-NeoX style) learned from text files.
//!
//! The 256 byte symbols are always in the vocabulary, so any text encodes and decodes losslessly;
//! `<|endoftext|>` is id 0, as in the GPT-NeoX tokenizer, and is what `train` puts between
//! documents.

use std::path::PathBuf;
use tokenformer_core::file::write_atomic;
use tokenizers::models::bpe::{BpeTrainer, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

pub const EOS: &str = "<|endoftext|>";
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
        let cut = tokenformer_train::data::split_point(&text, a.heldout_frac);
        texts.push(text[..cut].to_string());
    }
    let tok = train_bpe(&texts, a.vocab_size, a.min_frequency)?;
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

/// Learn merges over the lines of `texts` (lines keep their '\n', as in `train_from_files`).
pub fn train_bpe(
    texts: &[String],
    vocab_size: usize,
    min_frequency: u64,
) -> Result<Tokenizer, String> {
    let mut trainer: TrainerWrapper = BpeTrainer::builder()
        .vocab_size(vocab_size)
        .min_frequency(min_frequency)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .special_tokens(vec![AddedToken::from(EOS, true)])
        .build()
        .into();
    let mut tok = Tokenizer::new(BPE::default());
    tok.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
    tok.with_post_processor(Some(ByteLevel::default().add_prefix_space(false)));
    tok.with_decoder(Some(ByteLevel::default()));
    let lines = texts.iter().flat_map(|t| t.split_inclusive('\n'));
    tok.train(&mut trainer, lines)
        .map_err(|e| format!("BPE training failed: {e}"))?;
    if tok.token_to_id(EOS) != Some(0) {
        return Err(format!("{EOS} did not get id 0"));
    }
    Ok(tok)
}

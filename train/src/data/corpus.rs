//! Building the corpus: text files split into train and held-out parts at line starts,
//! tokenized once into the two token files, and reused while the inputs are unchanged.

use super::token_file::{write_token_file, Split, TokenFile, VERSION};
use super::{io_err, DataError, EOS, HELDOUT_FILE, HELDOUT_TEXT, TRAIN_FILE};
use std::path::{Path, PathBuf};
use tokenformer_core::file::write_atomic;
use tokenizers::models::bpe::{BpeTrainer, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

/// The tokenized corpus: both splits and the text bytes behind them (bits per byte =
/// summed cross-entropy in nats / ln 2 / bytes).
#[derive(Clone, Debug)]
pub struct Corpus {
    /// The training split.
    pub train: TokenFile,
    /// The held-out split.
    pub heldout: TokenFile,
    /// UTF-8 bytes of the training text.
    pub train_bytes: u64,
    /// UTF-8 bytes of the held-out text.
    pub heldout_bytes: u64,
    /// True when [`tokenize_files`] reused existing files instead of tokenizing.
    pub cached: bool,
}

impl Corpus {
    /// Open `dir/train.tokens` and `dir/heldout.tokens`, checking they belong together.
    pub fn open(dir: impl AsRef<Path>) -> Result<Corpus, DataError> {
        let dir = dir.as_ref();
        let train = TokenFile::open(dir.join(TRAIN_FILE))?;
        let heldout = TokenFile::open(dir.join(HELDOUT_FILE))?;
        if train.split != Split::Train
            || heldout.split != Split::Heldout
            || train.hash != heldout.hash
            || train.vocab != heldout.vocab
        {
            return Err(DataError::Mismatch {
                dir: dir.to_path_buf(),
            });
        }
        Ok(Corpus {
            train_bytes: train.text_bytes,
            heldout_bytes: heldout.text_bytes,
            train,
            heldout,
            cached: false,
        })
    }
}

/// 64-bit FNV-1a: a stable cache key (not a defence against crafted collisions).
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 = (self.0 ^ x as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    /// Length-prefixed, so that ("ab", "c") and ("a", "bc") differ.
    fn field(&mut self, b: &[u8]) {
        self.bytes(&(b.len() as u64).to_le_bytes());
        self.bytes(b);
    }
}

/// Byte offset where the held-out part of `text` begins: the first line start at or after
/// `ceil(len · (1 − heldout_frac))`. `text[..cut]` trains, `text[cut..]` is held out.
pub fn split_point(text: &str, heldout_frac: f64) -> usize {
    let len = text.len();
    let target = ((len as f64) * (1.0 - heldout_frac)).ceil() as usize;
    if target == 0 {
        return 0;
    }
    if target >= len {
        return len;
    }
    // A line starts after a '\n'; a line start at `target` itself means text[target-1] is '\n'.
    match text.as_bytes()[target - 1..]
        .iter()
        .position(|&b| b == b'\n')
    {
        Some(p) => target + p,
        None => len,
    }
}

/// A byte-level BPE (GPT-2 / GPT-NeoX style) learned from the lines of `texts` (lines keep their
/// '\n', as in `train_from_files`). The 256 byte symbols are always in the vocabulary, so any
/// text encodes and decodes losslessly; `<|endoftext|>` is id 0, as in the GPT-NeoX tokenizer.
pub fn train_bpe<S: AsRef<str> + Sync>(
    texts: &[S],
    vocab_size: usize,
    min_frequency: u64,
) -> Result<Tokenizer, DataError> {
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
    let lines = texts.iter().flat_map(|t| t.as_ref().split_inclusive('\n'));
    tok.train(&mut trainer, lines)
        .map_err(|e| DataError::Tokenizer(format!("BPE training failed: {e}")))?;
    if tok.token_to_id(EOS) != Some(0) {
        return Err(DataError::Tokenizer(format!("{EOS} did not get id 0")));
    }
    Ok(tok)
}

/// Tokenize `files` once into `out_dir/{train,heldout}.tokens` (and the held-out text into
/// `out_dir/heldout.txt`), or reuse them when they were made from the same inputs.
///
/// Split: each file is split on its own. Its last `heldout_frac` of bytes, moved forward to the
/// next line start ([`split_point`]), is held out; the rest trains. So every file contributes to
/// both splits, and no held-out text is ever seen in training.
///
/// Joining: each non-empty part is tokenized separately and followed by the `<|endoftext|>` id
/// when the tokenizer has that token (nothing otherwise), so windows that cross a file boundary
/// see a document end. Files are taken in the order given. Byte counts are the UTF-8 bytes of
/// the parts, without separators.
///
/// Cache: a 64-bit hash of the format version, `heldout_frac`, every file's content (in order,
/// not its path) and the tokenizer's JSON is stored in both headers; when both files exist,
/// are valid and carry that hash, they are reused (`Corpus::cached`). Files are written
/// atomically, so an interrupted run leaves either the old or the new file.
///
/// The whole token stream is held in memory once while writing (4 bytes per token).
pub fn tokenize_files(
    files: &[PathBuf],
    tokenizer: &Tokenizer,
    heldout_frac: f64,
    out_dir: &Path,
) -> Result<Corpus, DataError> {
    if files.is_empty() {
        return Err(DataError::NoFiles);
    }
    if !(0.0..=1.0).contains(&heldout_frac) {
        return Err(DataError::BadFraction(heldout_frac));
    }
    let mut texts = Vec::with_capacity(files.len());
    for p in files {
        let bytes = std::fs::read(p).map_err(io_err(p))?;
        let text = String::from_utf8(bytes).map_err(|_| DataError::NotUtf8 { path: p.clone() })?;
        texts.push(text);
    }
    let tok_json = tokenizer
        .to_string(false)
        .map_err(|e| DataError::Tokenizer(e.to_string()))?;
    let mut h = Fnv::new();
    h.field(b"tokenformer data");
    h.field(&VERSION.to_le_bytes());
    h.field(&heldout_frac.to_bits().to_le_bytes());
    h.field(tok_json.as_bytes());
    for t in &texts {
        h.field(t.as_bytes());
    }
    let hash = h.0;

    if let Ok(c) = Corpus::open(out_dir) {
        if c.train.hash == hash {
            return Ok(Corpus { cached: true, ..c });
        }
    }

    // Truncation or padding settings in a tokenizer.json would silently cut or pad documents.
    let mut tok = tokenizer.clone();
    tok.with_truncation(None)
        .map_err(|e| DataError::Tokenizer(e.to_string()))?;
    tok.with_padding(None);
    let vocab = tok.get_vocab_size(true) as u32;
    let eos = tok.token_to_id(EOS);

    let cuts: Vec<usize> = texts.iter().map(|t| split_point(t, heldout_frac)).collect();
    let parts: Vec<&str> = texts
        .iter()
        .zip(&cuts)
        .flat_map(|(t, &c)| [&t[..c], &t[c..]])
        .collect();
    let enc = tok
        .encode_batch(parts.clone(), false)
        .map_err(|e| DataError::Tokenizer(e.to_string()))?;

    let mut streams = [Vec::new(), Vec::new()];
    let mut bytes = [0u64; 2];
    for (i, (e, part)) in enc.iter().zip(&parts).enumerate() {
        if part.is_empty() {
            continue;
        }
        let s = i % 2; // parts alternate train, held-out
        streams[s].extend_from_slice(e.get_ids());
        streams[s].extend(eos);
        bytes[s] += part.len() as u64;
    }
    if let Some(t) = streams.iter().flatten().find(|&&t| t >= vocab) {
        return Err(DataError::Tokenizer(format!(
            "token id {t} outside the tokenizer's vocabulary of {vocab}"
        )));
    }

    std::fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;
    let held_text = out_dir.join(HELDOUT_TEXT);
    write_atomic(&held_text, |w| {
        parts
            .iter()
            .skip(1)
            .step_by(2)
            .try_for_each(|p| w.write_all(p.as_bytes()))
    })
    .map_err(io_err(&held_text))?;
    let [train, held] = &streams;
    write_token_file(
        &out_dir.join(HELDOUT_FILE),
        Split::Heldout,
        vocab,
        bytes[1],
        hash,
        held,
    )?;
    write_token_file(
        &out_dir.join(TRAIN_FILE),
        Split::Train,
        vocab,
        bytes[0],
        hash,
        train,
    )?;
    Corpus::open(out_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tokenizer-train recipe, every pair merged however rare.
    fn tokenizer(texts: &[&str], vocab: usize) -> Tokenizer {
        train_bpe(texts, vocab, 0).unwrap()
    }

    /// `n` lines of varied text, each line distinct so the split can be checked by content.
    fn text(tag: &str, n: usize) -> String {
        (0..n)
            .map(|i| {
                format!(
                    "{tag} line {i}: the quick brown fox {} jumps.\n",
                    i * 7919 % 1000
                )
            })
            .collect()
    }

    fn corpus_files(dir: &Path) -> (Vec<PathBuf>, Vec<String>) {
        let texts = vec![text("alpha", 200), text("beta", 120), text("gamma", 3)];
        let files = texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let p = dir.join(format!("f{i}.txt"));
                std::fs::write(&p, t).unwrap();
                p
            })
            .collect();
        (files, texts)
    }

    #[test]
    fn split_point_cuts_at_line_starts() {
        let t = "aaaa\nbbbb\ncccc\nd"; // 16 bytes, lines start at 0, 5, 10, 15
        assert_eq!(split_point(t, 0.0), 16);
        assert_eq!(split_point(t, 1.0), 0);
        // target 16·0.5 = 8 is inside "bbbb": move on to the start of "cccc".
        assert_eq!(split_point(t, 0.5), 10);
        // target 16·0.625 = 10 is exactly a line start; 16·0.9375 = 15 too.
        assert_eq!(split_point(t, 0.375), 10);
        assert_eq!(split_point(t, 0.0625), 15);
        // target 16·0.96875 = 15.5 → 16: nothing held out.
        assert_eq!(split_point(t, 0.03125), 16);
        assert_eq!(split_point("no newline at all", 0.1), 17);
        for f in [0.0, 0.05, 0.1, 0.37, 0.9, 1.0] {
            let c = split_point(t, f);
            assert!(c == 0 || c == t.len() || t.as_bytes()[c - 1] == b'\n');
            assert!(c as f64 >= t.len() as f64 * (1.0 - f) - 1e-9);
        }
    }

    #[test]
    fn split_is_deterministic_and_disjoint() {
        let d = tempfile::tempdir().unwrap();
        let (files, texts) = corpus_files(d.path());
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let tok = tokenizer(&refs, 400);
        let eos = tok.token_to_id(EOS).unwrap();
        assert_eq!(eos, 0);

        let a = tokenize_files(&files, &tok, 0.1, &d.path().join("a")).unwrap();
        let b = tokenize_files(&files, &tok, 0.1, &d.path().join("b")).unwrap();
        assert!(!a.cached && !b.cached);
        assert_eq!(a.train.to_vec(), b.train.to_vec());
        assert_eq!(a.heldout.to_vec(), b.heldout.to_vec());
        assert_eq!(
            a.train.width(),
            2,
            "a 400-token vocabulary is stored as u16"
        );

        // Independent reconstruction: split each text by the documented rule.
        let (mut train_text, mut held_text) = (Vec::new(), Vec::new());
        for t in &texts {
            let c = split_point(t, 0.1);
            train_text.push(&t[..c]);
            held_text.push(&t[c..]);
        }
        let bytes = |v: &[&str]| v.iter().map(|s| s.len() as u64).sum::<u64>();
        assert_eq!(a.train_bytes, bytes(&train_text));
        assert_eq!(a.heldout_bytes, bytes(&held_text));
        assert_eq!(a.train_bytes + a.heldout_bytes, bytes(&refs));
        let held_lines: std::collections::HashSet<&str> =
            held_text.iter().flat_map(|s| s.lines()).collect();
        let train_lines: std::collections::HashSet<&str> =
            train_text.iter().flat_map(|s| s.lines()).collect();
        assert!(!held_lines.is_empty());
        assert!(held_lines.is_disjoint(&train_lines));
        // "gamma" has 3 lines: its last tenth starts within the last line, so nothing of it is
        // held out, and its empty part gets no EOS.
        assert!(held_text[2].is_empty() && !held_text[1].is_empty());

        // Token streams: each non-empty part, then EOS; decoding gives back the text.
        let mut want = Vec::new();
        for p in &train_text {
            want.extend(tok.encode(*p, false).unwrap().get_ids());
            want.push(eos);
        }
        assert_eq!(a.train.to_vec(), want);
        let held = a.heldout.to_vec();
        assert_eq!(held.iter().filter(|&&t| t == eos).count(), 2);
        let pieces: Vec<String> = held
            .split(|&t| t == eos)
            .filter(|p| !p.is_empty())
            .map(|p| tok.decode(p, false).unwrap())
            .collect();
        assert_eq!(pieces, held_text[..2]);
        let txt = std::fs::read_to_string(d.path().join("a").join(HELDOUT_TEXT)).unwrap();
        assert_eq!(txt, held_text.concat());

        // A different fraction gives a different split.
        let c = tokenize_files(&files, &tok, 0.2, &d.path().join("c")).unwrap();
        assert!(c.heldout.len() > a.heldout.len());
        assert!(matches!(
            tokenize_files(&files, &tok, 1.5, d.path()),
            Err(DataError::BadFraction(_))
        ));
        assert!(matches!(
            tokenize_files(&[], &tok, 0.1, d.path()),
            Err(DataError::NoFiles)
        ));
    }

    #[test]
    fn cache_is_reused_only_for_the_same_inputs() {
        let d = tempfile::tempdir().unwrap();
        let (files, texts) = corpus_files(d.path());
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let tok = tokenizer(&refs, 400);
        let out = d.path().join("tok");
        let first = tokenize_files(&files, &tok, 0.1, &out).unwrap();
        assert!(!first.cached);
        let mtime = |n| std::fs::metadata(out.join(n)).unwrap().modified().unwrap();
        let before = mtime(TRAIN_FILE);

        let again = tokenize_files(&files, &tok, 0.1, &out).unwrap();
        assert!(again.cached);
        assert_eq!(again.train.to_vec(), first.train.to_vec());
        assert_eq!(mtime(TRAIN_FILE), before);
        // The same tokenizer reloaded from its JSON is the same cache key.
        let reloaded: Tokenizer = tok.to_string(false).unwrap().parse().unwrap();
        assert!(tokenize_files(&files, &reloaded, 0.1, &out).unwrap().cached);

        // Changed content, fraction or tokenizer: re-tokenized.
        std::fs::write(&files[1], text("delta", 50)).unwrap();
        let changed = tokenize_files(&files, &tok, 0.1, &out).unwrap();
        assert!(!changed.cached);
        assert_ne!(changed.train.input_hash(), first.train.input_hash());
        assert!(!tokenize_files(&files, &tok, 0.3, &out).unwrap().cached);
        let other = tokenizer(&refs, 300);
        assert!(!tokenize_files(&files, &other, 0.3, &out).unwrap().cached);

        // A corrupt cached file is replaced, not trusted.
        std::fs::write(out.join(HELDOUT_FILE), b"junk").unwrap();
        let healed = tokenize_files(&files, &other, 0.3, &out).unwrap();
        assert!(!healed.cached);
        assert!(Corpus::open(&out).is_ok());
    }
}

//! Training data: text files tokenized once into memory-mapped token files, a deterministic
//! train / held-out split, and seeded random windows that resume bit-identically.
//!
//! Token file format (`*.tokens`), all integers little-endian, defined here once:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `TFTOKEN\0` |
//! | 8 | 4 | version (1) |
//! | 12 | 4 | bytes per token: 2 (u16, vocab ≤ 65536) or 4 (u32) |
//! | 16 | 4 | split: 0 train, 1 held-out |
//! | 20 | 4 | vocabulary size (every token is below it) |
//! | 24 | 8 | token count |
//! | 32 | 8 | UTF-8 bytes of the text these tokens encode (for bits per byte) |
//! | 40 | 8 | FNV-1a hash of the inputs, split fraction and tokenizer (the cache key) |
//! | 48 | 16 | reserved, zero |
//! | 64 | count × width | tokens |

use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokenformer_core::file::write_atomic;
use tokenformer_core::Rng;
use tokenizers::Tokenizer;

pub const MAGIC: [u8; 8] = *b"TFTOKEN\0";
pub const VERSION: u32 = 1;
pub const HEADER_BYTES: usize = 64;
pub const TRAIN_FILE: &str = "train.tokens";
pub const HELDOUT_FILE: &str = "heldout.tokens";
/// The held-out text itself, so `score --file` can measure bits per byte on exactly that text.
pub const HELDOUT_TEXT: &str = "heldout.txt";
pub const EOS: &str = "<|endoftext|>";

#[derive(Debug)]
pub enum DataError {
    Io {
        path: PathBuf,
        source: io::Error,
    },
    NoFiles,
    BadFraction(f64),
    NotUtf8 {
        path: PathBuf,
    },
    Tokenizer(String),
    BadMagic {
        path: PathBuf,
    },
    BadVersion {
        path: PathBuf,
        version: u32,
    },
    BadDtype {
        path: PathBuf,
        width: u32,
    },
    BadSplit {
        path: PathBuf,
        split: u32,
    },
    Truncated {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    TrailingBytes {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    TokenOutOfRange {
        path: PathBuf,
        index: u64,
        id: u32,
        vocab: u32,
    },
    /// train.tokens and heldout.tokens come from different inputs.
    Mismatch {
        dir: PathBuf,
    },
    /// Too few tokens for one window of `need`.
    TooShort {
        tokens: usize,
        need: usize,
    },
    /// A saved [`WindowsState`] does not belong to this token file.
    StateMismatch(String),
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DataError::*;
        match self {
            Io { path, source } => write!(f, "{}: {source}", path.display()),
            NoFiles => write!(f, "no training files given"),
            BadFraction(x) => write!(f, "held-out fraction {x} is not in [0, 1]"),
            NotUtf8 { path } => write!(f, "{}: not UTF-8 text", path.display()),
            Tokenizer(e) => write!(f, "tokenizer: {e}"),
            BadMagic { path } => write!(f, "{}: not a token file (bad magic)", path.display()),
            BadVersion { path, version } => write!(
                f,
                "{}: token file version {version}, this build reads {VERSION}",
                path.display()
            ),
            BadDtype { path, width } => write!(
                f,
                "{}: {width} bytes per token (expected 2 or 4)",
                path.display()
            ),
            BadSplit { path, split } => write!(f, "{}: unknown split {split}", path.display()),
            Truncated {
                path,
                expected,
                actual,
            } => write!(
                f,
                "{}: truncated: {actual} bytes, header says {expected}",
                path.display()
            ),
            TrailingBytes {
                path,
                expected,
                actual,
            } => write!(
                f,
                "{}: {actual} bytes, header says {expected}",
                path.display()
            ),
            TokenOutOfRange {
                path,
                index,
                id,
                vocab,
            } => write!(
                f,
                "{}: token {index} is {id}, outside the vocabulary of {vocab}",
                path.display()
            ),
            Mismatch { dir } => write!(
                f,
                "{}: {TRAIN_FILE} and {HELDOUT_FILE} come from different inputs",
                dir.display()
            ),
            TooShort { tokens, need } => write!(
                f,
                "{tokens} tokens are too few for a window of {need} (sequence length + 1)"
            ),
            StateMismatch(m) => write!(f, "data state does not match the corpus: {m}"),
        }
    }
}

impl std::error::Error for DataError {}

fn io_err(path: &Path) -> impl Fn(io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train = 0,
    Heldout = 1,
}

/// A validated, memory-mapped token file. Cloning shares the map.
#[derive(Clone)]
pub struct TokenFile {
    map: Arc<memmap2::Mmap>,
    path: PathBuf,
    width: usize,
    len: usize,
    split: Split,
    vocab: u32,
    text_bytes: u64,
    hash: u64,
}

impl fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenFile")
            .field("path", &self.path)
            .field("len", &self.len)
            .field("width", &self.width)
            .field("split", &self.split)
            .field("vocab", &self.vocab)
            .finish()
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

impl TokenFile {
    /// Map and validate a token file: header fields, exact size, every token below the vocabulary.
    pub fn open(path: impl AsRef<Path>) -> Result<TokenFile, DataError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(io_err(&path))?;
        let meta = file.metadata().map_err(io_err(&path))?;
        if meta.is_dir() {
            let e = io::Error::new(io::ErrorKind::InvalidInput, "is a directory");
            return Err(io_err(&path)(e));
        }
        let actual = meta.len();
        if actual < HEADER_BYTES as u64 {
            return Err(DataError::Truncated {
                path,
                expected: HEADER_BYTES as u64,
                actual,
            });
        }
        // SAFETY: read-only map; the file must not be truncated by another process while mapped
        // (the same contract as every mmap loader). We write token files only by atomic rename.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err(&path))?;
        let h = &map[..HEADER_BYTES];
        if h[..8] != MAGIC {
            return Err(DataError::BadMagic { path });
        }
        let version = u32_at(h, 8);
        if version != VERSION {
            return Err(DataError::BadVersion { path, version });
        }
        let width = u32_at(h, 12);
        if width != 2 && width != 4 {
            return Err(DataError::BadDtype { path, width });
        }
        let split = match u32_at(h, 16) {
            0 => Split::Train,
            1 => Split::Heldout,
            split => return Err(DataError::BadSplit { path, split }),
        };
        let vocab = u32_at(h, 20);
        let count = u64_at(h, 24);
        let expected = count
            .checked_mul(width as u64)
            .and_then(|n| n.checked_add(HEADER_BYTES as u64))
            .unwrap_or(u64::MAX);
        if actual < expected {
            return Err(DataError::Truncated {
                path,
                expected,
                actual,
            });
        }
        if actual > expected {
            return Err(DataError::TrailingBytes {
                path,
                expected,
                actual,
            });
        }
        let tf = TokenFile {
            path,
            width: width as usize,
            len: count as usize, // fits: the file of that many tokens is mapped
            split,
            vocab,
            text_bytes: u64_at(h, 32),
            hash: u64_at(h, 40),
            map: Arc::new(map),
        };
        // One pass over the tokens (a few ms per million) so that every later lookup by id,
        // e.g. an embedding row, is in range without further checks.
        let bad = tf.iter().enumerate().find(|&(_, t)| t >= vocab);
        if let Some((index, id)) = bad {
            return Err(DataError::TokenOutOfRange {
                path: tf.path,
                index: index as u64,
                id,
                vocab,
            });
        }
        Ok(tf)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn body(&self) -> &[u8] {
        &self.map[HEADER_BYTES..]
    }

    /// Token `i`, or None past the end.
    pub fn get(&self, i: usize) -> Option<u32> {
        let b = self.body().get(i * self.width..(i + 1) * self.width)?;
        Some(match self.width {
            2 => u16::from_le_bytes([b[0], b[1]]) as u32,
            _ => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        })
    }

    /// Append tokens `start..end` to `out`; false (and `out` untouched) if out of range.
    pub fn extend_range(&self, start: usize, end: usize, out: &mut Vec<u32>) -> bool {
        let w = self.width;
        let Some(b) = (start <= end)
            .then(|| self.body().get(start * w..end * w))
            .flatten()
        else {
            return false;
        };
        match w {
            2 => out.extend(
                b.chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32),
            ),
            _ => out.extend(
                b.chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
        }
        true
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).map(|i| self.get(i).unwrap_or(0))
    }

    pub fn to_vec(&self) -> Vec<u32> {
        let mut v = Vec::with_capacity(self.len);
        self.extend_range(0, self.len, &mut v);
        v
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn split(&self) -> Split {
        self.split
    }
    /// Bytes per stored token: 2 or 4.
    pub fn width(&self) -> usize {
        self.width
    }
    pub fn vocab_size(&self) -> u32 {
        self.vocab
    }
    /// UTF-8 bytes of the text the tokens encode.
    pub fn text_bytes(&self) -> u64 {
        self.text_bytes
    }
    /// Hash of the inputs and tokenizer that produced the file.
    pub fn input_hash(&self) -> u64 {
        self.hash
    }
}

/// Write a token file atomically: u16 when the vocabulary fits, else u32.
fn write_token_file(
    path: &Path,
    split: Split,
    vocab: u32,
    text_bytes: u64,
    hash: u64,
    tokens: &[u32],
) -> Result<(), DataError> {
    let width: u32 = if vocab <= 1 << 16 { 2 } else { 4 };
    let mut h = [0u8; HEADER_BYTES];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&width.to_le_bytes());
    h[16..20].copy_from_slice(&(split as u32).to_le_bytes());
    h[20..24].copy_from_slice(&vocab.to_le_bytes());
    h[24..32].copy_from_slice(&(tokens.len() as u64).to_le_bytes());
    h[32..40].copy_from_slice(&text_bytes.to_le_bytes());
    h[40..48].copy_from_slice(&hash.to_le_bytes());
    write_atomic(path, |w| {
        w.write_all(&h)?;
        for chunk in tokens.chunks(1 << 16) {
            let mut buf = Vec::with_capacity(chunk.len() * width as usize);
            for &t in chunk {
                match width {
                    2 => buf.extend_from_slice(&(t as u16).to_le_bytes()),
                    _ => buf.extend_from_slice(&t.to_le_bytes()),
                }
            }
            w.write_all(&buf)?;
        }
        Ok(())
    })
    .map_err(io_err(path))
}

/// The tokenized corpus: both splits and the text bytes behind them (bits per byte =
/// summed cross-entropy in nats / ln 2 / bytes).
#[derive(Clone, Debug)]
pub struct Corpus {
    pub train: TokenFile,
    pub heldout: TokenFile,
    pub train_bytes: u64,
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

/// Where a [`Windows`] stream stands: enough to resume it bit-identically.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowsState {
    pub rng: [u64; 4],
    /// Windows drawn so far.
    pub drawn: u64,
    /// The token file it draws from (its input hash and length), checked on resume.
    pub corpus_hash: u64,
    pub tokens: u64,
}

/// Training windows of `seq_len + 1` tokens at uniformly random offsets (with replacement),
/// from a seeded RNG.
pub struct Windows {
    tokens: TokenFile,
    rng: Rng,
    drawn: u64,
}

impl Windows {
    pub fn new(tokens: TokenFile, seed: u64) -> Windows {
        Windows {
            tokens,
            rng: Rng::new(seed),
            drawn: 0,
        }
    }

    /// Fill `inputs` and `targets` with `batch` windows, each `seq_len` tokens, row-major
    /// [batch, seq_len]; `targets[i]` is the token after `inputs[i]`. On error nothing is drawn.
    pub fn next_batch(
        &mut self,
        batch: usize,
        seq_len: usize,
        inputs: &mut Vec<u32>,
        targets: &mut Vec<u32>,
    ) -> Result<(), DataError> {
        let n = self.tokens.len();
        let need = seq_len + 1;
        if seq_len == 0 || n < need {
            return Err(DataError::TooShort { tokens: n, need });
        }
        inputs.clear();
        targets.clear();
        inputs.reserve(batch * seq_len);
        targets.reserve(batch * seq_len);
        // Valid starts: 0 ..= n - need, i.e. n - seq_len of them.
        let starts = (n - seq_len) as u64;
        for _ in 0..batch {
            let s = self.rng.below(starts) as usize;
            self.tokens.extend_range(s, s + seq_len, inputs);
            self.tokens.extend_range(s + 1, s + need, targets);
            self.drawn += 1;
        }
        Ok(())
    }

    /// Windows drawn so far.
    pub fn drawn(&self) -> u64 {
        self.drawn
    }

    pub fn state(&self) -> WindowsState {
        WindowsState {
            rng: self.rng.state(),
            drawn: self.drawn,
            corpus_hash: self.tokens.hash,
            tokens: self.tokens.len as u64,
        }
    }

    /// Resume from [`Windows::state`]; the state must come from the same token file.
    pub fn from_state(tokens: TokenFile, state: &WindowsState) -> Result<Windows, DataError> {
        if state.corpus_hash != tokens.hash || state.tokens != tokens.len as u64 {
            return Err(DataError::StateMismatch(format!(
                "saved for {} tokens with input hash {:016x}, corpus has {} tokens with hash {:016x}",
                state.tokens,
                state.corpus_hash,
                tokens.len,
                tokens.hash
            )));
        }
        let rng = Rng::from_state(state.rng)
            .ok_or_else(|| DataError::StateMismatch("all-zero RNG state".into()))?;
        Ok(Windows {
            tokens,
            rng,
            drawn: state.drawn,
        })
    }
}

/// Deterministic, non-overlapping evaluation windows over `tokens`: window k has inputs
/// `tokens[s..s+seq_len]` and targets `tokens[s+1..s+seq_len+1]` with `s = j·seq_len`, so no
/// token is predicted twice. There are `(len − 1) / seq_len` such windows (the last partial one
/// is dropped); when that is more than `max_windows`, `max_windows` of them are taken evenly
/// spread over the whole split (j = ⌊k·total/max_windows⌋), not just its beginning.
pub fn heldout_windows(
    tokens: &[u32],
    seq_len: usize,
    max_windows: usize,
) -> Vec<(Vec<u32>, Vec<u32>)> {
    if seq_len == 0 || tokens.len() < seq_len + 1 {
        return Vec::new();
    }
    let total = (tokens.len() - 1) / seq_len;
    let take = total.min(max_windows);
    (0..take)
        .map(|k| {
            let j = if take == total { k } else { k * total / take };
            let s = j * seq_len;
            (
                tokens[s..s + seq_len].to_vec(),
                tokens[s + 1..s + seq_len + 1].to_vec(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::models::bpe::{BpeTrainer, BPE};
    use tokenizers::models::TrainerWrapper;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::AddedToken;

    /// A byte-level BPE trained on `texts`, with `<|endoftext|>` = 0: the tokenizer-train recipe.
    fn tokenizer(texts: &[&str], vocab: usize) -> Tokenizer {
        let mut trainer: TrainerWrapper = BpeTrainer::builder()
            .vocab_size(vocab)
            .show_progress(false)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .special_tokens(vec![AddedToken::from(EOS, true)])
            .build()
            .into();
        let mut t = Tokenizer::new(BPE::default());
        t.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
        t.with_decoder(Some(ByteLevel::default()));
        t.train(&mut trainer, texts.iter()).unwrap();
        t
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

    fn write_sample(path: &Path, vocab: u32, tokens: &[u32]) {
        write_token_file(path, Split::Train, vocab, 123, 0xabc, tokens).unwrap();
    }

    #[test]
    fn u16_and_u32_files_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.tokens");
        let small: Vec<u32> = (0..1000).map(|i| (i * 37) % 65536).collect();
        write_sample(&p, 65536, &small);
        let f = TokenFile::open(&p).unwrap();
        assert_eq!((f.width(), f.len(), f.text_bytes()), (2, 1000, 123));
        assert_eq!(f.to_vec(), small);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 64 + 2000);

        let big: Vec<u32> = (0..1000).map(|i| 65_000 + i * 3).collect();
        write_sample(&p, 70_000, &big);
        let f = TokenFile::open(&p).unwrap();
        assert_eq!(f.width(), 4);
        assert_eq!(f.to_vec(), big);
        assert_eq!(f.get(999), Some(big[999]));
        assert_eq!(f.get(1000), None);
        let mut v = vec![7];
        assert!(f.extend_range(10, 13, &mut v));
        assert_eq!(v, [7, big[10], big[11], big[12]]);
        assert!(!f.extend_range(999, 1001, &mut v));
        assert!(!f.extend_range(5, 4, &mut v));
        assert_eq!(v.len(), 4);

        write_sample(&p, 10, &[]);
        assert!(TokenFile::open(&p).unwrap().is_empty());
    }

    #[test]
    fn malformed_files_give_typed_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.tokens");
        write_sample(&p, 1000, &(0..100).collect::<Vec<_>>());
        let good = std::fs::read(&p).unwrap();
        let bad = d.path().join("bad.tokens");
        let open = |bytes: &[u8]| {
            std::fs::write(&bad, bytes).unwrap();
            TokenFile::open(&bad).unwrap_err()
        };
        let patch = |at: usize, v: &[u8]| {
            let mut b = good.clone();
            b[at..at + v.len()].copy_from_slice(v);
            b
        };

        assert!(matches!(open(&[]), DataError::Truncated { .. }));
        assert!(matches!(open(&good[..40]), DataError::Truncated { .. }));
        assert!(matches!(
            open(&good[..good.len() - 1]),
            DataError::Truncated {
                expected: 264,
                actual: 263,
                ..
            }
        ));
        assert!(matches!(
            open(&[&good[..], &[0]].concat()),
            DataError::TrailingBytes { .. }
        ));
        assert!(matches!(
            open(&patch(0, b"GGUF")),
            DataError::BadMagic { .. }
        ));
        assert!(matches!(
            open(&patch(8, &2u32.to_le_bytes())),
            DataError::BadVersion { version: 2, .. }
        ));
        assert!(matches!(
            open(&patch(12, &3u32.to_le_bytes())),
            DataError::BadDtype { width: 3, .. }
        ));
        assert!(matches!(
            open(&patch(16, &9u32.to_le_bytes())),
            DataError::BadSplit { .. }
        ));
        // A count whose byte size overflows u64 is "truncated", not an allocation or a panic.
        assert!(matches!(
            open(&patch(24, &u64::MAX.to_le_bytes())),
            DataError::Truncated { .. }
        ));
        assert!(matches!(
            open(&patch(20, &50u32.to_le_bytes())),
            DataError::TokenOutOfRange {
                index: 50,
                id: 50,
                vocab: 50,
                ..
            }
        ));
        assert!(matches!(
            TokenFile::open(d.path().join("missing")),
            Err(DataError::Io { .. })
        ));
        assert!(matches!(
            TokenFile::open(d.path()),
            Err(DataError::Io { .. })
        ));

        // Two valid files from different inputs do not form a corpus.
        write_token_file(&d.path().join(TRAIN_FILE), Split::Train, 1000, 1, 1, &[1]).unwrap();
        write_token_file(
            &d.path().join(HELDOUT_FILE),
            Split::Heldout,
            1000,
            1,
            2,
            &[1],
        )
        .unwrap();
        assert!(matches!(
            Corpus::open(d.path()),
            Err(DataError::Mismatch { .. })
        ));
        // Swapped splits neither.
        write_token_file(&d.path().join(HELDOUT_FILE), Split::Train, 1000, 1, 1, &[1]).unwrap();
        assert!(matches!(
            Corpus::open(d.path()),
            Err(DataError::Mismatch { .. })
        ));
    }

    fn sample_file(dir: &Path, n: u32) -> TokenFile {
        let p = dir.join("w.tokens");
        // Token i is i: a window's position in the file is its first token.
        write_sample(&p, n, &(0..n).collect::<Vec<_>>());
        TokenFile::open(&p).unwrap()
    }

    #[test]
    fn window_targets_are_inputs_shifted_by_one() {
        let d = tempfile::tempdir().unwrap();
        let f = sample_file(d.path(), 50);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        let mut w = Windows::new(f.clone(), 3);
        let mut starts = std::collections::HashSet::new();
        for _ in 0..200 {
            w.next_batch(4, 9, &mut x, &mut y).unwrap();
            assert_eq!((x.len(), y.len()), (36, 36));
            for (xr, yr) in x.chunks(9).zip(y.chunks(9)) {
                for j in 0..9 {
                    assert_eq!(xr[j], xr[0] + j as u32, "a window is contiguous");
                    assert_eq!(yr[j], xr[j] + 1, "target is the next token");
                }
                assert!(yr[8] < 50);
                starts.insert(xr[0]);
            }
        }
        // Every start 0..=40 is drawn (800 draws of 41 starts), nothing beyond.
        assert_eq!(starts.len(), 41);
        assert_eq!(w.drawn(), 800);

        // Exactly one window fits: every draw is it.
        let mut w = Windows::new(sample_file(d.path(), 10), 1);
        w.next_batch(3, 9, &mut x, &mut y).unwrap();
        assert_eq!(x, (0..9).collect::<Vec<u32>>().repeat(3));
        let before = w.state();
        assert!(matches!(
            w.next_batch(1, 10, &mut x, &mut y),
            Err(DataError::TooShort {
                tokens: 10,
                need: 11
            })
        ));
        assert!(w.next_batch(1, 0, &mut x, &mut y).is_err());
        assert_eq!(w.state(), before, "a failed draw changes nothing");
    }

    #[test]
    fn resumed_windows_continue_identically() {
        let d = tempfile::tempdir().unwrap();
        let f = sample_file(d.path(), 5000);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        let mut straight = Windows::new(f.clone(), 42);
        let mut seq = Vec::new();
        for _ in 0..10 {
            straight.next_batch(3, 16, &mut x, &mut y).unwrap();
            seq.push((x.clone(), y.clone()));
        }

        let mut first = Windows::new(f.clone(), 42);
        for want in &seq[..4] {
            first.next_batch(3, 16, &mut x, &mut y).unwrap();
            assert_eq!(&(x.clone(), y.clone()), want);
        }
        let json = serde_json::to_string(&first.state()).unwrap();
        drop(first);
        let state: WindowsState = serde_json::from_str(&json).unwrap();
        assert_eq!(state.drawn, 12);
        let mut resumed = Windows::from_state(f.clone(), &state).unwrap();
        for want in &seq[4..] {
            resumed.next_batch(3, 16, &mut x, &mut y).unwrap();
            assert_eq!(&(x.clone(), y.clone()), want);
        }
        assert_eq!(resumed.state(), straight.state());

        // A different seed draws differently; a state from another file or a zero RNG is refused.
        let mut other = Windows::new(f.clone(), 43);
        other.next_batch(3, 16, &mut x, &mut y).unwrap();
        assert_ne!(x, seq[0].0);
        let other_dir = d.path().join("other");
        std::fs::create_dir(&other_dir).unwrap();
        let g = sample_file(&other_dir, 4000);
        assert!(matches!(
            Windows::from_state(g, &state),
            Err(DataError::StateMismatch(_))
        ));
        let zero = WindowsState {
            rng: [0; 4],
            ..state
        };
        assert!(Windows::from_state(f, &zero).is_err());
    }

    #[test]
    fn heldout_windows_tile_without_overlap() {
        let t: Vec<u32> = (100..200).collect(); // 100 tokens
        let w = heldout_windows(&t, 10, usize::MAX);
        assert_eq!(w.len(), 9); // (100 − 1) / 10
        for (k, (x, y)) in w.iter().enumerate() {
            assert_eq!(x[0], 100 + 10 * k as u32);
            assert_eq!(x.len(), 10);
            assert!(x.iter().zip(y).all(|(a, b)| b == &(a + 1)));
        }
        // Each token is a target at most once, and targets cover 1..=90 contiguously.
        let targets: Vec<u32> = w.iter().flat_map(|(_, y)| y.clone()).collect();
        assert_eq!(targets, (101..191).collect::<Vec<_>>());

        // Capped: spread over the whole split, still disjoint and in order.
        let few = heldout_windows(&t, 10, 3);
        let firsts: Vec<u32> = few.iter().map(|(x, _)| x[0]).collect();
        assert_eq!(firsts, [100, 130, 160]);
        assert_eq!(heldout_windows(&t, 10, 3), few, "deterministic");

        assert_eq!(heldout_windows(&t[..11], 10, 5).len(), 1);
        assert!(heldout_windows(&t[..10], 10, 5).is_empty());
        assert!(heldout_windows(&t, 0, 5).is_empty());
        assert!(heldout_windows(&t, 10, 0).is_empty());
    }
}

//! Training data: text files tokenized once into memory-mapped token files ([`token_file`]),
//! a deterministic train / held-out split ([`corpus`]), and seeded random windows that resume
//! bit-identically ([`windows`]).

pub mod corpus;
pub mod token_file;
pub mod windows;

pub use corpus::{split_point, tokenize_files, train_bpe, Corpus};
pub use token_file::{Split, TokenFile};
pub use windows::{heldout_windows, micro_batch_seed, Draw, Windows, WindowsState};

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use token_file::VERSION;

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

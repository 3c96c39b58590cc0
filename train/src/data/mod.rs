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

/// The training split's token file in a corpus directory.
pub const TRAIN_FILE: &str = "train.tokens";
/// The held-out split's token file in a corpus directory.
pub const HELDOUT_FILE: &str = "heldout.tokens";
/// The held-out text itself, so `score --file` can measure bits per byte on exactly that text.
pub const HELDOUT_TEXT: &str = "heldout.txt";
/// The end-of-document token (id 0 in tokenizers from [`train_bpe`]), placed between files.
pub const EOS: &str = "<|endoftext|>";

/// Why training data could not be read, built or drawn from; variants about a file name it.
#[derive(Debug)]
pub enum DataError {
    /// Reading or writing a file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// No input files were given.
    NoFiles,
    /// A held-out fraction outside [0, 1].
    BadFraction(f64),
    /// An input file is not UTF-8 text.
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
    /// The tokenizer failed (training it, encoding, or serialising it).
    Tokenizer(String),
    /// Not a token file: the magic bytes differ.
    BadMagic {
        /// The file.
        path: PathBuf,
    },
    /// A token file of a format version this build does not read.
    BadVersion {
        /// The file.
        path: PathBuf,
        /// The version it records.
        version: u32,
    },
    /// A token width other than 2 or 4 bytes.
    BadDtype {
        /// The file.
        path: PathBuf,
        /// The bytes per token it records.
        width: u32,
    },
    /// A split field other than train (0) or held-out (1).
    BadSplit {
        /// The file.
        path: PathBuf,
        /// The split it records.
        split: u32,
    },
    /// The file is shorter than its header says.
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes the header implies.
        expected: u64,
        /// Bytes of the file.
        actual: u64,
    },
    /// The file is longer than its header says.
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// Bytes the header implies.
        expected: u64,
        /// Bytes of the file.
        actual: u64,
    },
    /// A token at or past the vocabulary size the header records.
    TokenOutOfRange {
        /// The file.
        path: PathBuf,
        /// Position of the token.
        index: u64,
        /// The token.
        id: u32,
        /// The vocabulary size in the header.
        vocab: u32,
    },
    /// train.tokens and heldout.tokens come from different inputs.
    Mismatch {
        /// The corpus directory.
        dir: PathBuf,
    },
    /// Too few tokens for one window of `need`.
    TooShort {
        /// Tokens available.
        tokens: usize,
        /// Tokens one window needs (sequence length + 1).
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

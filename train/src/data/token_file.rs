//! The token file format (`*.tokens`), all integers little-endian, defined here once:
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

use super::{io_err, DataError};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokenformer_core::file::write_atomic;

/// The first 8 bytes of every token file.
pub const MAGIC: [u8; 8] = *b"TFTOKEN\0";
/// The format version written and read.
pub const VERSION: u32 = 1;
/// Bytes before the first token.
pub const HEADER_BYTES: usize = 64;

/// Which part of the corpus a token file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// The training split.
    Train = 0,
    /// The held-out split (evaluation only).
    Heldout = 1,
}

/// A validated, memory-mapped token file. Cloning shares the map.
#[derive(Clone, Debug)]
pub struct TokenFile {
    map: Arc<memmap2::Mmap>,
    path: PathBuf,
    width: usize,
    pub(super) len: usize,
    pub(super) split: Split,
    pub(super) vocab: u32,
    pub(super) text_bytes: u64,
    pub(super) hash: u64,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// One stored token: 2 or 4 little-endian bytes.
fn token(c: &[u8]) -> u32 {
    match c {
        [a, b] => u16::from_le_bytes([*a, *b]) as u32,
        _ => u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
    }
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

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the file holds no tokens.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn body(&self) -> &[u8] {
        &self.map[HEADER_BYTES..]
    }

    /// Token `i`, or None past the end.
    pub fn get(&self, i: usize) -> Option<u32> {
        let b = self.body().get(i * self.width..(i + 1) * self.width)?;
        Some(token(b))
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
        out.extend(b.chunks_exact(w).map(token));
        true
    }

    /// Every token, in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).map(|i| self.get(i).unwrap_or(0))
    }

    /// Every token, copied into a vector.
    pub fn to_vec(&self) -> Vec<u32> {
        let mut v = Vec::with_capacity(self.len);
        self.extend_range(0, self.len, &mut v);
        v
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The split recorded in the header.
    pub fn split(&self) -> Split {
        self.split
    }
    /// Bytes per stored token: 2 or 4.
    pub fn width(&self) -> usize {
        self.width
    }
    /// The vocabulary size recorded in the header (every token is below it).
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
pub(super) fn write_token_file(
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::data::{Corpus, HELDOUT_FILE, TRAIN_FILE};

    pub(in crate::data) fn write_sample(path: &Path, vocab: u32, tokens: &[u32]) {
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
}

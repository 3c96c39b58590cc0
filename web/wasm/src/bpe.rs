//! Byte-level BPE encoding of a Hugging Face `tokenizer.json` (GPT-2 style), giving the ids the
//! host's `tokenizers` crate gives: added tokens are split out first, the rest is cut by the
//! ByteLevel pre-tokenizer's regex (the same pattern on the same engine, `fancy-regex`), and each
//! piece's bytes are merged lowest merge rank first, leftmost first on ties, as `tokenizers`'
//! `Word::merge_all` does. Only the shape the project's tokenizers have is accepted (BPE model,
//! no normalizer, ByteLevel pre-tokenizer without a prefix space); any other is refused with an
//! error rather than encoded differently.

use crate::token_bytes::token_bytes;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;

/// `tokenizers`' ByteLevel pre-tokenizer pattern (GPT-2's), verbatim.
const SPLIT: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// Why a tokenizer.json was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenizerError {
    Json(String),
    /// A field this encoder needs is absent or of the wrong type.
    Missing(&'static str),
    /// A setting this encoder does not implement (it would give other ids than the host).
    Unsupported(String),
    /// A merge names a string that is not in the vocabulary.
    UnknownMerge(String),
    /// No single-byte token for this byte: some input could not be encoded.
    MissingByte(u8),
}

impl fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenizerError::Json(e) => write!(f, "tokenizer.json is not valid JSON: {e}"),
            TokenizerError::Missing(field) => write!(f, "tokenizer.json has no valid `{field}`"),
            TokenizerError::Unsupported(what) => write!(f, "unsupported tokenizer: {what}"),
            TokenizerError::UnknownMerge(m) => {
                write!(f, "the merge `{m}` names a string outside the vocabulary")
            }
            TokenizerError::MissingByte(b) => write!(f, "no token for the byte 0x{b:02x}"),
        }
    }
}

impl std::error::Error for TokenizerError {}

pub struct Tokenizer {
    /// `bytes[id]`: what token `id` decodes to.
    bytes: Vec<Vec<u8>>,
    /// The token of each single byte, where every word's merging starts.
    byte_ids: [u32; 256],
    /// (left, right) → (rank, merged id).
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// Added (special) tokens: their text and id, matched in the raw input.
    added: Vec<(String, u32)>,
    split: fancy_regex::Regex,
}

/// `v[key]` must be JSON null (or absent).
fn require_null(v: &serde_json::Value, key: &str) -> Result<(), TokenizerError> {
    match v.get(key) {
        None | Some(serde_json::Value::Null) => Ok(()),
        Some(x) => Err(TokenizerError::Unsupported(format!("{key} = {x}"))),
    }
}

/// `v[key]` must equal `want` (an absent key takes `default`).
fn require(
    v: &serde_json::Value,
    key: &str,
    want: serde_json::Value,
    default: serde_json::Value,
) -> Result<(), TokenizerError> {
    let got = v.get(key).cloned().unwrap_or(default);
    if got == want {
        Ok(())
    } else {
        Err(TokenizerError::Unsupported(format!("{key} = {got}")))
    }
}

impl Tokenizer {
    pub fn from_json(json: &str) -> Result<Tokenizer, TokenizerError> {
        use serde_json::{json, Value};
        let t: Value =
            serde_json::from_str(json).map_err(|e| TokenizerError::Json(e.to_string()))?;
        require_null(&t, "normalizer")?;
        let pre = &t["pre_tokenizer"];
        require(pre, "type", json!("ByteLevel"), Value::Null)?;
        require(pre, "add_prefix_space", json!(false), json!(true))?;
        require(pre, "use_regex", json!(true), json!(true))?;
        let model = &t["model"];
        require(model, "type", json!("BPE"), json!("BPE"))?;
        for key in ["dropout", "continuing_subword_prefix", "end_of_word_suffix"] {
            require_null(model, key)?;
        }
        require(model, "ignore_merges", json!(false), json!(false))?;

        let vocab = model["vocab"]
            .as_object()
            .ok_or(TokenizerError::Missing("model.vocab"))?;
        let id_of = |s: &str| -> Result<u32, TokenizerError> {
            vocab
                .get(s)
                .and_then(Value::as_u64)
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| TokenizerError::UnknownMerge(s.to_string()))
        };
        let list = model["merges"]
            .as_array()
            .ok_or(TokenizerError::Missing("model.merges"))?;
        let mut merges = HashMap::with_capacity(list.len());
        for (rank, m) in list.iter().enumerate() {
            // Either ["left", "right"] or the older "left right".
            let (left, right) = match m {
                Value::Array(p) if p.len() == 2 => (
                    p[0].as_str()
                        .ok_or(TokenizerError::Missing("model.merges"))?,
                    p[1].as_str()
                        .ok_or(TokenizerError::Missing("model.merges"))?,
                ),
                Value::String(s) => s
                    .split_once(' ')
                    .ok_or_else(|| TokenizerError::UnknownMerge(s.clone()))?,
                _ => return Err(TokenizerError::Missing("model.merges")),
            };
            let merged = id_of(&format!("{left}{right}"))?;
            merges.insert((id_of(left)?, id_of(right)?), (rank as u32, merged));
        }

        let mut added = Vec::new();
        for a in t["added_tokens"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            for key in ["single_word", "lstrip", "rstrip"] {
                require(a, key, json!(false), json!(false))?;
            }
            let content = a["content"]
                .as_str()
                .ok_or(TokenizerError::Missing("added_tokens.content"))?;
            let id = a["id"]
                .as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .ok_or(TokenizerError::Missing("added_tokens.id"))?;
            if !content.is_empty() {
                added.push((content.to_string(), id));
            }
        }

        let bytes = token_bytes(json).map_err(TokenizerError::Unsupported)?;
        let mut byte_ids = [u32::MAX; 256];
        for (id, b) in bytes.iter().enumerate() {
            let is_added = added.iter().any(|&(_, a)| a as usize == id);
            if let ([b], false) = (b.as_slice(), is_added) {
                if byte_ids[*b as usize] == u32::MAX {
                    byte_ids[*b as usize] = id as u32;
                }
            }
        }
        if let Some(b) = byte_ids.iter().position(|&id| id == u32::MAX) {
            return Err(TokenizerError::MissingByte(b as u8));
        }
        let split = fancy_regex::Regex::new(SPLIT).expect("the pre-tokenizer pattern compiles");
        Ok(Tokenizer {
            bytes,
            byte_ids,
            merges,
            added,
            split,
        })
    }

    /// Ids the tokenizer can produce (the vocabulary and the added tokens).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The bytes token `id` decodes to (`None` past the vocabulary). A token may end inside a
    /// UTF-8 character: join the bytes of consecutive tokens before decoding them as text.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.bytes.get(id as usize).map(Vec::as_slice)
    }

    /// The ids of `text`, as `tokenizers`' `encode(text, false)` gives them.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match self.next_added(rest) {
                Some((at, len, id)) => {
                    self.encode_plain(&rest[..at], &mut ids);
                    ids.push(id);
                    rest = &rest[at + len..];
                }
                None => {
                    self.encode_plain(rest, &mut ids);
                    break;
                }
            }
        }
        ids
    }

    /// The leftmost added token in `s` (the longest of those starting there): its byte offset,
    /// length and id.
    fn next_added(&self, s: &str) -> Option<(usize, usize, u32)> {
        self.added
            .iter()
            .filter_map(|(content, id)| s.find(content.as_str()).map(|at| (at, content.len(), *id)))
            .min_by_key(|&(at, len, _)| (at, Reverse(len)))
    }

    /// Text without added tokens: the pre-tokenizer's pieces (regex matches, and any text
    /// between them, as `tokenizers`' isolated split keeps it), each merged on its own.
    fn encode_plain(&self, s: &str, ids: &mut Vec<u32>) {
        let mut at = 0;
        for m in self.split.find_iter(s) {
            // `tokenizers` stops at a regex error and keeps the rest as one piece.
            let Ok(m) = m else { break };
            if m.start() > at {
                self.merge(&s.as_bytes()[at..m.start()], ids);
            }
            self.merge(m.as_str().as_bytes(), ids);
            at = m.end();
        }
        if at < s.len() {
            self.merge(&s.as_bytes()[at..], ids);
        }
    }

    /// One piece: its bytes' tokens, merged while any adjacent pair has a merge, the lowest
    /// rank first and the leftmost first among equal ranks; stale queue entries are skipped.
    fn merge(&self, piece: &[u8], out: &mut Vec<u32>) {
        const NONE: usize = usize::MAX;
        let n = piece.len();
        let mut id: Vec<u32> = piece.iter().map(|&b| self.byte_ids[b as usize]).collect();
        let mut next: Vec<usize> = (1..=n).map(|i| if i < n { i } else { NONE }).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut alive = vec![true; n];
        let mut queue = BinaryHeap::new();
        let push = |queue: &mut BinaryHeap<_>, id: &[u32], i: usize, j: usize| {
            if let Some(&(rank, merged)) = self.merges.get(&(id[i], id[j])) {
                queue.push(Reverse((rank, i, merged)));
            }
        };
        for i in 1..n {
            push(&mut queue, &id, i - 1, i);
        }
        while let Some(Reverse((_, i, merged))) = queue.pop() {
            let j = next[i];
            if !alive[i]
                || j == NONE
                || self.merges.get(&(id[i], id[j])).map(|m| m.1) != Some(merged)
            {
                continue;
            }
            id[i] = merged;
            alive[j] = false;
            next[i] = next[j];
            if next[j] != NONE {
                prev[next[j]] = i;
            }
            if prev[i] != NONE {
                push(&mut queue, &id, prev[i], i);
            }
            if next[i] != NONE {
                push(&mut queue, &id, i, next[i]);
            }
        }
        out.extend((0..n).filter(|&i| alive[i]).map(|i| id[i]));
    }
}

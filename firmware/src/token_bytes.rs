//! The bytes of every token id of a byte-level BPE `tokenizer.json` (HuggingFace format): each
//! vocabulary string mapped back through GPT-2's byte-to-unicode table; added (special) tokens
//! keep their text. Shared by the firmware's build script and its host reference.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

/// GPT-2's `bytes_to_unicode` inverted: the byte each of its 256 code points stands for.
fn unicode_to_byte(c: char) -> Option<u8> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let c = c as u32;
    if c < 256 && printable(c) {
        return Some(c as u8);
    }
    // The other bytes, in order, take the code points 256, 257, ...
    (0u32..256)
        .filter(|&b| !printable(b))
        .nth(c.checked_sub(256)? as usize)
        .map(|b| b as u8)
}

/// `table[id]` = the bytes token `id` decodes to.
pub fn token_bytes(tokenizer_json: &str) -> Result<Vec<Vec<u8>>, String> {
    let t: serde_json::Value = serde_json::from_str(tokenizer_json).map_err(|e| e.to_string())?;
    let vocab = t["model"]["vocab"]
        .as_object()
        .ok_or("tokenizer.json has no model.vocab map")?;
    let added: Vec<(usize, &str)> = t["added_tokens"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| Some((x["id"].as_u64()? as usize, x["content"].as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    // Ids are 0..n for a byte-level BPE file; refuse larger ones before allocating the table
    // (a hostile file must not ask for gigabytes).
    let ids = t["added_tokens"].as_array().into_iter().flatten();
    let n = vocab
        .values()
        .filter_map(|v| v.as_u64())
        .chain(ids.filter_map(|x| x["id"].as_u64()))
        .max()
        .map_or(0, |m| m.saturating_add(1));
    if n > (vocab.len() + added.len()) as u64 {
        return Err("a token id is past the number of tokens".into());
    }
    let mut table = vec![Vec::new(); n as usize];
    for (s, id) in vocab {
        let id = id.as_u64().ok_or("a vocabulary id is not a number")? as usize;
        table[id] = s
            .chars()
            .map(|c| unicode_to_byte(c).ok_or("a character outside the byte-level alphabet"))
            .collect::<Result<_, _>>()?;
    }
    for (id, content) in added {
        table[id] = content.as_bytes().to_vec();
    }
    Ok(table)
}

//! Embeds the model and its token-byte table, and sizes the heap with core's own bound.
//!
//! - `FW_MODEL` (default `../models/tiny-q8_0.safetensors`) and `FW_TOKENIZER` (default
//!   `../models/tiny-tokenizer.json`) choose the files.
//! - `FW_CORRUPT` = `header-len` | `json` | `offset` | `truncate` embeds a damaged copy of the
//!   model (the heap is still sized from the intact one): the firmware must print an error
//!   and exit non-zero.
//! - The heap is `Session::bytes_needed(config, max_context)` plus 8 × the header's length for
//!   loading (`core/tests/heap.rs` checks both bounds) plus 1/16 for the allocator's
//!   fragmentation.
extern crate alloc;

#[path = "src/token_bytes.rs"]
mod token_bytes;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::{env, fs};

fn main() {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    for v in ["FW_MODEL", "FW_TOKENIZER", "FW_CORRUPT"] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    let path = |var: &str, default: &str| {
        env::var(var).map_or_else(|_| dir.join(default), |p| dir.join(p))
    };
    let model_path = path("FW_MODEL", "../models/tiny-q8_0.safetensors");
    let tok_path = path("FW_TOKENIZER", "../models/tiny-tokenizer.json");
    for p in [&model_path, &tok_path] {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    println!("cargo:rerun-if-changed=memory.x");
    fs::copy(dir.join("memory.x"), out.join("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());

    let model =
        fs::read(&model_path).unwrap_or_else(|e| panic!("reading {}: {e}", model_path.display()));
    let loaded = tokenformer_core::checkpoint::load(&model)
        .unwrap_or_else(|e| panic!("{}: {e}", model_path.display()));
    let cfg = &loaded.config;
    let header = 8 + u64::from_le_bytes(model[..8].try_into().unwrap()) as usize;
    let session = tokenformer_core::Session::bytes_needed(cfg, cfg.max_context);
    let heap = (session + 8 * header) * 17 / 16;
    let heap = heap.next_multiple_of(8);

    let variant = env::var("FW_CORRUPT").unwrap_or_else(|_| "none".into());
    let embedded = corrupt(model.clone(), header, &variant);
    fs::write(out.join("model.bin"), &embedded).unwrap();

    let json = fs::read_to_string(&tok_path).unwrap();
    let table =
        token_bytes::token_bytes(&json).unwrap_or_else(|e| panic!("{}: {e}", tok_path.display()));
    assert!(
        table.len() >= cfg.vocab_size.min(cfg.tokenizer_vocab),
        "tokenizer smaller than the model's vocabulary"
    );
    let mut g = String::new();
    writeln!(g, "pub const HEAP_BYTES: usize = {heap};").unwrap();
    writeln!(g, "pub const SESSION_BYTES: usize = {session};").unwrap();
    writeln!(g, "pub const VARIANT: &str = {variant:?};").unwrap();
    writeln!(
        g,
        "pub const MODEL_FILE: &str = {:?};",
        model_path.file_name().unwrap().to_string_lossy()
    )
    .unwrap();
    writeln!(g, "pub static TOKEN_BYTES: [&[u8]; {}] = [", table.len()).unwrap();
    for t in &table {
        writeln!(g, "    &{t:?},").unwrap();
    }
    writeln!(g, "];").unwrap();
    fs::write(out.join("generated.rs"), g).unwrap();
}

/// The damaged model of one `FW_CORRUPT` variant.
fn corrupt(mut m: Vec<u8>, header: usize, variant: &str) -> Vec<u8> {
    match variant {
        "none" => {}
        // The length prefix points past the end of the file.
        "header-len" => {
            let past_end = m.len() as u64;
            m[..8].copy_from_slice(&past_end.to_le_bytes());
        }
        // The JSON's first ':' becomes ';'.
        "json" => {
            let i = m[8..header].iter().position(|&b| b == b':').unwrap() + 8;
            m[i] = b';';
        }
        // The first tensor's data lies past the end of the file (the header re-written, padded
        // to keep the data 8-aligned).
        "offset" => {
            let mut j: serde_json::Value = serde_json::from_slice(&m[8..header]).unwrap();
            let data = (m.len() - header) as u64;
            let t = j
                .as_object_mut()
                .unwrap()
                .iter_mut()
                .find(|(k, _)| *k != "__metadata__")
                .unwrap()
                .1;
            for i in 0..2 {
                let o = t["data_offsets"][i].as_u64().unwrap();
                t["data_offsets"][i] = (o + data).into();
            }
            let mut text = serde_json::to_vec(&j).unwrap();
            text.resize(text.len().next_multiple_of(8), b' ');
            let mut out = (text.len() as u64).to_le_bytes().to_vec();
            out.extend_from_slice(&text);
            out.extend_from_slice(&m[header..]);
            m = out;
        }
        // The last third of the file is missing.
        "truncate" => m.truncate(m.len() * 2 / 3),
        other => panic!("unknown FW_CORRUPT variant {other:?}"),
    }
    m
}

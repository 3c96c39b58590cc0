//! Writes the `checkpoint` target's seed corpus into `fuzz/seeds/checkpoint/`:
//! `cargo run --manifest-path fuzz/Cargo.toml --bin make_seeds`.
//!
//! One tiny valid checkpoint per dtype (≈3 KB, far smaller than the `tiny` preset) plus broken
//! variants that reach each early exit of the loader.

use std::fs;
use std::path::Path;
use tokenformer_core::checkpoint;
use tokenformer_core::DType;
use tokenformer_core::config::{Config, ThetaKind};
use tokenformer_core::{init, DType};

fn config() -> Config {
    Config {
        n_layers: 1,
        d_model: 8,
        n_heads: 2,
        qkv_tokens: 4,
        proj_tokens: 4,
        ffn_tokens: 8,
        qkv_scale_tokens: 4,
        proj_scale_tokens: 4,
        ffn_scale_tokens: 8,
        // head_dim 4 · 0.5 = 2 rotary dims (an odd count is invalid).
        rotary_pct: 0.5,
        rotary_base: 10000.0,
        norm: ThetaKind::L2NormGelu,
        vocab_size: 16,
        tokenizer_vocab: 16,
        max_context: 16,
        layer_norm_eps: 1e-5,
    }
}

/// The smallest config whose matrices quantize: every stored row a whole 32-value block.
fn quant_config() -> Config {
    Config {
        d_model: 32,
        qkv_tokens: 32,
        proj_tokens: 32,
        ffn_tokens: 32,
        qkv_scale_tokens: 32,
        proj_scale_tokens: 32,
        ffn_scale_tokens: 32,
        // head_dim 16 · 0.25 = 4 rotary dims.
        rotary_pct: 0.25,
        ..config()
    }
}

/// Split a checkpoint into (header JSON, data).
fn split(bytes: &[u8]) -> (String, &[u8]) {
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (
        String::from_utf8(bytes[8..8 + len].to_vec()).unwrap(),
        &bytes[8 + len..],
    )
}

/// Reassemble a checkpoint from a (possibly edited) header JSON and data.
fn join(json: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(data);
    out
}

fn replace_once(s: &str, from: &str, to: &str) -> String {
    assert!(s.contains(from), "seed edit: `{from}` not in header");
    s.replacen(from, to, 1)
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/checkpoint");
    fs::create_dir_all(&dir).unwrap();
    let model = init::init(config(), 1).expect("seed config is valid");

    let mut seeds: Vec<(&str, Vec<u8>, bool)> = Vec::new();
    for (name, dtype) in [
        ("valid_f32", DType::F32),
        ("valid_f16", DType::F16),
        ("valid_bf16", DType::BF16),
    ] {
        seeds.push((name, checkpoint::to_bytes(&model, dtype), true));
    }
    // Quantized checkpoints (U8 blocks + `quantization` metadata), and one whose values claim
    // not to be transposed.
    let qmodel = init::init(quant_config(), 2).expect("quant seed config is valid");
    let q8 = qmodel.quantize(DType::Q8_0, DType::Q8_0).expect("f32 model");
    let q4 = qmodel.quantize(DType::Q4_0, DType::Q8_0).expect("f32 model");
    let q4_bytes = checkpoint::to_bytes(&q4, DType::F32);
    seeds.push(("valid_q8_0", checkpoint::to_bytes(&q8, DType::F32), true));
    let (qjson, qdata) = split(&q4_bytes);
    seeds.push((
        "bad_quant_transposed",
        join(
            &replace_once(&qjson, "\\\"transposed\\\":true", "\\\"transposed\\\":false"),
            qdata,
        ),
        false,
    ));
    seeds.push(("valid_q4_0", q4_bytes.clone(), true));

    let valid = checkpoint::to_bytes(&model, DType::F32);
    let (json, data) = split(&valid);

    // Cut inside the data, and inside the header.
    seeds.push(("truncated_data", valid[..valid.len() - 5].to_vec(), false));
    seeds.push((
        "truncated_header",
        valid[..8 + json.len() / 2].to_vec(),
        false,
    ));
    seeds.push(("too_short", valid[..5].to_vec(), false));
    // Header length pointing past the end of the file, and beyond the 100 MB bound.
    let mut past_end = valid.clone();
    past_end[..8].copy_from_slice(&(valid.len() as u64).to_le_bytes());
    seeds.push(("header_len_past_end", past_end, false));
    let mut huge = valid.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    seeds.push(("header_len_huge", huge, false));
    // Invalid JSON: the opening brace replaced.
    seeds.push((
        "invalid_json",
        join(&replace_once(&json, "{", "["), data),
        false,
    ));
    // One tensor renamed: the real one is missing (and the renamed one unknown).
    seeds.push((
        "missing_tensor",
        join(
            &replace_once(&json, "\"final_norm.bias\"", "\"final_norm.biaz\""),
            data,
        ),
        false,
    ));
    // Wrong dtype name, non-tokenformer format, missing config.
    seeds.push((
        "bad_dtype",
        join(&replace_once(&json, "\"F32\"", "\"I32\""), data),
        false,
    ));
    seeds.push((
        "not_tokenformer",
        join(
            &replace_once(&json, "\"tokenformer\"", "\"tokenformes\""),
            data,
        ),
        false,
    ));
    seeds.push((
        "missing_config",
        join(&replace_once(&json, "\"config\"", "\"cfg\""), data),
        false,
    ));
    // Config that fails validation (odd rotary dims).
    seeds.push((
        "invalid_config",
        join(
            &replace_once(&json, "\"rotary_pct\\\":0.5", "\"rotary_pct\\\":0.25"),
            data,
        ),
        false,
    ));

    for (name, bytes, ok) in &seeds {
        let res = checkpoint::load(bytes);
        assert_eq!(res.is_ok(), *ok, "seed {name}: {:?}", res.err());
        fs::write(dir.join(name), bytes).unwrap();
        println!(
            "{name}: {} bytes, {}",
            bytes.len(),
            match &res {
                Ok(_) => "loads".to_string(),
                Err(e) => format!("{e:?}"),
            }
        );
    }
}

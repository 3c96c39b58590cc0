//! Writes the `torch_bin` target's seed corpus into `fuzz/seeds/torch_bin/`:
//! `cargo run --manifest-path fuzz/Cargo.toml --bin make_torch_seeds`.
//!
//! A tiny official-layout state dict (1 layer, d 8) in torch.save form, its bare pickle, and
//! broken variants that reach each refusal of the reader.

#[path = "../../../core/tests/support/torch_writer.rs"]
mod torch_writer;

use std::fs;
use std::path::Path;
use tokenformer_core::config::ThetaKind;
use tokenformer_core::convert::{self, Hyper};
use tokenformer_core::torch;
use torch_writer::{official, pickle, torch_file, Geometry};

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/torch_bin");
    fs::create_dir_all(&dir).unwrap();
    let g = Geometry { layers: 1, d: 8, qkv: 4, proj: 3, ffn: 6, vocab: 8 };
    let (e, s) = official(g, 1);
    let pkl = pickle(&e);
    let mut seeds: Vec<(&str, Vec<u8>)> = vec![
        ("valid", torch_file(pkl.clone(), &s)),
        ("pickle_only", pkl.clone()),
    ];
    let valid = seeds[0].1.clone();
    seeds.push(("truncated", valid[..valid.len() / 2].to_vec()));
    seeds.push(("unknown_opcode", torch_file([&pkl[..2], b"i", &pkl[2..]].concat(), &s)));
    let evil = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.".to_vec();
    seeds.push(("os_system", torch_file(evil, &[])));
    let mut short = (e.clone(), s.clone());
    short.0[1].storage_numel = 2;
    short.1[1].1.truncate(8);
    seeds.push(("storage_short", torch_file(pickle(&short.0), &short.1)));
    let mut shape = e.clone();
    shape[3].shape[0] -= 1;
    seeds.push(("shape_mismatch", torch_file(pickle(&shape), &s)));
    let mut strided = e.clone();
    strided[2].shape.reverse();
    strided[2].stride = vec![1, g.d as u64];
    seeds.push(("transposed_view", torch_file(pickle(&strided), &s)));

    let hyper = Hyper::Heads {
        n_heads: 2,
        rotary_pct: 0.5,
        norm: ThetaKind::L2NormGelu,
        tokenizer_vocab: None,
        max_context: 16,
    };
    for (name, bytes) in &seeds {
        let res = torch::read(bytes)
            .map_err(convert::ConvertError::from)
            .and_then(|v| convert::convert(&v, &hyper).map(|_| ()));
        assert_eq!(res.is_ok(), *name == "valid", "seed {name}: {res:?}");
        fs::write(dir.join(name), bytes).unwrap();
        println!("{name}: {} bytes, {res:?}", bytes.len());
    }
}

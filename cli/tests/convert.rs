//! `convert` end to end through the built binary: parity with the PyTorch fixture, every output
//! dtype, official-name safetensors, and one clean error line for each malformed input.

mod common;
use common::*;

#[path = "../../core/tests/support/torch_writer.rs"]
mod torch_writer;

use std::path::{Path, PathBuf};

use torch_writer::{official, pickle, torch_file, Geometry};

/// Largest |ours − PyTorch f64| per token log-prob for f32 (reached: about 1.4e-6).
const TOL_F32: f64 = 1e-5;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/official_tiny")
        .join(name)
}

fn reference() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixture("logprobs.json")).unwrap()).unwrap()
}

fn convert_fixture(from: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec![
        "convert",
        "--from",
        from.to_str().unwrap(),
        "--heads",
        "4",
        "--tokenizer-vocab",
        "500",
        "--max-context",
        "256",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ok(&args);
}

fn score(model: &Path, tokens: &str) -> Vec<f64> {
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--token-ids",
        tokens,
        "--json",
    ]))
    .unwrap();
    v["logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn converted_fixture_scores_like_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    let r = reference();
    let tokens: Vec<String> = r["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.to_string())
        .collect();
    let tokens = tokens.join(",");
    for file in ["pytorch_model.bin", "pytorch_model_mixed.bin"] {
        let want: Vec<f64> = r["logprobs"][file]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let out = dir.path().join(format!("{file}.safetensors"));
        convert_fixture(&fixture(file), &out, &[]);
        let diff = max_diff(&score(&out, &tokens), &want);
        assert!(diff <= TOL_F32, "{file}: {diff:e}");

        let info: serde_json::Value =
            serde_json::from_str(&ok(&["inspect", out.to_str().unwrap(), "--json"])).unwrap();
        assert_eq!(info["params"], 104_576);
        assert_eq!(info["config"]["n_heads"], 4);
        assert_eq!(info["config"]["tokenizer_vocab"], 500);
    }
    // f16 and bf16 storage: half the bytes, log-probs within the rounding those types imply.
    let f32_len = std::fs::metadata(dir.path().join("pytorch_model.bin.safetensors"))
        .unwrap()
        .len();
    let want: Vec<f64> = r["logprobs"]["pytorch_model.bin"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    for (dtype, tol) in [("f16", 0.05), ("bf16", 0.5)] {
        let out = dir.path().join(format!("{dtype}.safetensors"));
        convert_fixture(&fixture("pytorch_model.bin"), &out, &["--dtype", dtype]);
        let len = std::fs::metadata(&out).unwrap().len();
        assert!(len < f32_len * 6 / 10, "{dtype}: {len} vs {f32_len}");
        let diff = max_diff(&score(&out, &tokens), &want);
        assert!(diff > 0.0 && diff <= tol, "{dtype}: {diff:e}");
    }
}

#[test]
fn official_safetensors_convert_too() {
    // The fixture's tensors as safetensors with the official names, via our own reader + writer.
    let dir = tempfile::tempdir().unwrap();
    let g = Geometry {
        layers: 2,
        d: 8,
        qkv: 6,
        proj: 5,
        ffn: 12,
        vocab: 16,
    };
    let (e, s) = official(g, 3);
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (t, (_, bytes)) in e.iter().zip(&s) {
        let start = data.len();
        data.extend_from_slice(bytes);
        header.insert(
            t.name.clone(),
            serde_json::json!({"dtype": "F32", "shape": t.shape, "data_offsets": [start, data.len()]}),
        );
    }
    let json = serde_json::to_vec(&header).unwrap();
    let mut st = (json.len() as u64).to_le_bytes().to_vec();
    st.extend_from_slice(&json);
    st.extend_from_slice(&data);
    let st_path = dir.path().join("official.safetensors");
    std::fs::write(&st_path, &st).unwrap();
    let bin_path = dir.path().join("pytorch_model.bin");
    std::fs::write(&bin_path, torch_file(pickle(&e), &s)).unwrap();
    let (a, b) = (
        dir.path().join("a.safetensors"),
        dir.path().join("b.safetensors"),
    );
    for (from, out) in [(&st_path, &a), (&bin_path, &b)] {
        ok(&[
            "convert",
            "--from",
            from.to_str().unwrap(),
            "--heads",
            "2",
            "--rotary-pct",
            "0.5",
            "--max-context",
            "16",
            "--out",
            out.to_str().unwrap(),
        ]);
    }
    // Same model from both containers: identical checkpoints except the recorded source path.
    let (ma, mb) = (
        tokenformer_core::file::ModelFile::open(&a).unwrap(),
        tokenformer_core::file::ModelFile::open(&b).unwrap(),
    );
    let (ma, mb) = (ma.model().unwrap(), mb.model().unwrap());
    assert_eq!(ma.config, mb.config);
    assert_eq!(ma.tensors(), mb.tensors());
    // An already converted file is recognised.
    let msg = assert_clean_failure(&[
        "convert",
        "--from",
        a.to_str().unwrap(),
        "--heads",
        "2",
        "--out",
        dir.path().join("c").to_str().unwrap(),
    ]);
    assert!(msg.contains("already"), "{msg}");
}

#[test]
fn malformed_inputs_fail_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let g = Geometry {
        layers: 2,
        d: 8,
        qkv: 6,
        proj: 5,
        ffn: 12,
        vocab: 16,
    };
    let (e, s) = official(g, 1);
    let pkl = pickle(&e);
    let valid = torch_file(pkl.clone(), &s);

    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    cases.push((
        "truncated",
        valid[..valid.len() * 2 / 3].to_vec(),
        "truncated",
    ));
    cases.push((
        "opcode",
        torch_file([&pkl[..2], b"i", &pkl[2..]].concat(), &s),
        "opcode INST",
    ));
    let evil = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.".to_vec();
    cases.push(("global", torch_file(evil, &[]), "`os.system`"));
    let mut shape = e.clone();
    let i = shape
        .iter()
        .position(|t| t.name == "sequential.3.mlp.key_param_tokens")
        .unwrap();
    shape[i].shape[0] -= 1;
    cases.push((
        "shape",
        torch_file(pickle(&shape), &s),
        "sequential.3.mlp.key_param_tokens",
    ));
    let (mut short_e, mut short_s) = (e.clone(), s.clone());
    short_e[4].storage_numel = 10;
    short_s[4].1.truncate(40);
    cases.push((
        "short",
        torch_file(pickle(&short_e), &short_s),
        "holds only 10",
    ));

    let out = dir.path().join("out.safetensors");
    for (name, bytes, needle) in &cases {
        let p = dir.path().join(format!("{name}.bin"));
        std::fs::write(&p, bytes).unwrap();
        let msg = assert_clean_failure(&[
            "convert",
            "--from",
            p.to_str().unwrap(),
            "--heads",
            "2",
            "--rotary-pct",
            "0.5",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(msg.contains(needle), "{name}: {msg}");
        assert!(!out.exists(), "{name}: output written");
    }
    // Flag errors.
    let v = dir.path().join("valid.bin");
    std::fs::write(&v, &valid).unwrap();
    let vs = v.to_str().unwrap();
    let os = out.to_str().unwrap();
    assert_clean_failure(&["convert", "--from", vs, "--out", os]);
    assert_clean_failure(&["convert", "--from", vs, "--preset", "7b", "--out", os]);
    assert_clean_failure(&["convert", "--from", vs, "--preset", "150m", "--out", os]);
    assert_clean_failure(&["convert", "--from", vs, "--heads", "3", "--out", os]);
    assert_clean_failure(&[
        "convert", "--from", vs, "--heads", "2", "--norm", "relu", "--out", os,
    ]);
    assert_clean_failure(&[
        "convert",
        "--from",
        vs,
        "--heads",
        "2",
        "--rotary-pct",
        "0.5",
        "--dtype",
        "q4",
        "--out",
        os,
    ]);
    assert_clean_failure(&[
        "convert",
        "--from",
        "/nonexistent.bin",
        "--heads",
        "2",
        "--out",
        os,
    ]);
    assert!(!out.exists());
    ok(&[
        "convert",
        "--from",
        vs,
        "--heads",
        "2",
        "--rotary-pct",
        "0.5",
        "--out",
        os,
    ]);
    assert!(out.exists());
}

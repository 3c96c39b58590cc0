//! Converting the authors' layout: parity with a PyTorch reference on a real torch.save fixture,
//! and a typed error for every kind of malformed input.

#[path = "support/torch_writer.rs"]
mod torch_writer;

use std::path::PathBuf;
use tokenformer_core::config::ThetaKind;
use tokenformer_core::convert::{self, ConvertError, Hyper};
use tokenformer_core::session::log_softmax;
use tokenformer_core::torch::{self, PickleError, TensorView, TorchError, ZipError};
use tokenformer_core::DType;
use tokenformer_core::{Model, Session};
use torch_writer::{official, pickle, torch_file, zip, Geometry};

/// Largest |ours − PyTorch f64| allowed per token log-prob (f32 weights and arithmetic).
const TOL: f64 = 1e-5;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/official_tiny")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir().join(name)).unwrap()
}

fn reference() -> serde_json::Value {
    serde_json::from_slice(&fixture("logprobs.json")).unwrap()
}

fn hyper() -> Hyper {
    Hyper::Heads {
        n_heads: 4,
        rotary_pct: 0.25,
        norm: ThetaKind::L2NormGelu,
        tokenizer_vocab: Some(500),
        max_context: 256,
    }
}

fn logprobs(m: &Model<'_>, tokens: &[u32]) -> Vec<f64> {
    let logits = Session::new(m).feed_all(tokens).unwrap();
    (0..tokens.len() - 1)
        .map(|i| log_softmax(logits.row(i))[tokens[i + 1] as usize])
        .collect()
}

fn tokens() -> Vec<u32> {
    reference()["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn expected(file: &str) -> Vec<f64> {
    reference()["logprobs"][file]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn torch_save_fixture_matches_pytorch_logprobs() {
    let toks = tokens();
    for file in ["pytorch_model.bin", "pytorch_model_mixed.bin"] {
        let bytes = fixture(file);
        let views = torch::read(&bytes).unwrap();
        if file.contains("mixed") {
            for t in [DType::F32, DType::F16, DType::BF16] {
                assert!(views.iter().any(|v| v.dtype == t), "{t:?}");
            }
        }
        let model = convert::convert(&views, &hyper()).unwrap();
        let c = &model.config;
        assert_eq!(
            (
                c.n_layers,
                c.d_model,
                c.qkv_tokens,
                c.proj_tokens,
                c.ffn_tokens
            ),
            (2, 64, 48, 40, 96)
        );
        assert_eq!((c.vocab_size, c.tokenizer_vocab), (512, 500));
        let ours = logprobs(&model, &toks);
        let want = expected(file);
        let diff = max_diff(&ours, &want);
        eprintln!(
            "{file}: max |Δ logprob| = {diff:.2e} over {} tokens",
            want.len()
        );
        assert!(diff <= TOL, "{file}: max |Δ| {diff:e} > {TOL:e}");
    }
}

#[test]
fn packed_f32_tensors_are_borrowed_and_views_gathered() {
    let bytes = fixture("pytorch_model.bin");
    let views = torch::read(&bytes).unwrap();
    let strided: Vec<&TensorView<'_>> = views
        .iter()
        .filter(|v| v.offset != 0 || v.strides != torch::row_major(&v.shape))
        .collect();
    // The fixture has one transposed tensor and two at offsets in a shared storage.
    assert_eq!(strided.len(), 3, "{strided:?}");
    let model = convert::convert(&views, &hyper()).unwrap();
    let total: usize = model.tensors().iter().map(|t| t.len() * 4).sum();
    let strided_bytes: usize = strided.iter().map(|v| v.numel() * 4).sum();
    // Aligned packed f32 tensors at offset 0 are borrowed; the transposed one is gathered.
    assert!(
        model.borrowed_bytes() >= total - strided_bytes,
        "{}",
        model.borrowed_bytes()
    );
    assert!(model.borrowed_bytes() < total);
}

/// A safetensors file with the official names, written from a model's views.
fn official_safetensors(views: &[TensorView<'_>]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for v in views {
        let w = v.to_f32().unwrap();
        let start = data.len();
        data.extend(w.iter().flat_map(|x| x.to_le_bytes()));
        header.insert(
            v.name.clone(),
            serde_json::json!({"dtype": "F32", "shape": v.shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut json = serde_json::to_vec(&header).unwrap();
    // Pad to 0x10280 bytes: the file then starts 0x80 0x02 0x01 like a pickle, and must still
    // be read as safetensors.
    assert!(json.len() < 0x10280);
    json.resize(0x10280, b' ');
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out.extend_from_slice(&data);
    out
}

#[test]
fn safetensors_with_official_names_converts_to_the_same_model() {
    let bytes = fixture("pytorch_model.bin");
    let views = torch::read(&bytes).unwrap();
    let from_bin = convert::convert(&views, &hyper()).unwrap();
    let st = official_safetensors(&views);
    let st_views = convert::read_official(&st).unwrap();
    let from_st = convert::convert(&st_views, &hyper()).unwrap();
    assert_eq!(from_bin.config, from_st.config);
    assert_eq!(from_bin.tensors(), from_st.tensors());
    let diff = max_diff(
        &logprobs(&from_st, &tokens()),
        &expected("pytorch_model.bin"),
    );
    assert!(diff <= TOL, "{diff:e}");
    // Our own checkpoints are recognised, not misread.
    let ours = tokenformer_core::checkpoint::to_bytes(&from_bin, tokenformer_core::DType::F32);
    assert_eq!(
        convert::read_official(&ours).unwrap_err(),
        ConvertError::AlreadyConverted
    );
}

#[test]
fn the_parity_check_catches_a_swapped_tensor() {
    // q and k key tokens have the same shape: only the numbers can tell them apart.
    let bytes = fixture("pytorch_model.bin");
    let views = torch::read(&bytes).unwrap();
    let mut m = convert::convert(&views, &hyper()).unwrap();
    let l0 = &mut m.layers[0];
    std::mem::swap(&mut l0.q.keys, &mut l0.k.keys);
    let diff = max_diff(&logprobs(&m, &tokens()), &expected("pytorch_model.bin"));
    assert!(diff > 1000.0 * TOL, "{diff:e}");
}

#[test]
fn presets_must_match_the_file() {
    let bytes = fixture("pytorch_model.bin");
    let views = torch::read(&bytes).unwrap();
    let preset = Hyper::Preset {
        name: "150m".into(),
        config: tokenformer_core::Config::preset("150m").unwrap(),
    };
    assert!(matches!(
        convert::convert(&views, &preset),
        Err(ConvertError::PresetMismatch {
            field: "n_layers",
            ..
        })
    ));
    // A geometry that small and tiny share: heads 5 does not divide d 64.
    let bad = Hyper::Heads {
        n_heads: 5,
        rotary_pct: 0.25,
        norm: ThetaKind::L2NormGelu,
        tokenizer_vocab: None,
        max_context: 16,
    };
    assert!(matches!(
        convert::convert(&views, &bad),
        Err(ConvertError::Config(_))
    ));
}

// --- malformed inputs ---

fn small() -> Geometry {
    Geometry {
        layers: 2,
        d: 8,
        qkv: 6,
        proj: 5,
        ffn: 12,
        vocab: 16,
    }
}

fn small_hyper() -> Hyper {
    Hyper::Heads {
        n_heads: 2,
        rotary_pct: 0.5,
        norm: ThetaKind::L2NormGelu,
        tokenizer_vocab: None,
        max_context: 16,
    }
}

fn convert_bytes(bytes: &[u8]) -> Result<(), ConvertError> {
    let views = convert::read_official(bytes)?;
    convert::convert(&views, &small_hyper()).map(|_| ())
}

/// Rebuild a zip with one entry's data replaced (CRCs recomputed).
fn replace_entry(bytes: &[u8], name_suffix: &str, f: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let entries = torch::entries(bytes).unwrap();
    let edited: Vec<(String, Vec<u8>)> = entries
        .iter()
        .map(|e| {
            let d = if e.name.ends_with(name_suffix) {
                f(e.data)
            } else {
                e.data.to_vec()
            };
            (e.name.to_string(), d)
        })
        .collect();
    zip(&edited)
}

fn replace_bytes(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let i = hay
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern present");
    [&hay[..i], to, &hay[i + from.len()..]].concat()
}

#[test]
fn the_writer_makes_valid_files() {
    // Guards the malformed cases below: each starts from a file that converts.
    let (e, s) = official(small(), 1);
    convert_bytes(&torch_file(pickle(&e), &s)).unwrap();
}

#[test]
fn truncated_zip_is_refused() {
    let bytes = fixture("pytorch_model.bin");
    for cut in [
        0,
        3,
        100,
        bytes.len() / 2,
        bytes.len() - 23,
        bytes.len() - 1,
    ] {
        let r = torch::read(&bytes[..cut]);
        assert!(matches!(r, Err(TorchError::Zip(_))), "cut {cut}: {r:?}");
    }
    let (e, s) = official(small(), 1);
    let f = torch_file(pickle(&e), &s);
    for cut in 0..f.len() {
        assert!(convert_bytes(&f[..cut]).is_err(), "cut {cut}");
    }
}

#[test]
fn unknown_opcode_is_refused() {
    // INST ('i') after the real pickle's PROTO header: the classic object-building opcode.
    let bytes = fixture("pytorch_model.bin");
    let bad = replace_entry(&bytes, "/data.pkl", |p| [&p[..2], b"i", &p[2..]].concat());
    match torch::read(&bad) {
        Err(TorchError::Pickle(PickleError::UnknownOpcode {
            opcode: b'i',
            offset: 2,
        })) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn foreign_globals_are_refused_without_running_them() {
    let bytes = fixture("pytorch_model.bin");
    let bad = replace_entry(&bytes, "/data.pkl", |p| {
        replace_bytes(p, b"collections\nOrderedDict\n", b"os\nsystem\n")
    });
    match torch::read(&bad) {
        Err(TorchError::Pickle(PickleError::ForbiddenGlobal { module, name, .. })) => {
            assert_eq!((module.as_str(), name.as_str()), ("os", "system"))
        }
        other => panic!("{other:?}"),
    }
    // The textbook payload: os.system("touch ...") — the file must not appear.
    let marker = std::env::temp_dir().join(format!("tokenformer-pwned-{}", std::process::id()));
    let cmd = format!("touch {}", marker.display());
    let mut p = b"\x80\x02cos\nsystem\nX".to_vec();
    p.extend_from_slice(&(cmd.len() as u32).to_le_bytes());
    p.extend_from_slice(cmd.as_bytes());
    p.extend_from_slice(b"\x85R.");
    let f = torch_file(p, &[]);
    assert!(matches!(
        torch::read(&f),
        Err(TorchError::Pickle(PickleError::ForbiddenGlobal { .. }))
    ));
    assert!(!marker.exists());
    for (module, name) in [
        ("builtins", "eval"),
        ("torch", "load"),
        ("torch._utils", "_rebuild_qtensor"),
    ] {
        let p = [
            b"\x80\x02c",
            module.as_bytes(),
            b"\n",
            name.as_bytes(),
            b"\n.",
        ]
        .concat();
        assert!(matches!(
            torch::read(&torch_file(p, &[])),
            Err(TorchError::Pickle(PickleError::ForbiddenGlobal { .. }))
        ));
    }
}

#[test]
fn a_shape_that_disagrees_is_refused() {
    // One value-token matrix of layer 1 with one row fewer than its keys (storage still fits).
    let (mut e, s) = official(small(), 1);
    let i = e
        .iter()
        .position(|t| t.name == "sequential.3.attention.value.value_param_tokens")
        .unwrap();
    e[i].shape[0] -= 1;
    match convert_bytes(&torch_file(pickle(&e), &s)) {
        Err(ConvertError::ShapeMismatch {
            name,
            expected,
            got,
        }) => {
            assert_eq!(name, "sequential.3.attention.value.value_param_tokens");
            assert_eq!((expected, got), (vec![6, 8], vec![5, 8]));
        }
        other => panic!("{other:?}"),
    }
    // A transposed matrix ([d, n] instead of [n, d]) with the same element count.
    let (mut e, s) = official(small(), 1);
    let i = e
        .iter()
        .position(|t| t.name == "sequential.2.mlp.value_param_tokens")
        .unwrap();
    e[i].shape = vec![8, 12];
    e[i].stride = vec![12, 1];
    assert!(matches!(
        convert_bytes(&torch_file(pickle(&e), &s)),
        Err(ConvertError::ShapeMismatch { .. })
    ));
    // q with more tokens than k: the three must agree.
    let g = small();
    let (mut e, mut s) = official(g, 1);
    let i = e
        .iter()
        .position(|t| t.name == "sequential.2.attention.key.key_param_tokens")
        .unwrap();
    e[i].shape[0] += 1;
    e[i].storage_numel += g.d as u64;
    s[i].1.extend_from_slice(&[0u8; 32]);
    match convert_bytes(&torch_file(pickle(&e), &s)) {
        Err(ConvertError::ShapeMismatch { name, .. }) => {
            assert_eq!(name, "sequential.2.attention.key.key_param_tokens")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_storage_shorter_than_its_tensor_is_refused() {
    // The storage holds 10 elements; the tensor's [6, 8] view needs 48.
    let (mut e, mut s) = official(small(), 1);
    let i = e
        .iter()
        .position(|t| t.name.ends_with("proj.key_param_tokens"))
        .unwrap();
    e[i].storage_numel = 10;
    s[i].1.truncate(40);
    match convert_bytes(&torch_file(pickle(&e), &s)) {
        Err(ConvertError::Torch(TorchError::TensorPastStorage { name, needs, has })) => {
            assert_eq!(
                (name.as_str(), needs, has),
                ("sequential.2.attention.proj.key_param_tokens", 40, 10)
            );
        }
        other => panic!("{other:?}"),
    }
    // An offset that pushes the view past the end.
    let (mut e, s) = official(small(), 1);
    e[0].offset = 1;
    assert!(matches!(
        convert_bytes(&torch_file(pickle(&e), &s)),
        Err(ConvertError::Torch(TorchError::TensorPastStorage { .. }))
    ));
    // The storage entry holds fewer bytes than the pickle declares.
    let (e, mut s) = official(small(), 1);
    s[1].1.truncate(12);
    assert!(matches!(
        convert_bytes(&torch_file(pickle(&e), &s)),
        Err(ConvertError::Torch(TorchError::StorageSize { .. }))
    ));
}

#[test]
fn other_malformed_inputs_are_refused() {
    let g = small();
    let ok = || official(g, 1);
    let run = |e: &[torch_writer::Entry], s: &[(String, Vec<u8>)]| {
        convert_bytes(&torch_file(pickle(e), s))
    };

    // A corrupt byte in a storage: the CRC catches it.
    let (e, s) = ok();
    let f = torch_file(pickle(&e), &s);
    let mut bad = f.clone();
    let at = f.windows(4).position(|w| w == &s[3].1[..4]).unwrap();
    bad[at] ^= 0x40;
    assert!(matches!(
        convert_bytes(&bad),
        Err(ConvertError::Torch(TorchError::Zip(ZipError::Crc { .. })))
    ));

    // Missing, stray and non-float tensors.
    let (mut e, s) = ok();
    e.remove(5);
    assert!(matches!(run(&e, &s), Err(ConvertError::MissingTensor(_))));
    let (mut e, s) = ok();
    let mut extra = e[1].clone();
    extra.name = "sequential.2.attention.dense.weight".into();
    e.push(extra);
    assert_eq!(
        run(&e, &s),
        Err(ConvertError::UnknownTensor(
            "sequential.2.attention.dense.weight".into()
        ))
    );
    let (mut e, s) = ok();
    e[2].class = "IntStorage".into();
    assert!(matches!(
        run(&e, &s),
        Err(ConvertError::Torch(TorchError::UnsupportedDtype { .. }))
    ));
    // A layer missing in the middle (indices 2 and 4, no 3).
    let (mut e, s) = ok();
    for t in e.iter_mut() {
        t.name = t.name.replace("sequential.3.", "sequential.4.");
    }
    assert!(
        matches!(run(&e, &s), Err(ConvertError::MissingTensor(n)) if n.starts_with("sequential.3."))
    );
    // A storage the archive lacks.
    let (e, mut s) = ok();
    s[4].0 = "99".into();
    assert!(matches!(
        run(&e, &s),
        Err(ConvertError::Torch(TorchError::MissingStorage { .. }))
    ));
    // Stride 0 views that would expand a 1-element storage into gigabytes.
    let (mut e, s) = ok();
    e[0].shape = vec![1 << 20, 1 << 12];
    e[0].stride = vec![0, 0];
    assert!(matches!(
        run(&e, &s),
        Err(ConvertError::Torch(TorchError::TooManyElements { .. }))
    ));
    // Big-endian files.
    let f = replace_entry(&torch_file(pickle(&ok().0), &ok().1), "byteorder", |_| {
        b"big".to_vec()
    });
    assert!(matches!(
        convert_bytes(&f),
        Err(ConvertError::Torch(TorchError::ByteOrder(_)))
    ));
    // Not a torch file at all, and the legacy pre-zip format.
    assert!(convert_bytes(b"hello world, not a model").is_err());
    assert_eq!(
        convert_bytes(b"\x80\x02\x8a\x0alegacy"),
        Err(ConvertError::Torch(TorchError::Legacy))
    );
}

#[test]
fn a_rotary_buffer_is_accepted_only_when_it_matches() {
    // small(): head_dim 4, rotary 0.5 → 2 rotary dims → inv_freq = [10000^0] = [1.0].
    let with = |value: f32| {
        let (mut e, mut s) = official(small(), 1);
        let mut t = e[e.len() - 1].clone();
        t.name = "sequential.3.attention.rotary_emb.inv_freq".into();
        t.key = "inv".into();
        t.storage_numel = 1;
        t.shape = vec![1];
        t.stride = vec![1];
        e.push(t);
        s.push(("inv".into(), value.to_le_bytes().to_vec()));
        convert_bytes(&torch_file(pickle(&e), &s))
    };
    with(1.0).unwrap();
    assert!(matches!(with(0.5), Err(ConvertError::RotaryBuffer { .. })));
    assert!(matches!(
        with(f32::NAN),
        Err(ConvertError::RotaryBuffer { .. })
    ));
}

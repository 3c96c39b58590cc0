//! Malformed checkpoints are each refused with the expected `LoadError`; round trips in every
//! dtype; aligned f32 loads borrow; sampling invariants.

use serde_json::Value;
use tokenformer_core::checkpoint::{load, to_bytes, MAX_HEADER_BYTES};
use tokenformer_core::init::init;
use tokenformer_core::model::tensor_specs;
use tokenformer_core::{
    Config, ConfigError, DType, LoadError, Model, Sampler, SamplerConfig, Session,
};

fn tiny() -> Config {
    let mut c = Config::preset("tiny").unwrap();
    c.n_layers = 1;
    c.vocab_size = 96;
    c.tokenizer_vocab = 90;
    c
}

fn model() -> Model<'static> {
    init(tiny(), 3).unwrap()
}

/// (header JSON, data bytes) of a valid checkpoint.
fn split(bytes: &[u8]) -> (serde_json::Map<String, Value>, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let json: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (json.as_object().unwrap().clone(), bytes[8 + n..].to_vec())
}

fn join(header: &serde_json::Map<String, Value>, data: &[u8]) -> Vec<u8> {
    let mut json = serde_json::to_vec(header).unwrap();
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out.extend_from_slice(data);
    out
}

/// Edit the header of a valid f32 checkpoint.
fn edited(f: impl FnOnce(&mut serde_json::Map<String, Value>, &mut Vec<u8>)) -> Vec<u8> {
    let (mut h, mut d) = split(&to_bytes(&model(), DType::F32));
    f(&mut h, &mut d);
    join(&h, &d)
}

fn set_config(h: &mut serde_json::Map<String, Value>, f: impl FnOnce(&mut Config)) {
    let meta = h.get_mut("__metadata__").unwrap().as_object_mut().unwrap();
    let mut c: Config = serde_json::from_str(meta["config"].as_str().unwrap()).unwrap();
    f(&mut c);
    meta.insert(
        "config".into(),
        Value::String(serde_json::to_string(&c).unwrap()),
    );
}

#[test]
fn malformed_checkpoints_are_refused() {
    let good = to_bytes(&model(), DType::F32);
    let bias_offsets =
        |h: &serde_json::Map<String, Value>| h["final_norm.bias"]["data_offsets"].clone();
    type Check = fn(&LoadError) -> bool;
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        ("too short", good[..5].to_vec(), |e| {
            matches!(e, LoadError::TooShort { len: 5 })
        }),
        (
            "header past end",
            {
                let mut b = good[..64].to_vec();
                b[..8].copy_from_slice(&100u64.to_le_bytes());
                b
            },
            |e| {
                matches!(
                    e,
                    LoadError::HeaderPastEnd {
                        header_len: 100,
                        ..
                    }
                )
            },
        ),
        (
            "header too large",
            {
                let mut b = good.clone();
                b[..8].copy_from_slice(&(MAX_HEADER_BYTES + 1).to_le_bytes());
                b
            },
            |e| matches!(e, LoadError::HeaderTooLarge { .. }),
        ),
        (
            "invalid json",
            {
                let mut b = good.clone();
                b[8] = b'[';
                b[9] = b'}';
                b
            },
            |e| matches!(e, LoadError::InvalidJson(_)),
        ),
        (
            // Renamed, so the container stays valid (its bytes are still covered).
            "missing tensor",
            edited(|h, _| {
                let t = h.remove("layers.0.ffn.values").unwrap();
                h.insert("layers.0.ffn.valuez".into(), t);
            }),
            |e| matches!(e, LoadError::MissingTensor(n) if n == "layers.0.ffn.values"),
        ),
        (
            "extra tensor",
            edited(|h, d| {
                let end = d.len() as u64;
                d.extend_from_slice(&[0; 8]);
                h.insert("extra".into(), serde_json::json!({"dtype": "F32", "shape": [2], "data_offsets": [end, end + 8]}));
            }),
            |e| matches!(e, LoadError::UnknownTensor(n) if n == "extra"),
        ),
        (
            "dtype I32",
            edited(|h, _| {
                h.get_mut("embedding").unwrap()["dtype"] = "I32".into();
            }),
            |e| matches!(e, LoadError::UnsupportedDtype { name, dtype } if name == "embedding" && dtype == "I32"),
        ),
        (
            "dtype f32 lowercase",
            edited(|h, _| {
                h.get_mut("embedding").unwrap()["dtype"] = "f32".into();
            }),
            |e| matches!(e, LoadError::InvalidJson(m) if m.contains("f32")),
        ),
        (
            "dtype F64, shape halved to the same bytes",
            edited(|h, _| {
                let n = tiny().d_model / 2;
                h.insert("final_norm.bias".into(), serde_json::json!({"dtype": "F64", "shape": [n], "data_offsets": h["final_norm.bias"]["data_offsets"].clone()}));
            }),
            |e| matches!(e, LoadError::UnsupportedDtype { dtype, .. } if dtype == "F64"),
        ),
        (
            "dtype F64, offsets sized for F32",
            edited(|h, _| {
                h.get_mut("final_norm.bias").unwrap()["dtype"] = "F64".into();
            }),
            |e| matches!(e, LoadError::BadOffsets { name, .. } if name == "final_norm.bias"),
        ),
        (
            "wrong shape, same element count",
            edited(|h, _| {
                let c = tiny();
                h.get_mut("embedding").unwrap()["shape"] =
                    serde_json::json!([c.d_model, c.vocab_size]);
            }),
            |e| matches!(e, LoadError::WrongShape { name, .. } if name == "embedding"),
        ),
        (
            "wrong shape and size",
            edited(|h, _| {
                h.get_mut("final_norm.bias").unwrap()["shape"] = serde_json::json!([3]);
            }),
            |e| matches!(e, LoadError::BadOffsets { name, .. } if name == "final_norm.bias"),
        ),
        (
            "offsets out of range",
            edited(|h, d| {
                let len = d.len() as u64;
                let n = 4 * tiny().d_model as u64;
                h.get_mut("final_norm.bias").unwrap()["data_offsets"] =
                    serde_json::json!([len, len + n]);
            }),
            |e| matches!(e, LoadError::BadOffsets { .. }),
        ),
        (
            "offsets reversed",
            edited(|h, _| {
                h.get_mut("final_norm.bias").unwrap()["data_offsets"] = serde_json::json!([8, 0]);
            }),
            |e| matches!(e, LoadError::BadOffsets { name, .. } if name == "final_norm.bias"),
        ),
        (
            "overlapping offsets",
            edited(|h, _| {
                let w = h["final_norm.weight"]["data_offsets"].clone();
                let _ = bias_offsets(h);
                h.get_mut("final_norm.bias").unwrap()["data_offsets"] = w;
            }),
            |e| matches!(e, LoadError::BadOffsets { name, .. } if name.starts_with("final_norm.")),
        ),
        (
            "inconsistent config",
            edited(|h, _| {
                set_config(h, |c| c.n_heads = 3);
            }),
            |e| matches!(e, LoadError::Config(ConfigError::HeadsDoNotDivide { .. })),
        ),
        (
            "config with unknown field",
            edited(|h, _| {
                let meta = h.get_mut("__metadata__").unwrap().as_object_mut().unwrap();
                let mut v: Value = serde_json::from_str(meta["config"].as_str().unwrap()).unwrap();
                v["bogus"] = 1.into();
                meta.insert("config".into(), Value::String(v.to_string()));
            }),
            |e| matches!(e, LoadError::InvalidConfig(_)),
        ),
        (
            "missing config",
            edited(|h, _| {
                h.get_mut("__metadata__")
                    .unwrap()
                    .as_object_mut()
                    .unwrap()
                    .remove("config");
            }),
            |e| matches!(e, LoadError::MissingConfig),
        ),
        (
            "not tokenformer",
            edited(|h, _| {
                h.get_mut("__metadata__").unwrap()["format"] = "pt".into();
            }),
            |e| matches!(e, LoadError::NotTokenFormer),
        ),
        (
            "truncated data",
            good[..good.len() - 4].to_vec(),
            |e| matches!(e, LoadError::DataLength { end, data_len } if *end == data_len + 4),
        ),
        (
            "shape overflow",
            edited(|h, _| {
                h.get_mut("final_norm.bias").unwrap()["shape"] =
                    serde_json::json!([1u64 << 40, 1u64 << 40]);
            }),
            |e| matches!(e, LoadError::ShapeOverflow { name } if name == "final_norm.bias"),
        ),
        (
            "malformed entry",
            edited(|h, _| {
                h.get_mut("final_norm.bias").unwrap()["shape"] = serde_json::json!([-1]);
            }),
            |e| matches!(e, LoadError::InvalidJson(m) if m.contains("-1")),
        ),
    ];
    assert!(load(&good).is_ok());
    for (what, bytes, check) in cases {
        match load(&bytes) {
            Ok(_) => panic!("{what}: accepted"),
            Err(e) => assert!(check(&e), "{what}: unexpected error {e:?} ({e})"),
        }
    }
}

fn logits(m: &Model<'_>) -> Vec<f32> {
    Session::new(m).feed(&[1, 5, 9, 2, 33]).unwrap()
}

#[test]
fn round_trips() {
    let m = model();
    let want = logits(&m);
    for (dtype, tol) in [
        (DType::F32, 0.0f32),
        (DType::F16, 2e-2),
        (DType::BF16, 1e-1),
    ] {
        let bytes = to_bytes(&m, dtype);
        let back = load(&bytes).unwrap();
        assert_eq!(back.config, m.config);
        let got = logits(&back);
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err <= tol, "{dtype:?}: {err}");
        if dtype == DType::F32 {
            assert_eq!(got, want);
            assert_eq!(back.tensors(), m.tensors());
        }
        // The crate keeps metadata in a HashMap; our header is canonical all the same, in
        // memory and through the streamed, atomic file writer.
        assert_eq!(to_bytes(&m, dtype), bytes);
        let path = std::env::temp_dir().join(format!("tf-ckpt-{}-{dtype}", std::process::id()));
        tokenformer_core::file::save(&path, &m, dtype, &[]).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        std::fs::remove_file(&path).unwrap();
    }
    // f32 weights are stored as a float type, nothing else.
    let path = std::env::temp_dir().join(format!("tf-ckpt-{}-q8", std::process::id()));
    assert!(tokenformer_core::file::save(&path, &m, DType::Q8_0, &[]).is_err());
    assert!(!path.exists());
}

#[test]
fn aligned_f32_load_borrows() {
    let m = model();
    let bytes = to_bytes(&m, DType::F32);
    let mut buf = vec![0u64; bytes.len().div_ceil(8)];
    // SAFETY-free copy into an 8-aligned buffer.
    let aligned: &mut [u8] = bytemuck_u8(&mut buf);
    aligned[..bytes.len()].copy_from_slice(&bytes);
    let aligned = &aligned[..bytes.len()];
    assert_eq!(aligned.as_ptr() as usize % 8, 0);
    let back = load(aligned).unwrap();
    let total: usize = tensor_specs(&m.config).iter().map(|s| s.numel() * 4).sum();
    assert_eq!(back.borrowed_bytes(), total);
    assert_eq!(logits(&back), logits(&m));
    // Misaligned by one byte: still loads (copied), same logits.
    let mut shifted = vec![0u8; bytes.len() + 1];
    shifted[1..].copy_from_slice(&bytes);
    let back = load(&shifted[1..]).unwrap();
    assert_eq!(logits(&back), logits(&m));
}

fn bytemuck_u8(buf: &mut [u64]) -> &mut [u8] {
    let len = buf.len() * 8;
    // SAFETY: u8 has no alignment or validity requirements; the length covers exactly `buf`.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), len) }
}

// ---------- sampling ----------

fn sample_logits(seed: u64, n: usize) -> Vec<f32> {
    let mut r = tokenformer_core::Rng::new(seed);
    (0..n).map(|_| (r.normal() * 3.0) as f32).collect()
}

#[test]
fn sampling_never_returns_padded_ids() {
    let configs = [
        SamplerConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
        },
        SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
        },
        SamplerConfig {
            temperature: 5.0,
            top_k: 0,
            top_p: 1.0,
        },
        SamplerConfig::default(),
        SamplerConfig {
            temperature: 1.0,
            top_k: 1,
            top_p: 1.0,
        },
    ];
    for c in configs {
        let mut s = Sampler::new(c, 11);
        for seed in 0..50 {
            let mut l = sample_logits(seed, 64);
            // The padding ids have by far the largest logits.
            for x in &mut l[60..] {
                *x = 1e4;
            }
            let id = s.sample(&l, 60);
            assert!(id < 60, "{c:?}: {id}");
        }
    }
}

#[test]
fn greedy_cases_are_argmax() {
    for seed in 0..50 {
        let l = sample_logits(seed, 40);
        let best = l
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0 as u32;
        for c in [
            SamplerConfig {
                temperature: 0.0,
                top_k: 0,
                top_p: 1.0,
            },
            SamplerConfig {
                temperature: 1.0,
                top_k: 1,
                top_p: 1.0,
            },
            SamplerConfig {
                temperature: 1.0,
                top_k: 0,
                top_p: 1e-6,
            },
            SamplerConfig {
                temperature: 2.0,
                top_k: 10,
                top_p: 0.0,
            },
        ] {
            let mut s = Sampler::new(c, seed);
            assert_eq!(s.sample(&l, 40), best, "{c:?}");
        }
    }
}

#[test]
fn same_seed_same_sequence() {
    let c = SamplerConfig {
        temperature: 1.0,
        top_k: 20,
        top_p: 0.9,
    };
    let run = |seed| {
        let mut s = Sampler::new(c, seed);
        (0..200)
            .map(|i| s.sample(&sample_logits(i, 64), 60))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
    // Temperature sampling actually varies.
    let seq = run(5);
    let mut distinct = seq.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() > 5);
}

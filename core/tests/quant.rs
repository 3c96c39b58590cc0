//! Quantized models: logits close to f32, checkpoints that round-trip and borrow, and malformed
//! quantized files refused with typed errors.

use serde_json::Value;
use tokenformer_core::checkpoint::{load, to_bytes, LoadError, QUANT_KEY};
use tokenformer_core::session::log_softmax;
use tokenformer_core::{init, Config, DType, Matrix, Model, Rng, Session};

/// A small model whose every matrix has whole 32-value rows (so all of it quantizes).
fn small() -> Config {
    let mut c = Config::preset("tiny").unwrap();
    c.d_model = 128;
    c.n_heads = 4;
    c.qkv_tokens = 96;
    c.qkv_scale_tokens = 96;
    c.proj_tokens = 64;
    c.proj_scale_tokens = 64;
    c.ffn_tokens = 256;
    c.ffn_scale_tokens = 256;
    c.vocab_size = 512;
    c.tokenizer_vocab = 512;
    c.n_layers = 4;
    c
}

fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| (rng.next_u64() % vocab as u64) as u32)
        .collect()
}

/// Mean KL(p_f32 ‖ p_quant) over positions and the worst |logit difference| relative to the
/// f32 logits' standard deviation.
fn divergence(a: &Model<'_>, b: &Model<'_>, toks: &[u32]) -> (f64, f64) {
    let la = Session::new(a).feed_all(toks).unwrap();
    let lb = Session::new(b).feed_all(toks).unwrap();
    let (mut kl, mut worst) = (0.0, 0.0f64);
    for t in 0..toks.len() {
        let (pa, pb) = (log_softmax(la.row(t)), log_softmax(lb.row(t)));
        kl += pa
            .iter()
            .zip(&pb)
            .map(|(x, y)| x.exp() * (x - y))
            .sum::<f64>();
        let row = la.row(t);
        let mean = row.iter().map(|&x| x as f64).sum::<f64>() / row.len() as f64;
        let sd =
            (row.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / row.len() as f64).sqrt();
        let d = row
            .iter()
            .zip(lb.row(t))
            .map(|(x, y)| (x - y).abs() as f64)
            .fold(0.0, f64::max);
        worst = worst.max(d / sd);
    }
    (kl / toks.len() as f64, worst)
}

/// Random 4-layer models with the authors' init, f32 vs quantized, over 32 positions × 512 logits.
/// Bounds (observed worst of the three seeds in brackets): Q8_0 mean KL ≤ 1e-4 nats [1.9e-5],
/// worst logit error ≤ 0.25 σ [0.11 σ]; Q4_0 mean KL ≤ 1e-2 [2.6e-3], worst ≤ 2.5 σ [1.3 σ]
/// (σ: the f32 logits' spread at that position).
#[test]
fn quantized_logits_close_to_f32() {
    for seed in [1u64, 2, 3] {
        let m = init::init(small(), seed).unwrap();
        let toks = tokens(32, 512, seed);
        let q8 = m.quantize(DType::Q8_0, DType::Q8_0).unwrap();
        let q4 = m.quantize(DType::Q4_0, DType::Q4_0).unwrap();
        let (kl8, w8) = divergence(&m, &q8, &toks);
        let (kl4, w4) = divergence(&m, &q4, &toks);
        println!("seed {seed}: q8_0 KL {kl8:.2e} worst {w8:.3}σ; q4_0 KL {kl4:.2e} worst {w4:.3}σ");
        assert!(kl8 <= 1e-4 && w8 <= 0.25, "q8_0: KL {kl8}, worst {w8}σ");
        assert!(kl4 <= 1e-2 && w4 <= 2.5, "q4_0: KL {kl4}, worst {w4}σ");
        assert!(kl8 < kl4);
        // Every matrix was quantized, values transposed (the decode layout).
        assert!(q4
            .layers
            .iter()
            .all(|l| matches!(l.ffn.values, Matrix::Q4_0(_))));
        assert!(matches!(q8.embedding, Matrix::Q8_0(_)));
    }
}

/// The quantized session against an f32 session over the dequantized weights: what remains is
/// the Q8_0 rounding of the activations (and the kernels), smaller than the weights' rounding.
#[test]
fn quantized_session_matches_its_dequantized_weights() {
    let m = init::init(small(), 7).unwrap();
    let toks = tokens(16, 512, 7);
    for f in [DType::Q8_0, DType::Q4_0] {
        let q = m.quantize(f, f).unwrap();
        let deq = Model::from_tensors(
            q.config.clone(),
            q.tensors_f32()
                .into_iter()
                .map(std::borrow::Cow::Owned)
                .collect(),
        )
        .unwrap();
        let (kl_act, w_act) = divergence(&deq, &q, &toks);
        let (kl_all, w_all) = divergence(&m, &q, &toks);
        println!(
            "{f}: activations only KL {kl_act:.2e} worst {w_act:.3}σ; all {kl_all:.2e} {w_all:.3}σ"
        );
        assert!(kl_act <= 2e-5 && w_act <= 0.15, "{f}: {kl_act} {w_act}");
    }
}

/// Decoding token by token with the KV cache gives the same logits as one block, quantized too.
#[test]
fn quantized_kv_cache_matches_block() {
    let m = init::init(small(), 4).unwrap();
    let toks = tokens(12, 512, 4);
    for f in [DType::Q8_0, DType::Q4_0] {
        let q = m.quantize(f, f).unwrap();
        let full = Session::new(&q).feed_all(&toks).unwrap();
        let mut s = Session::new(&q);
        let mut last = Vec::new();
        for &t in &toks {
            last = s.feed(&[t]).unwrap();
        }
        let want = full.row(toks.len() - 1);
        let err = last
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err <= 1e-4, "{f}: {err}");
    }
}

/// Dims that are not whole blocks (the tiny preset's 48 q/k/v tokens) keep those matrices f32.
#[test]
fn partial_blocks_stay_f32() {
    let m = init::init(Config::preset("tiny").unwrap(), 1).unwrap();
    let q = m.quantize(DType::Q4_0, DType::Q8_0).unwrap();
    let l = &q.layers[0];
    assert!(
        matches!(l.q.keys, Matrix::Q4_0(_)),
        "keys rows are d = 64 long"
    );
    assert!(
        matches!(l.q.values, Matrix::F32(_)),
        "transposed values rows are n = 48 long"
    );
    assert!(matches!(l.ffn.values, Matrix::Q4_0(_)), "ffn n = 96");
    let (kl, _) = divergence(&m, &q, &tokens(8, 500, 1));
    assert!(kl <= 1e-2, "{kl}");
    assert!(
        q.quantize(DType::Q8_0, DType::Q8_0).is_err(),
        "already quantized"
    );
}

fn aligned(bytes: &[u8]) -> Vec<u64> {
    let mut buf = vec![0u64; bytes.len().div_ceil(8)];
    for (i, b) in bytes.iter().enumerate() {
        buf[i / 8] |= (*b as u64) << (8 * (i % 8));
    }
    buf
}

fn as_bytes(buf: &[u64], len: usize) -> &[u8] {
    // SAFETY: u64 → u8 view of initialised memory, length within the buffer.
    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) }
}

#[test]
fn quantized_checkpoints_round_trip_and_borrow() {
    let m = init::init(small(), 5).unwrap();
    for f in [DType::Q8_0, DType::Q4_0] {
        let q = m.quantize(f, DType::Q8_0).unwrap();
        let bytes = to_bytes(&q, DType::F32);
        let f32_size = to_bytes(&m, DType::F32).len();
        println!("{f}: {} bytes vs {} f32", bytes.len(), f32_size);
        let buf = aligned(&bytes);
        let back = load(as_bytes(&buf, bytes.len())).unwrap();
        assert_eq!(back.tensors(), q.tensors());
        assert_eq!(
            back.borrowed_bytes(),
            q.weight_bytes(),
            "every tensor borrowed"
        );
        let toks = tokens(5, 512, 9);
        assert_eq!(
            Session::new(&back).feed(&toks).unwrap(),
            Session::new(&q).feed(&toks).unwrap()
        );
        // Misaligned by one byte: still loads (blocks copied), same weights.
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&bytes);
        let back = load(&shifted[1..]).unwrap();
        assert_eq!(back.tensors(), q.tensors());
    }
}

fn split(bytes: &[u8]) -> (serde_json::Map<String, Value>, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let h: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (h.as_object().unwrap().clone(), bytes[8 + n..].to_vec())
}

fn join(h: &serde_json::Map<String, Value>, data: &[u8]) -> Vec<u8> {
    let j = serde_json::to_vec(h).unwrap();
    let mut out = (j.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&j);
    out.extend_from_slice(data);
    out
}

fn quant_meta(
    h: &mut serde_json::Map<String, Value>,
    f: impl FnOnce(&mut serde_json::Map<String, Value>),
) {
    let meta = h["__metadata__"].as_object_mut().unwrap();
    let mut q: serde_json::Map<String, Value> =
        serde_json::from_str(meta[QUANT_KEY].as_str().unwrap()).unwrap();
    f(&mut q);
    meta.insert(
        QUANT_KEY.into(),
        Value::String(serde_json::to_string(&q).unwrap()),
    );
}

#[test]
fn malformed_quantized_checkpoints_are_refused() {
    let m = init::init(small(), 6).unwrap();
    let q = m.quantize(DType::Q8_0, DType::Q8_0).unwrap();
    let bytes = to_bytes(&q, DType::F32);
    let edited = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let (mut h, data) = split(&bytes);
        f(&mut h);
        load(&join(&h, &data)).map(|_| ()).unwrap_err()
    };
    let bad_quant = |e: LoadError, name: &str| match e {
        LoadError::BadQuant { name: n, .. } => assert_eq!(n, name),
        other => panic!("expected BadQuant for {name}, got {other:?}"),
    };
    bad_quant(
        edited(&|h| quant_meta(h, |q| q["layers.0.q.keys"]["format"] = "q5_1".into())),
        "layers.0.q.keys",
    );
    bad_quant(
        edited(&|h| quant_meta(h, |q| q["layers.0.q.values"]["transposed"] = false.into())),
        "layers.0.q.values",
    );
    bad_quant(
        edited(&|h| {
            quant_meta(h, |q| {
                q.insert("layers.99.q.keys".into(), q["layers.0.q.keys"].clone());
            })
        }),
        "layers.99.q.keys",
    );
    bad_quant(
        edited(&|h| {
            h["__metadata__"][QUANT_KEY] = "not json".into();
        }),
        QUANT_KEY,
    );
    // The U8 data of a quantized tensor read as a plain tensor: refused by dtype.
    assert!(matches!(
        edited(&|h| quant_meta(h, |q| {
            q.remove("layers.0.k.keys");
        })),
        LoadError::WrongShape { .. } | LoadError::UnsupportedDtype { .. }
    ));
    // Logical shape that disagrees with the config.
    assert!(matches!(
        edited(&|h| quant_meta(h, |q| q["layers.0.o.keys"]["shape"] =
            serde_json::json!([32, 128]))),
        LoadError::WrongShape { .. }
    ));
    // Stored shape that disagrees with the format (q4_0 bytes per row, q8_0 declared).
    assert!(matches!(
        edited(&|h| h["layers.0.o.keys"]["shape"] = serde_json::json!([64, 72])),
        LoadError::BadOffsets { .. } | LoadError::WrongShape { .. }
    ));
    // Quantized norms are refused.
    let mut meta_norm = bytes.clone();
    {
        let (mut h, data) = split(&meta_norm);
        quant_meta(&mut h, |q| {
            q.insert(
                "final_norm.weight".into(),
                serde_json::json!({"format": "q8_0", "shape": [128]}),
            );
        });
        meta_norm = join(&h, &data);
    }
    assert!(load(&meta_norm).is_err());
}

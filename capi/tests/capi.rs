//! The C API through the same functions the header declares: null pointers, bad UTF-8, buffer
//! sizes, errors, greedy decoding against the Rust session, threads sharing one model, and a
//! streaming decoder that never splits a UTF-8 character.

use std::ffi::{c_char, CStr, CString};
use std::ptr::{null, null_mut};
use tokenformer::*;
use tokenformer_core::file::ModelFile;
use tokenformer_core::sample::argmax;
use tokenformer_core::Session;

const MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../cli/assets/shakespeare-q8_0.safetensors"
);
const TOKENIZER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../cli/assets/tokenizer.json");

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn last_error() -> String {
    // SAFETY: the library returns a valid NUL-terminated string.
    unsafe { CStr::from_ptr(tf_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn model() -> *mut TfModel {
    let mut m = null_mut();
    assert_eq!(
        tf_model_load_file(cstr(MODEL).as_ptr(), &mut m),
        TfStatus::TfOk,
        "{}",
        last_error()
    );
    m
}

fn tokenizer() -> *mut TfTokenizer {
    let mut t = null_mut();
    let s = tf_tokenizer_load_file(cstr(TOKENIZER).as_ptr(), &mut t);
    assert_eq!(s, TfStatus::TfOk, "{}", last_error());
    t
}

fn tokenize(t: *const TfTokenizer, text: &str) -> Vec<u32> {
    let c = cstr(text);
    let mut n = 0;
    let mut ids = vec![0u32; 64];
    assert_eq!(
        tf_tokenize(t, c.as_ptr(), ids.as_mut_ptr(), ids.len(), &mut n),
        TfStatus::TfOk
    );
    ids.truncate(n);
    ids
}

#[test]
fn versions() {
    assert_eq!(tf_abi_version(), TF_ABI_VERSION);
    assert_eq!(tf_checkpoint_format_version(), TF_CHECKPOINT_FORMAT_VERSION);
}

#[test]
fn null_pointers_are_errors() {
    let mut m = null_mut();
    assert_eq!(tf_model_load_file(null(), &mut m), TfStatus::TfErrNull);
    assert!(last_error().contains("NULL"), "{}", last_error());
    assert_eq!(
        tf_model_load_file(cstr(MODEL).as_ptr(), null_mut()),
        TfStatus::TfErrNull
    );
    assert_eq!(tf_model_load_bytes(null(), 10, &mut m), TfStatus::TfErrNull);
    assert_eq!(tf_session_new(null(), &mut null_mut()), TfStatus::TfErrNull);
    assert_eq!(
        tf_session_feed(null_mut(), [1u32].as_ptr(), 1, null_mut(), 0),
        TfStatus::TfErrNull
    );
    assert_eq!(tf_session_sample(null_mut(), &mut 0), TfStatus::TfErrNull);
    assert_eq!(
        tf_session_next(null_mut(), &mut 0, &mut false),
        TfStatus::TfErrNull
    );
    assert_eq!(tf_session_reset(null_mut()), TfStatus::TfErrNull);
    assert_eq!(
        tf_tokenize(null(), cstr("a").as_ptr(), null_mut(), 0, &mut 0),
        TfStatus::TfErrNull
    );
    assert_eq!(
        tf_detokenize(null(), null(), 0, null_mut(), 0, &mut 0),
        TfStatus::TfErrNull
    );
    assert_eq!(tf_decoder_new(null(), &mut null_mut()), TfStatus::TfErrNull);
    assert_eq!(tf_model_sizes(null(), &mut 0, &mut 0), TfStatus::TfErrNull);
    // Every free accepts NULL.
    tf_model_free(null_mut());
    tf_tokenizer_free(null_mut());
    tf_session_free(null_mut());
    tf_decoder_free(null_mut());

    let m = model();
    let mut s = null_mut();
    assert_eq!(tf_session_new(m, &mut s), TfStatus::TfOk);
    assert_eq!(
        tf_session_feed(s, null(), 3, null_mut(), 0),
        TfStatus::TfErrNull
    );
    assert_eq!(tf_session_sample(s, null_mut()), TfStatus::TfErrNull);
    assert_eq!(tf_session_set_sampling(s, null()), TfStatus::TfErrNull);
    tf_session_free(s);
    tf_model_free(m);
}

#[test]
fn bad_utf8_and_bad_inputs_are_errors() {
    let bad = [b'a', 0xff, 0xfe, 0];
    let bad = bad.as_ptr() as *const c_char;
    let mut m = null_mut();
    assert_eq!(tf_model_load_file(bad, &mut m), TfStatus::TfErrUtf8);
    assert!(m.is_null());
    let t = tokenizer();
    assert_eq!(
        tf_tokenize(t, bad, null_mut(), 0, &mut 0),
        TfStatus::TfErrUtf8
    );
    assert!(last_error().contains("UTF-8"), "{}", last_error());

    assert_eq!(
        tf_model_load_file(cstr("/no/such/model").as_ptr(), &mut m),
        TfStatus::TfErrIo
    );
    assert!(last_error().contains("/no/such/model"), "{}", last_error());
    let garbage = [7u8; 100];
    assert_eq!(
        tf_model_load_bytes(garbage.as_ptr(), garbage.len(), &mut m),
        TfStatus::TfErrModel
    );
    let mut tt = null_mut();
    assert_eq!(
        tf_tokenizer_load_bytes(garbage.as_ptr(), 100, &mut tt),
        TfStatus::TfErrTokenizer
    );

    let m = model();
    let (mut vocab, mut ctx) = (0, 0);
    assert_eq!(tf_model_sizes(m, &mut vocab, &mut ctx), TfStatus::TfOk);
    let mut s = null_mut();
    assert_eq!(tf_session_new(m, &mut s), TfStatus::TfOk);
    assert_eq!(tf_session_sample(s, &mut 0), TfStatus::TfErrNoLogits);
    let out_of_range = [vocab as u32];
    assert_eq!(
        tf_session_feed(s, out_of_range.as_ptr(), 1, null_mut(), 0),
        TfStatus::TfErrSession
    );
    assert_eq!(
        tf_session_feed(s, out_of_range.as_ptr(), 0, null_mut(), 0),
        TfStatus::TfErrSession
    );
    let hot = TfSampling {
        temperature: f32::NAN,
        top_k: 0,
        top_p: 1.0,
        seed: 0,
    };
    assert_eq!(tf_session_set_sampling(s, &hot), TfStatus::TfErrArgument);
    let wide = TfSampling {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.5,
        seed: 0,
    };
    assert_eq!(tf_session_set_sampling(s, &wide), TfStatus::TfErrArgument);
    // Logits into a buffer too small: the length needed is not silently truncated.
    let mut small = [0f32; 4];
    let st = tf_session_feed(s, [1u32].as_ptr(), 1, small.as_mut_ptr(), small.len());
    assert_eq!(st, TfStatus::TfErrBufferTooSmall);
    tf_session_free(s);
    tf_model_free(m);
    tf_tokenizer_free(t);
}

#[test]
fn tokenize_detokenize_round_trip_and_sizes() {
    let t = tokenizer();
    let text = "ROMEO: But, soft! what light through yonder window breaks?";
    let c = cstr(text);
    let mut n = 0;
    assert_eq!(
        tf_tokenize(t, c.as_ptr(), null_mut(), 0, &mut n),
        TfStatus::TfErrBufferTooSmall
    );
    let mut ids = vec![0u32; n];
    assert_eq!(
        tf_tokenize(t, c.as_ptr(), ids.as_mut_ptr(), n, &mut n),
        TfStatus::TfOk
    );
    let mut len = 0;
    assert_eq!(
        tf_detokenize(t, ids.as_ptr(), n, null_mut(), 0, &mut len),
        TfStatus::TfErrBufferTooSmall
    );
    assert_eq!(len, text.len());
    let mut buf = vec![0 as c_char; len + 1];
    assert_eq!(
        tf_detokenize(t, ids.as_ptr(), n, buf.as_mut_ptr(), buf.len(), &mut len),
        TfStatus::TfOk
    );
    // SAFETY: NUL-terminated by the library.
    assert_eq!(
        unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap(),
        text
    );
    let mut eot = 0;
    assert_eq!(tf_tokenizer_eot(t, &mut eot), TfStatus::TfOk);
    tf_tokenizer_free(t);
}

#[test]
fn streamed_text_never_splits_a_character() {
    let t = tokenizer();
    // Characters the byte-level BPE splits across tokens.
    let text = "Ô Roméo — 天 ✓ 🌹 end";
    let ids = tokenize(t, text);
    let mut d = null_mut();
    assert_eq!(tf_decoder_new(t, &mut d), TfStatus::TfOk);
    tf_tokenizer_free(t); // the decoder keeps the tokenizer alive
    let mut all = String::new();
    let mut held = 0;
    for &id in &ids {
        let mut buf = [0 as c_char; 64];
        let mut len = 0;
        assert_eq!(
            tf_decoder_push(d, id, buf.as_mut_ptr(), buf.len(), &mut len),
            TfStatus::TfOk
        );
        // Each piece is valid UTF-8 by itself.
        let piece = unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_str()
            .expect("a whole character");
        assert_eq!(piece.len(), len);
        held += usize::from(len == 0);
        all.push_str(piece);
    }
    assert_eq!(all, text);
    assert!(
        held > 0,
        "no character was split across tokens: the test checks nothing"
    );
    tf_decoder_free(d);
}

/// Greedy ids through the C API, `n` tokens after `prompt`.
fn greedy(m: *const TfModel, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut s = null_mut();
    assert_eq!(tf_session_new(m, &mut s), TfStatus::TfOk);
    assert_eq!(
        tf_session_feed(s, prompt.as_ptr(), prompt.len(), null_mut(), 0),
        TfStatus::TfOk
    );
    let mut got = Vec::new();
    for _ in 0..n {
        let (mut id, mut stop) = (0, false);
        assert_eq!(
            tf_session_next(s, &mut id, &mut stop),
            TfStatus::TfOk,
            "{}",
            last_error()
        );
        assert!(!stop);
        got.push(id);
    }
    tf_session_free(s);
    got
}

#[test]
fn greedy_matches_the_rust_session_and_logits_are_copied() {
    let mf = ModelFile::open(MODEL).unwrap();
    let model = mf.model().unwrap();
    let prompt = [5u32, 6, 7];
    let mut rs = Session::new(&model);
    let mut logits = rs.feed(&prompt).unwrap();
    let mut want = Vec::new();
    for _ in 0..12 {
        let id = argmax(&logits[..model.config.tokenizer_vocab]) as u32;
        want.push(id);
        logits = rs.feed(&[id]).unwrap();
    }
    // Loaded from bytes this time: the copy is aligned, the result the same.
    let bytes = std::fs::read(MODEL).unwrap();
    let mut m = null_mut();
    assert_eq!(
        tf_model_load_bytes(bytes.as_ptr(), bytes.len(), &mut m),
        TfStatus::TfOk
    );
    drop(bytes);
    assert_eq!(greedy(m, &prompt, 12), want);

    let mut s = null_mut();
    assert_eq!(tf_session_new(m, &mut s), TfStatus::TfOk);
    let mut got = vec![0f32; model.config.vocab_size];
    let st = tf_session_feed(s, prompt.as_ptr(), 3, got.as_mut_ptr(), got.len());
    assert_eq!(st, TfStatus::TfOk);
    let mut rs = Session::new(&model);
    assert_eq!(got, rs.feed(&prompt).unwrap());
    // Reset: the same prompt gives the same logits again.
    assert_eq!(tf_session_reset(s), TfStatus::TfOk);
    let mut again = vec![0f32; got.len()];
    tf_session_feed(s, prompt.as_ptr(), 3, again.as_mut_ptr(), again.len());
    assert_eq!(again, got);
    tf_session_free(s);
    tf_model_free(m);
}

#[test]
fn stop_ids_and_seeded_sampling() {
    let m = model();
    let prompt = [5u32, 6, 7];
    // The stop id: the first greedy id, from the third on, not seen before it, so the ids before
    // it must all come out and the stop must end the loop there.
    let first = greedy(m, &prompt, 12);
    let at = (2..first.len())
        .find(|&i| !first[..i].contains(&first[i]))
        .expect("a new id among the first 12 greedy ids");
    let mut s = null_mut();
    assert_eq!(tf_session_new(m, &mut s), TfStatus::TfOk);
    tf_session_set_stop_ids(s, &first[at], 1);
    tf_session_feed(s, prompt.as_ptr(), 3, null_mut(), 0);
    let mut seen = Vec::new();
    loop {
        let (mut id, mut stop) = (0, false);
        assert_eq!(tf_session_next(s, &mut id, &mut stop), TfStatus::TfOk);
        if stop {
            assert_eq!(id, first[at]);
            break;
        }
        seen.push(id);
    }
    assert_eq!(seen, first[..at]);

    let sampled = |seed| {
        let sampling = TfSampling {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed,
        };
        tf_session_reset(s);
        tf_session_set_stop_ids(s, null(), 0);
        tf_session_set_sampling(s, &sampling);
        tf_session_feed(s, prompt.as_ptr(), 3, null_mut(), 0);
        (0..16)
            .map(|_| {
                let (mut id, mut stop) = (0, false);
                assert_eq!(tf_session_next(s, &mut id, &mut stop), TfStatus::TfOk);
                id
            })
            .collect::<Vec<u32>>()
    };
    let a = sampled(9);
    assert_eq!(a, sampled(9));
    assert_ne!(a, sampled(10));
    tf_session_free(s);
    tf_model_free(m);
}

#[test]
fn generation_goes_past_the_context() {
    let m = model();
    let (mut vocab, mut ctx) = (0, 0);
    tf_model_sizes(m, &mut vocab, &mut ctx);
    let got = greedy(m, &[1, 2, 3], ctx + 40);
    assert_eq!(got.len(), ctx + 40);
    tf_model_free(m);
}

#[test]
fn threads_share_one_model() {
    assert_eq!(tf_set_threads(2), TfStatus::TfOk);
    let m = model();
    let want = greedy(m, &[10, 11, 12], 8);
    let shared = m as usize;
    let handles: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || greedy(shared as *const TfModel, &[10, 11, 12], 8)))
        .collect();
    // Each thread's session holds the weights only once created: join before freeing `m`.
    for h in handles {
        assert_eq!(h.join().unwrap(), want);
    }
    // Sessions outlive the model handle.
    let mut s = null_mut();
    assert_eq!(tf_session_new(m, &mut s), TfStatus::TfOk);
    tf_model_free(m);
    assert_eq!(
        tf_session_feed(s, [1u32].as_ptr(), 1, null_mut(), 0),
        TfStatus::TfOk
    );
    tf_session_free(s);
}

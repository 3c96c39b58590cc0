//! The firmware's model (`models/tiny-q8_0.safetensors`): every byte of its header flipped in
//! turn gives a typed error or a model that loads and decodes, never a panic; the intact file
//! borrows every weight.

use tokenformer_core::{checkpoint, Session};

fn tiny() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/tiny-q8_0.safetensors"
    );
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// 16-aligned copy, as the firmware embeds it.
fn aligned(bytes: &[u8]) -> Vec<u128> {
    let mut buf = vec![0u128; bytes.len().div_ceil(16)];
    // SAFETY: buf holds at least bytes.len() bytes; u128 has no invalid bit patterns.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), bytes.len()) }
        .copy_from_slice(bytes);
    buf
}

fn view(buf: &[u128], len: usize) -> &[u8] {
    // SAFETY: the first len bytes were written by `aligned`.
    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) }
}

#[test]
fn intact_model_borrows_every_weight() {
    let bytes = tiny();
    let buf = aligned(&bytes);
    let model = checkpoint::load(view(&buf, bytes.len())).unwrap();
    assert_eq!(model.borrowed_bytes(), model.weight_bytes());
    assert_eq!(model.config.max_context, 128);
}

#[test]
fn every_header_byte_flipped_is_an_error_or_a_valid_load() {
    let bytes = tiny();
    let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let (mut errors, mut loads) = (0, 0);
    for i in 0..header {
        for mask in [0xff, 0x01] {
            let mut b = bytes.clone();
            b[i] ^= mask;
            let buf = aligned(&b);
            match checkpoint::load(view(&buf, b.len())) {
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    errors += 1;
                }
                Ok(model) => {
                    // A flip the format tolerates (JSON whitespace, a metadata value that
                    // still parses): the model must still run.
                    let mut s = Session::new(&model);
                    let logits = s.feed(&[1, 2, 3]).unwrap();
                    assert_eq!(logits.len(), model.config.vocab_size);
                    loads += 1;
                }
            }
        }
    }
    println!("{header} header bytes × 2 flips: {errors} errors, {loads} valid loads");
    assert!(errors > header, "most flips must be caught");
}

/// A prompt block's rows split across threads (the products, Θ and attention) give the same
/// logits, bit for bit, as one thread, for the Q8_0 model and its f32 twin; then one decode step.
#[test]
fn prompt_block_does_not_depend_on_threads() {
    let bytes = tiny();
    let buf = aligned(&bytes);
    let q8 = checkpoint::load(view(&buf, bytes.len())).unwrap();
    let f32_twin = tokenformer_core::Model::from_tensors(
        q8.config.clone(),
        q8.tensors_f32()
            .into_iter()
            .map(std::borrow::Cow::Owned)
            .collect(),
    )
    .unwrap();
    let tokens: Vec<u32> = (0..37).map(|i| (i * 37 + 5) % 400).collect();
    for model in [&q8, &f32_twin] {
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut s = Session::new(model);
                let block = s.feed_all(&tokens).unwrap();
                (block.data, s.feed(&[7]).unwrap())
            })
        };
        assert_eq!(run(1), run(3), "{}", model.embedding.format());
    }
}

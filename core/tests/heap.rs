//! `Session::bytes_needed` is an upper bound on the heap a session holds: a counting global
//! allocator measures the live bytes of loading a model and decoding to its full context, for
//! the tiny firmware config and variants, with prompts fed in blocks of several lengths.
//! One `#[test]` only: the counters are global to this test binary.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{live, peak_during};
use tokenformer_core::checkpoint;
use tokenformer_core::{init::init, Config, DType, Session, ThetaKind};

/// The firmware's tiny model (`models/tiny-config.json`).
fn tiny() -> Config {
    Config {
        n_layers: 2,
        d_model: 128,
        n_heads: 2,
        qkv_tokens: 128,
        proj_tokens: 128,
        ffn_tokens: 512,
        qkv_scale_tokens: 128,
        proj_scale_tokens: 128,
        ffn_scale_tokens: 512,
        rotary_pct: 0.25,
        rotary_base: 10000.0,
        norm: ThetaKind::L2NormGelu,
        vocab_size: 512,
        tokenizer_vocab: 512,
        max_context: 128,
        layer_norm_eps: 1e-5,
    }
}

/// Checkpoint bytes copied into 16-aligned memory, as the firmware embeds them.
fn aligned(bytes: &[u8]) -> Vec<u128> {
    let mut buf = vec![0u128; bytes.len().div_ceil(16)];
    // SAFETY: buf holds at least bytes.len() bytes and u128 has no invalid bit patterns.
    let dst = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), bytes.len()) };
    dst.copy_from_slice(bytes);
    buf
}

fn as_bytes(buf: &[u128], len: usize) -> &[u8] {
    // SAFETY: the first len bytes of buf were written by `aligned`.
    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) }
}

/// Load, then feed the prompt in blocks of `block` and decode single tokens to the full
/// context, keeping the previous logits as a greedy loop does. Returns (load peak, session
/// peak, header length), peaks in bytes above the file's own bytes.
fn measure(file: &[u8], context: usize, block: usize) -> (usize, usize, usize) {
    let header = 8 + u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    let before = live();
    let (model, load_peak) = peak_during(|| checkpoint::load(file).unwrap());
    assert_eq!(
        model.borrowed_bytes(),
        model.weight_bytes(),
        "weights must be borrowed"
    );
    // The model's own allocations (layer tables, rotary frequencies) count towards the bound.
    let model_bytes = live() - before;
    let vocab = model.config.vocab_size as u32;
    let prompt: Vec<u32> = (0..block as u32).map(|i| (i * 37 + 1) % vocab).collect();
    let ((), run_peak) = peak_during(|| {
        let mut s = Session::with_context(&model, context);
        let mut logits = s.feed(&prompt).unwrap();
        while s.position() < context {
            let next = tokenformer_core::sample::argmax(&logits) as u32;
            logits = s.feed(&[next]).unwrap();
        }
        let cfg = &model.config;
        assert_eq!(
            s.cache().bytes(),
            2 * cfg.n_layers * context * cfg.d_model * 4
        );
    });
    (load_peak, model_bytes + run_peak, header)
}

#[test]
fn bytes_needed_bounds_a_session_and_is_tight() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let mut wider = tiny();
    wider.ffn_tokens = 1024;
    wider.ffn_scale_tokens = 1024;
    wider.n_layers = 3;
    let mut big_vocab = tiny();
    big_vocab.vocab_size = 2048;
    big_vocab.tokenizer_vocab = 2048;
    big_vocab.max_context = 64;
    pool.install(|| {
        // std builds' prompt blocks run attention through the gemm crate, which keeps a packing
        // slab of the L2 cache's size per thread (2 MB on a Xeon), allocated on first use and
        // held for the thread's life: the thread's, not the session's, and absent from the
        // no_std build this bound is for. Allocate it before anything is measured.
        let warm = init(tiny(), 7)
            .unwrap()
            .quantize(DType::Q8_0, DType::Q8_0)
            .unwrap();
        let bytes = checkpoint::to_bytes(&warm, DType::F32);
        let buf = aligned(&bytes);
        measure(as_bytes(&buf, bytes.len()), 16, 8);
        for (name, cfg) in [("tiny", tiny()), ("wider", wider), ("big vocab", big_vocab)] {
            for (fmt, label) in [(DType::Q8_0, "q8_0"), (DType::Q4_0, "q4_0")] {
                let model = init(cfg.clone(), 7).unwrap().quantize(fmt, fmt).unwrap();
                let bytes = checkpoint::to_bytes(&model, DType::F32);
                drop(model);
                let buf = aligned(&bytes);
                let file = as_bytes(&buf, bytes.len());
                for context in [cfg.max_context, cfg.max_context / 2] {
                    let need = Session::bytes_needed(&cfg, context);
                    for block in [1, 7, context / 2, context] {
                        let (load, run, header) = measure(file, context, block);
                        println!(
                            "{name} {label} context {context} block {block}: session peak {run} \
                             of {need} bytes ({:.0} %), load peak {load} (header {header})",
                            100.0 * run as f64 / need as f64
                        );
                        assert!(
                            run <= need,
                            "{name} {label} ctx {context} block {block}: {run} > {need}"
                        );
                        assert!(load <= 8 * header, "load {load} > 8 × header {header}");
                    }
                    // Tight: a full-context prompt block uses most of the bound.
                    let (_, run, _) = measure(file, context, context);
                    assert!(
                        run * 4 >= need * 3,
                        "{name}: bound {need} is loose for {run}"
                    );
                }
            }
        }
    });
}

//! The page's generation loop against a plain KV-cache loop written here (feed the prompt,
//! argmax, feed each id back): same ids, and it ends where the CLI's does, at a full context.

use tokenformer_core::sample::argmax;
use tokenformer_core::{checkpoint, SamplerConfig, Session};
use tokenformer_web::generator::Generator;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn model_bytes() -> Vec<u8> {
    std::fs::read(format!("{ROOT}/models/tiny-q8_0.safetensors")).unwrap()
}

const GREEDY: SamplerConfig = SamplerConfig {
    temperature: 0.0,
    top_k: 40,
    top_p: 0.95,
};

#[test]
fn greedy_ids_are_the_reference_loops() {
    let bytes = model_bytes();
    let model = checkpoint::load(&bytes).unwrap();
    let prompt = [50, 47, 45, 37, 47, 26, 199, 473, 368, 356];
    let vocab = model.config.tokenizer_vocab;
    let mut session = Session::new(&model);
    let mut logits = session.feed(&prompt).unwrap();
    let mut want = Vec::new();
    for _ in 0..40 {
        let id = argmax(&logits[..vocab]) as u32;
        want.push(id);
        logits = session.feed(&[id]).unwrap();
    }
    let mut g = Generator::start(&model, &prompt, GREEDY, 7).unwrap();
    let got: Vec<u32> = (0..40).map(|_| g.next_id().unwrap().unwrap()).collect();
    assert_eq!(got, want);
}

#[test]
fn stops_at_a_full_context_and_errs_past_it() {
    let bytes = model_bytes();
    let model = checkpoint::load(&bytes).unwrap();
    let c = model.config.max_context;
    // As the CLI: the last id drawn is the one that would be fed at position `c`.
    let mut g = Generator::start(&model, &vec![1; c - 2], GREEDY, 0).unwrap();
    let mut n = 0;
    while g.next_id().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 3);
    assert_eq!(g.next_id().unwrap(), None);
    assert!(Generator::start(&model, &vec![1; c + 1], GREEDY, 0).is_err());
    assert!(Generator::start(&model, &[], GREEDY, 0).is_err());
    let past = model.config.vocab_size as u32;
    assert!(Generator::start(&model, &[past], GREEDY, 0).is_err());
}

#[test]
fn sampling_repeats_with_its_seed() {
    let bytes = model_bytes();
    let model = checkpoint::load(&bytes).unwrap();
    let warm = SamplerConfig {
        temperature: 1.0,
        ..GREEDY
    };
    let run = |seed| {
        let mut g = Generator::start(&model, &[50, 47], warm, seed).unwrap();
        (0..30)
            .map(|_| g.next_id().unwrap().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(3), run(3));
    assert_ne!(run(3), run(4));
}

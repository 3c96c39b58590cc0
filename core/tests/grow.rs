//! Growth: zero keys with the scale kept leave every logit unchanged (proptest); the authors'
//! random growth changes them. That a grown model trains on is in train/tests/training.rs.

use proptest::prelude::*;
use tokenformer_core::grow::{grow, Init, Scale, Targets};
use tokenformer_core::init::init;
use tokenformer_core::{Config, Rng, Session, ThetaKind};

fn cfg(layers: usize, heads: usize, nq: usize, np: usize, nf: usize, norm: ThetaKind) -> Config {
    Config {
        n_layers: layers,
        d_model: heads * 8,
        n_heads: heads,
        qkv_tokens: nq,
        proj_tokens: np,
        ffn_tokens: nf,
        qkv_scale_tokens: nq,
        proj_scale_tokens: np,
        ffn_scale_tokens: nf,
        rotary_pct: 0.25,
        rotary_base: 10000.0,
        norm,
        vocab_size: 50,
        tokenizer_vocab: 50,
        max_context: 64,
        layer_norm_eps: 1e-5,
    }
}

/// Logits of the whole prompt fed as one block (f32 products through `gemm`).
fn logits(m: &tokenformer_core::Model<'_>, tokens: &[u32]) -> Vec<f32> {
    Session::new(m).feed_all(tokens).unwrap().data
}

/// Logits of the last token, the prompt fed one token at a time (row-dot kernels).
fn decode_logits(m: &tokenformer_core::Model<'_>, tokens: &[u32]) -> Vec<f32> {
    let mut s = Session::new(m);
    let mut out = Vec::new();
    for &t in tokens {
        out = s.feed_all(&[t]).unwrap().data;
    }
    out
}

fn max_rel(a: &[f32], b: &[f32]) -> f64 {
    let scale = b.iter().fold(1.0f64, |m, v| m.max(v.abs() as f64));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() as f64)
        .fold(0.0, f64::max)
        / scale
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// The grown model computes the same sums with extra exact zeros. Decoding token by token,
    /// the row-dot kernels add them in a fixed order: within 1e-6 of the largest logit (in
    /// practice bit-identical). A prompt block goes through `gemm`, whose blocking depends on
    /// the key count, so the scores are rounded differently: up to 1.05e-6 measured, bound 1e-5.
    #[test]
    fn zero_growth_with_kept_scale_preserves_logits(
        layers in 1usize..3, heads in 1usize..3, nq in 1usize..10, np in 1usize..10, nf in 1usize..20,
        add in (0usize..12, 0usize..12, 0usize..24), gelu_first in any::<bool>(), seed in 0u64..1000,
    ) {
        let norm = if gelu_first { ThetaKind::GeluL2Norm } else { ThetaKind::L2NormGelu };
        let m = init(cfg(layers, heads, nq, np, nf, norm), seed).unwrap();
        let t = Targets { qkv: Some(nq + add.0), proj: Some(np + add.1), ffn: Some(nf + add.2) };
        let g = grow(&m, t, Init::Zero, Scale::Keep, seed + 1).unwrap();
        prop_assert_eq!(g.config.ffn_tokens, nf + add.2);
        prop_assert_eq!(g.config.ffn_scale_tokens, nf);
        let mut rng = Rng::new(seed);
        let tokens: Vec<u32> = (0..20).map(|_| rng.below(50) as u32).collect();
        let err = max_rel(&decode_logits(&g, &tokens), &decode_logits(&m, &tokens));
        prop_assert!(err <= 1e-6, "relative logit change, decoding {err:e}");
        let err = max_rel(&logits(&g, &tokens), &logits(&m, &tokens));
        prop_assert!(err <= 1e-5, "relative logit change, prompt block {err:e}");
    }
}

#[test]
fn random_growth_changes_logits_and_old_rows_are_copied() {
    let m = init(cfg(2, 2, 8, 8, 16, ThetaKind::L2NormGelu), 1).unwrap();
    let t = Targets {
        qkv: Some(12),
        proj: Some(12),
        ffn: Some(24),
    };
    let tokens: Vec<u32> = (0..16).map(|i| (i * 7 % 50) as u32).collect();
    for (init_kind, scale) in [
        (Init::Random, Scale::New),
        (Init::Zero, Scale::New),
        (Init::Random, Scale::Keep),
    ] {
        let g = grow(&m, t, init_kind, scale, 2).unwrap();
        let err = max_rel(&logits(&g, &tokens), &logits(&m, &tokens));
        assert!(
            err > 1e-4,
            "{init_kind:?}/{scale:?} left the logits unchanged ({err:e})"
        );
        let (old, new) = (m.layers[1].ffn.keys.to_f32(), g.layers[1].ffn.keys.to_f32());
        assert_eq!(&new[..old.len()], &old[..]);
    }
}

#[test]
fn growth_refuses_to_shrink() {
    let m = init(cfg(1, 1, 8, 8, 16, ThetaKind::L2NormGelu), 1).unwrap();
    let e = grow(
        &m,
        Targets {
            ffn: Some(8),
            ..Default::default()
        },
        Init::Zero,
        Scale::Keep,
        0,
    )
    .unwrap_err();
    assert!(e.to_string().contains("only appends"), "{e}");
}

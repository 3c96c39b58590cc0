//! Model configuration: sizes, presets, validation, parameter and FLOP counts.
//!
//! One `Config` describes a TokenFormer language model completely; it travels inside every
//! checkpoint as JSON (see `checkpoint`), so a file is self-describing.

use alloc::string::String;
use core::fmt;
use serde::{Deserialize, Serialize};

/// The modified softmax Θ that Pattention applies to each row of scores (spec: "Θ variants").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThetaKind {
    /// GELU(a / ‖a‖₂ · √n): the released models' choice.
    L2NormGelu,
    /// g / ‖g‖₂ · √n with g = GELU(a).
    GeluL2Norm,
    /// exp(a) / Σ exp(a) · n.
    Softmax,
}

impl ThetaKind {
    /// Every variant, in the order of the spec.
    pub const ALL: [ThetaKind; 3] = [
        ThetaKind::L2NormGelu,
        ThetaKind::GeluL2Norm,
        ThetaKind::Softmax,
    ];

    /// The name used in config JSON and on the command line (`l2_norm_gelu`, …).
    pub fn name(self) -> &'static str {
        match self {
            ThetaKind::L2NormGelu => "l2_norm_gelu",
            ThetaKind::GeluL2Norm => "gelu_l2_norm",
            ThetaKind::Softmax => "softmax",
        }
    }

    /// The variant of a [`ThetaKind::name`], or `None` for an unknown name.
    pub fn parse(s: &str) -> Option<ThetaKind> {
        ThetaKind::ALL.into_iter().find(|n| n.name() == s)
    }
}

impl fmt::Display for ThetaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The three kinds of Pattention in a layer; q, k and v share one token count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PattentionKind {
    /// Each of the q, k and v projections (`qkv_tokens`).
    Qkv,
    /// The attention output projection (`proj_tokens`).
    Proj,
    /// The feed-forward Pattention (`ffn_tokens`).
    Ffn,
}

/// A complete TokenFormer model description.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Transformer layers.
    pub n_layers: usize,
    /// Width of the residual stream (channels per token).
    pub d_model: usize,
    /// Attention heads; must divide `d_model` (head_dim = d_model / n_heads).
    pub n_heads: usize,
    /// Parameter tokens of each of the q, k and v Pattentions.
    pub qkv_tokens: usize,
    /// Parameter tokens of the output projection Pattention.
    pub proj_tokens: usize,
    /// Parameter tokens of the FFN Pattention.
    pub ffn_tokens: usize,
    /// Token count whose square root scales the q/k/v scores (equals `qkv_tokens` unless the
    /// model was grown with the scale kept).
    pub qkv_scale_tokens: usize,
    /// Token count whose square root scales the output projection's scores (see
    /// `qkv_scale_tokens`).
    pub proj_scale_tokens: usize,
    /// Token count whose square root scales the FFN's scores (see `qkv_scale_tokens`).
    pub ffn_scale_tokens: usize,
    /// Fraction of each head's dims that rotary embedding rotates (GPT-NeoX: 0.25).
    pub rotary_pct: f32,
    /// Base of the rotary frequencies (10,000 in the released models); must be > 1.
    pub rotary_base: f32,
    /// The Θ normalisation of every Pattention's scores.
    pub norm: ThetaKind,
    /// Rows of the (tied) embedding, padded for speed: 50,304 in the released models.
    pub vocab_size: usize,
    /// Ids the tokenizer can produce: 50,277 in the released models. Sampling stays below it.
    pub tokenizer_vocab: usize,
    /// Longest sequence the model is meant for; the KV cache never grows past it.
    pub max_context: usize,
    /// ε of every LayerNorm (1e-5 in the released models); must be > 0.
    pub layer_norm_eps: f32,
}

/// Why a configuration was refused. Each variant names the field at fault.
#[derive(Clone, Debug, PartialEq)]
pub enum ConfigError {
    /// A size field that must be positive is 0.
    Zero(&'static str),
    /// `n_heads` does not divide `d_model`.
    HeadsDoNotDivide {
        /// The model width.
        d_model: usize,
        /// The head count.
        n_heads: usize,
    },
    /// `rotary_pct` of the head dimension is an odd number of dims (rotation works on pairs).
    OddRotaryDims {
        /// Channels per head.
        head_dim: usize,
        /// The rotated fraction.
        rotary_pct: f32,
        /// floor(head_dim · rotary_pct).
        rotary_dims: usize,
    },
    /// A float field that is not finite or out of its range (`rotary_pct` in [0, 1], `rotary_base`
    /// > 1, `layer_norm_eps` > 0).
    BadFloat {
        /// The field.
        field: &'static str,
        /// Its value.
        value: f32,
    },
    /// `tokenizer_vocab` is larger than the embedding's `vocab_size`.
    TokenizerVocabTooLarge {
        /// Ids the tokenizer produces.
        tokenizer_vocab: usize,
        /// Rows of the embedding.
        vocab_size: usize,
    },
    /// A size (the field named, the parameter count or the KV cache) past the limits: 2^24 per
    /// dimension, 2^40 elements in all.
    TooLarge(&'static str),
    /// [`Config::preset`] was given a name it does not know.
    UnknownPreset(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Zero(field) => write!(f, "config field `{field}` must be positive"),
            ConfigError::HeadsDoNotDivide { d_model, n_heads } => {
                write!(f, "d_model {d_model} is not divisible by n_heads {n_heads}")
            }
            ConfigError::OddRotaryDims {
                head_dim,
                rotary_pct,
                rotary_dims,
            } => write!(
                f,
                "rotary_pct {rotary_pct} of head_dim {head_dim} gives {rotary_dims} rotary dims; \
                 GPT-NeoX rotary needs an even count"
            ),
            ConfigError::BadFloat { field, value } => {
                write!(f, "config field `{field}` has invalid value {value}")
            }
            ConfigError::TokenizerVocabTooLarge {
                tokenizer_vocab,
                vocab_size,
            } => write!(
                f,
                "tokenizer_vocab {tokenizer_vocab} exceeds the embedding's vocab_size {vocab_size}"
            ),
            ConfigError::TooLarge(what) => write!(f, "config is too large: {what} overflows"),
            ConfigError::UnknownPreset(p) => {
                write!(
                    f,
                    "unknown preset `{p}` (expected one of: {})",
                    Config::PRESETS.join(", ")
                )
            }
        }
    }
}

/// Largest dimension a config may name: keeps every size product far from overflow and every
/// allocation bounded (2^24 ≈ 16.7M rows or columns).
const MAX_DIM: usize = 1 << 24;
/// Largest parameter count or KV-cache element count a config may imply (2^40, about 1.1T):
/// past every real model, and small enough that byte sizes fit in u64 with room to spare.
const MAX_ELEMENTS: u64 = 1 << 40;

impl Config {
    /// The names [`Config::preset`] accepts.
    pub const PRESETS: [&'static str; 5] = ["tiny", "150m", "450m", "900m", "1.5b"];

    /// The released geometry: GPT-NeoX vocabulary, context 2048, rotary 25 %, l2_norm_gelu.
    pub(crate) fn released(n_layers: usize, d: usize, n_heads: usize, ffn: usize) -> Config {
        Config {
            n_layers,
            d_model: d,
            n_heads,
            qkv_tokens: d,
            proj_tokens: d,
            ffn_tokens: ffn,
            qkv_scale_tokens: d,
            proj_scale_tokens: d,
            ffn_scale_tokens: ffn,
            rotary_pct: 0.25,
            rotary_base: 10000.0,
            norm: ThetaKind::L2NormGelu,
            vocab_size: 50304,
            tokenizer_vocab: 50277,
            max_context: 2048,
            layer_norm_eps: 1e-5,
        }
    }

    /// Presets by name: `tiny` (tests), `150m`, `450m`, `900m`, `1.5b` (the released sizes).
    pub fn preset(name: &str) -> Result<Config, ConfigError> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "tiny" => Config {
                qkv_tokens: 48,
                proj_tokens: 40,
                qkv_scale_tokens: 48,
                proj_scale_tokens: 40,
                vocab_size: 512,
                tokenizer_vocab: 500,
                max_context: 256,
                ..Config::released(2, 64, 4, 96)
            },
            "150m" => Config::released(12, 768, 12, 3072),
            "450m" => Config::released(24, 1024, 16, 4096),
            "900m" => Config::released(32, 1280, 16, 5120),
            "1.5b" => Config::released(40, 1536, 16, 6144),
            _ => return Err(ConfigError::UnknownPreset(name.into())),
        })
    }

    /// Check every field: sizes positive and bounded, heads dividing `d_model`, an even rotary dim
    /// count, floats finite and in range, `tokenizer_vocab <= vocab_size`, parameter and KV-cache
    /// counts that fit. Loading and [`crate::init::init`] call it; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("n_layers", self.n_layers),
            ("d_model", self.d_model),
            ("n_heads", self.n_heads),
            ("qkv_tokens", self.qkv_tokens),
            ("proj_tokens", self.proj_tokens),
            ("ffn_tokens", self.ffn_tokens),
            ("qkv_scale_tokens", self.qkv_scale_tokens),
            ("proj_scale_tokens", self.proj_scale_tokens),
            ("ffn_scale_tokens", self.ffn_scale_tokens),
            ("vocab_size", self.vocab_size),
            ("tokenizer_vocab", self.tokenizer_vocab),
            ("max_context", self.max_context),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(ConfigError::Zero(field));
            }
            if v > MAX_DIM {
                return Err(ConfigError::TooLarge(field));
            }
        }
        if !self.d_model.is_multiple_of(self.n_heads) {
            return Err(ConfigError::HeadsDoNotDivide {
                d_model: self.d_model,
                n_heads: self.n_heads,
            });
        }
        for (field, value, ok) in [
            (
                "rotary_pct",
                self.rotary_pct,
                (0.0..=1.0).contains(&self.rotary_pct),
            ),
            ("rotary_base", self.rotary_base, self.rotary_base > 1.0),
            (
                "layer_norm_eps",
                self.layer_norm_eps,
                self.layer_norm_eps > 0.0,
            ),
        ] {
            if !(value.is_finite() && ok) {
                return Err(ConfigError::BadFloat { field, value });
            }
        }
        let rot = self.rotary_dims();
        if !rot.is_multiple_of(2) {
            return Err(ConfigError::OddRotaryDims {
                head_dim: self.head_dim(),
                rotary_pct: self.rotary_pct,
                rotary_dims: rot,
            });
        }
        if self.tokenizer_vocab > self.vocab_size {
            return Err(ConfigError::TokenizerVocabTooLarge {
                tokenizer_vocab: self.tokenizer_vocab,
                vocab_size: self.vocab_size,
            });
        }
        // Every tensor's element count and the total must fit comfortably in usize and u64 bytes.
        self.checked_params()
            .filter(|&n| n as u64 <= MAX_ELEMENTS)
            .ok_or(ConfigError::TooLarge("parameter count"))?;
        self.max_context
            .checked_mul(self.d_model)
            .and_then(|x| x.checked_mul(2 * self.n_layers))
            .filter(|&n| n as u64 <= MAX_ELEMENTS)
            .ok_or(ConfigError::TooLarge("KV cache size"))?;
        Ok(())
    }

    /// Channels per attention head: `d_model / n_heads`.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }

    /// floor(head_dim · rotary_pct), computed as GPT-NeoX does.
    pub fn rotary_dims(&self) -> usize {
        (self.head_dim() as f64 * self.rotary_pct as f64) as usize
    }

    /// Parameter tokens (n) of each Pattention of `kind`.
    pub fn tokens(&self, kind: PattentionKind) -> usize {
        match kind {
            PattentionKind::Qkv => self.qkv_tokens,
            PattentionKind::Proj => self.proj_tokens,
            PattentionKind::Ffn => self.ffn_tokens,
        }
    }

    /// The token count whose √ scales the scores of `kind` (equal to [`Config::tokens`] unless
    /// the model was grown with [`crate::grow::Scale::Keep`]).
    pub fn scale_tokens(&self, kind: PattentionKind) -> usize {
        match kind {
            PattentionKind::Qkv => self.qkv_scale_tokens,
            PattentionKind::Proj => self.proj_scale_tokens,
            PattentionKind::Ffn => self.ffn_scale_tokens,
        }
    }

    /// Parameters by kind, summed over the tensors of [`crate::layout`] (None on overflow).
    fn checked_breakdown(&self) -> Option<ParamBreakdown> {
        use crate::layout::{layer_roles, Role};
        let mut b = ParamBreakdown {
            embedding: Role::Embedding.numel(self)?,
            qkv: 0,
            proj: 0,
            ffn: 0,
            norms: Role::FinalNormWeight
                .numel(self)?
                .checked_add(Role::FinalNormBias.numel(self)?)?,
        };
        // Every layer has the same tensors: count one, times the layers.
        for r in layer_roles(0) {
            let (Role::Keys(_, p) | Role::Values(_, p)) = r else {
                continue;
            };
            let slot = match p.kind() {
                PattentionKind::Qkv => &mut b.qkv,
                PattentionKind::Proj => &mut b.proj,
                PattentionKind::Ffn => &mut b.ffn,
            };
            *slot = slot.checked_add(r.numel(self)?.checked_mul(self.n_layers)?)?;
        }
        b.checked_total().map(|_| b)
    }

    fn checked_params(&self) -> Option<usize> {
        self.checked_breakdown()?.checked_total()
    }

    /// vocab·d + L·2d·(3·n_qkv + n_proj + n_ffn) + 2d (the spec's count; tied output head).
    pub fn param_count(&self) -> usize {
        self.checked_params().unwrap_or(usize::MAX)
    }

    /// Parameters by kind, in the order (embedding, q/k/v, proj, ffn, norms); zeros for a config
    /// whose count overflows (which `validate` refuses).
    pub fn param_breakdown(&self) -> ParamBreakdown {
        self.checked_breakdown().unwrap_or_default()
    }

    /// Forward FLOPs for one token at `context` tokens of history, by the paper's cost model:
    /// token-parameter 2·N (every parameter one multiply-add; the tied embedding counted once, as
    /// the logits product) and token-token 4·L·d·T (QKᵀ and attention·V).
    pub fn flops_per_token(&self, context: usize) -> Flops {
        Flops {
            token_parameter: 2 * self.param_count() as u64,
            token_token: 4 * (self.n_layers * self.d_model) as u64 * context as u64,
        }
    }
}

/// Parameter counts by kind (see [`Config::param_breakdown`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParamBreakdown {
    /// The tied embedding: vocab_size · d_model.
    pub embedding: usize,
    /// Keys and values of every q, k and v Pattention, all layers.
    pub qkv: usize,
    /// Keys and values of every output projection, all layers.
    pub proj: usize,
    /// Keys and values of every FFN Pattention, all layers.
    pub ffn: usize,
    /// The final LayerNorm's weight and bias.
    pub norms: usize,
}

impl ParamBreakdown {
    /// The sum (`usize::MAX` on overflow).
    pub fn total(&self) -> usize {
        self.checked_total().unwrap_or(usize::MAX)
    }

    fn checked_total(&self) -> Option<usize> {
        [self.qkv, self.proj, self.ffn, self.norms]
            .into_iter()
            .try_fold(self.embedding, usize::checked_add)
    }
}

/// Forward FLOPs of one token (see [`Config::flops_per_token`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flops {
    /// Token-parameter FLOPs: 2 per parameter.
    pub token_parameter: u64,
    /// Token-token FLOPs (attention over the context): 4 · n_layers · d_model · context.
    pub token_token: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_parameter_counts_match_the_spec() {
        // The spec's table: 151.9M, 454.2M, 903.3M, 1587.2M; 150M exactly as the issue states.
        assert_eq!(Config::preset("150m").unwrap().param_count(), 151_881_216);
        for (name, millions) in [
            ("150m", 151.9),
            ("450m", 454.2),
            ("900m", 903.3),
            ("1.5b", 1587.2),
        ] {
            let c = Config::preset(name).unwrap();
            c.validate().unwrap();
            let n = c.param_count();
            assert_eq!(c.param_breakdown().total(), n, "{name}");
            assert_eq!((n as f64 / 1e5).round() / 10.0, millions, "{name}");
        }
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = Config::preset("tiny").unwrap();
        c.n_heads = 5;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::HeadsDoNotDivide { .. })
        ));
        let mut c = Config::preset("tiny").unwrap();
        c.ffn_tokens = 0;
        assert_eq!(c.validate(), Err(ConfigError::Zero("ffn_tokens")));
        let mut c = Config::preset("tiny").unwrap();
        c.tokenizer_vocab = c.vocab_size + 1;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::TokenizerVocabTooLarge { .. })
        ));
        let mut c = Config::preset("tiny").unwrap();
        c.d_model = 12;
        c.n_heads = 1; // rotary dims = 3: odd
        assert!(matches!(
            c.validate(),
            Err(ConfigError::OddRotaryDims { .. })
        ));
        let mut c = Config::preset("tiny").unwrap();
        c.d_model = MAX_DIM;
        c.n_layers = MAX_DIM;
        c.n_heads = 1;
        assert!(matches!(c.validate(), Err(ConfigError::TooLarge(_))));
        assert!(matches!(
            Config::preset("7b"),
            Err(ConfigError::UnknownPreset(_))
        ));
    }
}

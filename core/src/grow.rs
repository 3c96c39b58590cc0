//! Progressive scaling: append parameter tokens to Pattentions, copying every old row exactly
//! (spec: "Progressive scaling").
//!
//! - `Init::Random` + `Scale::New` is the authors' method: new keys and values drawn as at
//!   initialisation, and √n uses the new token count, so every old score is rescaled.
//! - `Init::Zero` + `Scale::Keep`: new keys are zero (GELU(0) = 0, and zeros leave ‖a‖
//!   unchanged), new values drawn as at init, and the scale keeps the old token count: every
//!   output of the L2-normalised variants is unchanged. (Under `softmax`, exp(0) = 1 is not zero,
//!   so zero keys still shift probability mass: no growth is exact there.)

use crate::config::{Config, PattentionKind};
use crate::init::{fill_normal, value_std, EMBED_STD};
use crate::model::{tensor_specs, Model, ModelError, Role};
use crate::sample::Rng;
use alloc::borrow::Cow;
use core::fmt;

/// How the appended key tokens start (new value tokens are always drawn as at init).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// Drawn as at initialisation, N(0, 0.02): the authors' method.
    Random,
    /// Zero: with [`Scale::Keep`], every output of the L2-normalised Θ is unchanged.
    Zero,
}

/// Which token count the √n scale of a grown Pattention uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// The new count (the authors' code): every old score is rescaled.
    New,
    /// The old count (`Config::*_scale_tokens` keep it), so old scores are unchanged.
    Keep,
}

/// Target token counts (None leaves a kind as it is).
#[derive(Clone, Copy, Debug, Default)]
pub struct Targets {
    /// New token count of each q, k and v Pattention.
    pub qkv: Option<usize>,
    /// New token count of each output projection.
    pub proj: Option<usize>,
    /// New token count of each FFN Pattention.
    pub ffn: Option<usize>,
}

/// Why a model could not be grown.
#[derive(Debug, Clone, PartialEq)]
pub enum GrowError {
    /// A target smaller than the current count: growth only appends.
    Shrink {
        /// `qkv`, `proj` or `ffn`.
        kind: &'static str,
        /// The current token count.
        from: usize,
        /// The target.
        to: usize,
    },
    /// The grown config or tensors are invalid (e.g. a count past the config limits).
    Model(ModelError),
}

impl fmt::Display for GrowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrowError::Shrink { kind, from, to } => write!(
                f,
                "cannot grow {kind} tokens from {from} to {to}: growth only appends tokens"
            ),
            GrowError::Model(e) => write!(f, "{e}"),
        }
    }
}

/// The grown model: every Pattention of the kinds `t` names gets its new token count, every old
/// row copied exactly; `init` and `scale` choose how (see the module docs) and `seed` draws the
/// new rows. The value σ for new rows is the one the *original* config's init used (it depends
/// on layers and d, which growth does not change). The input may be f32 or quantized (it is
/// dequantized); the result is f32 and owned.
///
/// Errors: [`GrowError::Shrink`] for a target below the current count, [`GrowError::Model`] when
/// the grown config does not validate.
pub fn grow(
    model: &Model<'_>,
    t: Targets,
    init: Init,
    scale: Scale,
    seed: u64,
) -> Result<Model<'static>, GrowError> {
    let old = &model.config;
    let mut cfg: Config = old.clone();
    for (kind, name, target) in [
        (PattentionKind::Qkv, "qkv", t.qkv),
        (PattentionKind::Proj, "proj", t.proj),
        (PattentionKind::Ffn, "ffn", t.ffn),
    ] {
        let from = old.tokens(kind);
        let to = target.unwrap_or(from);
        if to < from {
            return Err(GrowError::Shrink {
                kind: name,
                from,
                to,
            });
        }
        let (n, s) = match kind {
            PattentionKind::Qkv => (&mut cfg.qkv_tokens, &mut cfg.qkv_scale_tokens),
            PattentionKind::Proj => (&mut cfg.proj_tokens, &mut cfg.proj_scale_tokens),
            PattentionKind::Ffn => (&mut cfg.ffn_tokens, &mut cfg.ffn_scale_tokens),
        };
        *n = to;
        if scale == Scale::New {
            *s = to;
        }
    }
    cfg.validate()
        .map_err(|e| GrowError::Model(ModelError::Config(e)))?;
    let mut rng = Rng::new(seed);
    let vstd = value_std(old);
    let d = old.d_model;
    let tensors = model
        .tensors_f32()
        .into_iter()
        .zip(tensor_specs(&cfg))
        .map(|(w, spec)| {
            let mut v = w;
            let extra = spec.numel() - v.len();
            match spec.role {
                Role::Keys(..) => match init {
                    Init::Random => fill_normal(&mut rng, EMBED_STD, &mut v, extra),
                    Init::Zero => v.resize(v.len() + extra, 0.0),
                },
                Role::Values(..) => fill_normal(&mut rng, vstd, &mut v, extra),
                _ => {}
            }
            debug_assert_eq!(v.len() % d, 0);
            Cow::Owned(v)
        })
        .collect();
    Model::from_tensors(cfg, tensors).map_err(GrowError::Model)
}

//! `grow`: append parameter tokens to every Pattention of the chosen kinds.

use crate::common;
use std::path::PathBuf;
use tokenformer_core::grow::{grow, Init, Scale, Targets};
use tokenformer_core::{DType, ThetaKind};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// New token count of each q, k and v Pattention.
    #[arg(long)]
    qkv_tokens: Option<usize>,
    #[arg(long)]
    proj_tokens: Option<usize>,
    #[arg(long)]
    ffn_tokens: Option<usize>,
    /// New keys: `random` (as at init, the authors' code) or `zero` (function-preserving).
    #[arg(long, default_value = "zero")]
    init: String,
    /// √n scale: `new` (the new token count, the authors' code) or `keep` (the old one).
    #[arg(long, default_value = "keep")]
    scale: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(a: Args) -> Result<(), String> {
    let init = match a.init.as_str() {
        "random" => Init::Random,
        "zero" => Init::Zero,
        o => return Err(format!("--init must be random or zero, got `{o}`")),
    };
    let scale = match a.scale.as_str() {
        "new" => Scale::New,
        "keep" => Scale::Keep,
        o => return Err(format!("--scale must be new or keep, got `{o}`")),
    };
    if a.qkv_tokens.is_none() && a.proj_tokens.is_none() && a.ffn_tokens.is_none() {
        return Err("give at least one of --qkv-tokens, --proj-tokens, --ffn-tokens".into());
    }
    let mf = common::open_model(&a.model)?;
    let model = mf.model().map_err(|e| e.to_string())?;
    let targets = Targets {
        qkv: a.qkv_tokens,
        proj: a.proj_tokens,
        ffn: a.ffn_tokens,
    };
    let grown = grow(&model, targets, init, scale, a.seed).map_err(|e| e.to_string())?;
    if model.config.norm == ThetaKind::Softmax && init == Init::Zero && scale == Scale::Keep {
        eprintln!("note: under the softmax normalisation zero keys still take probability mass, so this growth is not exactly function-preserving");
    }
    common::save(&a.out, &grown, DType::F32, &[])?;
    let c = &grown.config;
    eprintln!(
        "wrote {}: tokens q/k/v {} (scale {}), proj {} (scale {}), ffn {} (scale {}); {} parameters (was {})",
        a.out.display(),
        c.qkv_tokens,
        c.qkv_scale_tokens,
        c.proj_tokens,
        c.proj_scale_tokens,
        c.ffn_tokens,
        c.ffn_scale_tokens,
        c.param_count(),
        model.config.param_count()
    );
    Ok(())
}

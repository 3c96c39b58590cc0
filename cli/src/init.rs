//! `init`: a fresh model from a preset, saved atomically.

use crate::common;
use std::path::PathBuf;
use tokenformer_core::{init, Config, DType};

#[derive(clap::Args)]
pub struct Args {
    /// Preset size: tiny, 150m, 450m, 900m, 1.5b.
    #[arg(long)]
    preset: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output checkpoint (.safetensors).
    #[arg(long)]
    out: PathBuf,
    /// Storage type: f32, f16 or bf16.
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    dtype: DType,
}

pub fn parse_dtype(s: &str) -> Result<DType, String> {
    DType::parse(s)
        .filter(|&d| tokenformer_core::checkpoint::container::is_float(d))
        .ok_or_else(|| format!("unknown dtype `{s}` (expected f32, f16 or bf16)"))
}

pub fn run(a: Args) -> Result<(), String> {
    let config = Config::preset(&a.preset).map_err(|e| e.to_string())?;
    let model = init::init(config, a.seed).map_err(|e| e.to_string())?;
    let seed = a.seed.to_string();
    common::save(
        &a.out,
        &model,
        a.dtype,
        &[("seed", &seed), ("preset", &a.preset)],
    )?;
    eprintln!(
        "wrote {} ({} parameters, {})",
        a.out.display(),
        model.config.param_count(),
        a.dtype.name()
    );
    Ok(())
}

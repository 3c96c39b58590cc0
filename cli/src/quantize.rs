//! `quantize`: rewrite a checkpoint with its parameter tokens in Q8_0 or Q4_0.

use crate::common;
use std::path::PathBuf;
use tokenformer_core::formats::WEIGHT_FORMATS;
use tokenformer_core::DType;

#[derive(clap::Args)]
pub struct Args {
    /// Input checkpoint (f32, f16 or bf16).
    #[arg(long)]
    model: PathBuf,
    /// Output checkpoint.
    #[arg(long)]
    out: PathBuf,
    /// Block format of the key and value parameter tokens: q8_0 or q4_0.
    #[arg(long, value_parser = parse_format)]
    format: DType,
    /// Format of the (tied) embedding: q8_0, q4_0 or f32 (default: same as --format). It is
    /// read whole by every token's logits, so it weighs on decode speed like the layers.
    #[arg(long, value_parser = parse_any_format)]
    embedding: Option<DType>,
}

fn parse_any_format(s: &str) -> Result<DType, String> {
    DType::parse(s)
        .filter(|f| WEIGHT_FORMATS.contains(f))
        .ok_or_else(|| format!("unknown format `{s}` (expected q8_0, q4_0 or f32)"))
}

fn parse_format(s: &str) -> Result<DType, String> {
    parse_any_format(s)
        .ok()
        .filter(|f| f.is_block())
        .ok_or_else(|| format!("unknown format `{s}` (expected q8_0 or q4_0)"))
}

pub fn run(a: Args) -> Result<(), String> {
    let mf = common::open_model(&a.model)?;
    let model = mf.model().map_err(|e| e.to_string())?;
    let emb = a.embedding.unwrap_or(a.format);
    let q = model
        .quantize(a.format, emb)
        .map_err(|e| format!("{}: {e}", a.model.display()))?;
    let kept = q
        .tensors()
        .iter()
        .filter(|m| m.format() == DType::F32)
        .count()
        - 2; // the final norm's weight and bias always stay f32
    let from = a.model.display().to_string();
    common::save(&a.out, &q, DType::F32, &[("quantized_from", &from)])?;
    let size = std::fs::metadata(&a.out).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "wrote {} ({}: layers {}, embedding {}; {:.1} MB{})",
        a.out.display(),
        a.format,
        a.format,
        emb,
        size as f64 / 1e6,
        if kept > 0 {
            format!("; {kept} matrices kept f32: rows not whole 32-value blocks")
        } else {
            String::new()
        }
    );
    Ok(())
}

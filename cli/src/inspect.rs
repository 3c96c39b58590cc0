//! `inspect`: config, parameter counts by kind, bytes on disk, FLOPs per token.

use crate::common;
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint to inspect.
    file: PathBuf,
    /// Context length for the token-token FLOPs (default: the model's max context).
    #[arg(long)]
    context: Option<usize>,
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<(), String> {
    let mf = common::open_model(&a.file)?;
    let model = mf.model().map_err(|e| e.to_string())?;
    let cfg = &model.config;
    let b = cfg.param_breakdown();
    let context = a.context.unwrap_or(cfg.max_context);
    let fl = cfg.flops_per_token(context);
    let file_bytes = mf.bytes().len();
    if a.json {
        let v = json!({
            "config": cfg,
            "params": cfg.param_count(),
            "params_by_kind": {
                "embedding": b.embedding, "qkv": b.qkv, "proj": b.proj, "ffn": b.ffn, "norms": b.norms,
            },
            "file_bytes": file_bytes,
            "context": context,
            "flops_per_token": { "token_parameter": fl.token_parameter, "token_token": fl.token_token },
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    println!("file: {} ({file_bytes} bytes)", a.file.display());
    println!("config:");
    let cv = serde_json::to_value(cfg).map_err(|e| e.to_string())?;
    if let Some(obj) = cv.as_object() {
        for (k, v) in obj {
            println!("  {k}: {v}");
        }
    }
    println!("parameters: {}", cfg.param_count());
    for (k, n) in [
        ("embedding", b.embedding),
        ("qkv", b.qkv),
        ("proj", b.proj),
        ("ffn", b.ffn),
        ("norms", b.norms),
    ] {
        println!("  {k:<10} {n:>14}");
    }
    println!("FLOPs per token at context {context}:");
    println!("  token-parameter {:>16}", fl.token_parameter);
    println!("  token-token     {:>16}", fl.token_token);
    println!(
        "  total           {:>16}",
        fl.token_parameter + fl.token_token
    );
    Ok(())
}

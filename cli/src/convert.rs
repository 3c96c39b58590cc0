//! `convert`: the authors' released checkpoint (torch.save `pytorch_model.bin`, or safetensors
//! with the official names) → our self-describing checkpoint, written atomically.

use crate::common;
use std::path::PathBuf;
use std::time::Instant;
use tokenformer_core::convert::{self, Hyper};
use tokenformer_core::file::ModelFile;
use tokenformer_core::{Config, DType, ThetaKind};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("geometry").required(true).args(["preset", "heads"])))]
pub struct Args {
    /// pytorch_model.bin (torch.save zip) or .safetensors with the official tensor names.
    #[arg(long)]
    from: PathBuf,
    /// Released size (150m, 450m, 900m, 1.5b): heads and the rest; the file must match it.
    #[arg(long)]
    preset: Option<String>,
    /// Attention heads (cannot be read from the shapes); the rest is inferred.
    #[arg(long)]
    heads: Option<usize>,
    #[arg(long, default_value_t = 0.25, conflicts_with = "preset")]
    rotary_pct: f32,
    /// l2_norm_gelu, gelu_l2_norm or softmax.
    #[arg(long, default_value = "l2_norm_gelu", value_parser = parse_norm, conflicts_with = "preset")]
    norm: ThetaKind,
    /// Ids the tokenizer produces (default: 50277 for a 50304-row embedding, else all rows).
    #[arg(long, conflicts_with = "preset")]
    tokenizer_vocab: Option<usize>,
    #[arg(long, default_value_t = 2048, conflicts_with = "preset")]
    max_context: usize,
    /// Output checkpoint (.safetensors).
    #[arg(long)]
    out: PathBuf,
    /// Storage type: f32, f16 or bf16.
    #[arg(long, default_value = "f32", value_parser = crate::init::parse_dtype)]
    dtype: DType,
}

fn parse_norm(s: &str) -> Result<ThetaKind, String> {
    ThetaKind::parse(s).ok_or_else(|| {
        format!("unknown norm `{s}` (expected l2_norm_gelu, gelu_l2_norm or softmax)")
    })
}

pub fn run(a: Args) -> Result<(), String> {
    let hyper = match (&a.preset, a.heads) {
        (Some(p), _) => Hyper::Preset {
            name: p.clone(),
            config: Config::preset(p).map_err(|e| e.to_string())?,
        },
        (None, Some(n_heads)) => Hyper::Heads {
            n_heads,
            rotary_pct: a.rotary_pct,
            norm: a.norm,
            tokenizer_vocab: a.tokenizer_vocab,
            max_context: a.max_context,
        },
        (None, None) => return Err("give --preset or --heads".into()),
    };
    let t0 = Instant::now();
    // Mapped, not read: packed f32 tensors go from the map straight to the writer.
    let src = ModelFile::open(&a.from).map_err(|e| e.to_string())?;
    let at = |e: convert::ConvertError| format!("{}: {e}", a.from.display());
    let views = convert::read_official(src.bytes()).map_err(at)?;
    let model = convert::convert(&views, &hyper).map_err(at)?;
    let from = a.from.display().to_string();
    common::save(&a.out, &model, a.dtype, &[("converted_from", &from)])?;
    let c = &model.config;
    eprintln!(
        "wrote {} ({} parameters: {} layers, d {}, {} heads, tokens q/k/v {} proj {} ffn {}, vocab {} of which {} sampled; {}) in {:.2} s",
        a.out.display(),
        c.param_count(),
        c.n_layers,
        c.d_model,
        c.n_heads,
        c.qkv_tokens,
        c.proj_tokens,
        c.ffn_tokens,
        c.vocab_size,
        c.tokenizer_vocab,
        a.dtype.name(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

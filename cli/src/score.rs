//! `score`: per-token log-probabilities, NLL, perplexity and bits per byte.

use crate::common;
use serde_json::json;
use std::path::PathBuf;
use tokenformer_core::session::log_softmax;
use tokenformer_core::Session;

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["token_ids", "text", "file"])))]
pub struct Args {
    /// Checkpoint (default: the bundled Shakespeare model, Q8_0, inside the binary).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Comma-separated token ids.
    #[arg(long)]
    token_ids: Option<String>,
    /// Text to tokenize (--tokenizer, or tokenizer.json beside --model, or the bundled one).
    #[arg(long)]
    text: Option<String>,
    /// File whose text to tokenize (tokenizer as for --text).
    #[arg(long)]
    file: Option<PathBuf>,
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Context window for inputs longer than it (default: the model's max context). Longer
    /// inputs are scored in consecutive windows that share one token, so every token after the
    /// first is predicted exactly once, from at most `window − 1` tokens of context.
    #[arg(long)]
    window: Option<usize>,
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<(), String> {
    let text = match (&a.text, &a.file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => {
            Some(std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?)
        }
        _ => None,
    };
    let source = common::ModelSource::open(&a.model)?;
    let tokens = match (&a.token_ids, &text) {
        (Some(ids), _) => common::parse_ids(ids)?,
        (None, Some(t)) => common::encode(&source.tokenizer(&a.tokenizer)?, t)?,
        _ => return Err("give --token-ids, --text or --file".into()),
    };
    let model = source.model()?;
    let cfg = &model.config;
    if tokens.len() < 2 {
        return Err(format!(
            "scoring needs at least 2 tokens, got {}",
            tokens.len()
        ));
    }
    let window = a.window.unwrap_or(cfg.max_context);
    if window < 2 || window > cfg.max_context {
        return Err(format!(
            "--window must be between 2 and the model's max context of {}, got {window}",
            cfg.max_context
        ));
    }
    common::check_ids(&tokens, cfg.vocab_size)?;
    let mut s = Session::new(&model);
    let mut logprobs: Vec<f64> = Vec::with_capacity(tokens.len() - 1);
    let mut start = 0;
    while start + 1 < tokens.len() {
        let chunk = &tokens[start..(start + window).min(tokens.len())];
        s.reset();
        let logits = s.feed_all(chunk).map_err(|e| e.to_string())?;
        logprobs.extend(
            (0..chunk.len() - 1).map(|i| log_softmax(logits.row(i))[chunk[i + 1] as usize]),
        );
        start += window - 1;
    }
    let total: f64 = -logprobs.iter().sum::<f64>();
    let nll = total / logprobs.len() as f64;
    let ppl = nll.exp();
    let bytes = text.as_ref().map(|t| t.len());
    let bits_per_byte = |b: usize| total / std::f64::consts::LN_2 / b as f64;
    if a.json {
        let mut v = json!({ "logprobs": logprobs, "tokens": tokens.len(), "nll": nll, "ppl": ppl });
        if let Some(b) = bytes {
            v["bytes"] = json!(b);
            v["bits_per_byte"] = json!(bits_per_byte(b));
        }
        println!("{v}");
    } else {
        println!("tokens: {}", tokens.len());
        println!("nll: {nll:.6}");
        println!("ppl: {ppl:.4}");
        if let Some(b) = bytes {
            println!("bytes: {b}");
            println!("bits_per_byte: {:.6}", bits_per_byte(b));
        }
    }
    Ok(())
}

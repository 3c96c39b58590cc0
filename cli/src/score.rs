//! `score`: per-token log-probabilities, NLL, perplexity and bits per byte.

use crate::common;
use serde_json::json;
use std::path::PathBuf;
use tokenformer_core::session::log_softmax;
use tokenformer_core::Session;
use tokenformer_train::{Backend, Params, Rows, Tape};

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
    /// Where to run the forward: cpu (the inference session), or cuda / cuda:N (the training
    /// backend's forward in f32; a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Where the forward runs.
enum Scorer {
    Cpu,
    #[cfg(feature = "cuda")]
    Cuda(tokenformer_train::backend::cuda::CudaBackend),
}

/// The log-probability of each next token of `chunk`, from the training graph's forward on `be`.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn tape_logprobs<B: Backend>(be: &B, params: &Params<B>, chunk: &[u32]) -> Vec<f64> {
    let rows = Rows {
        batch: 1,
        seq: chunk.len(),
    };
    let mut tape = Tape::new(be, params, rows);
    let logits = tape.forward(chunk);
    let host = be.download(tape.value(logits));
    let v = params.config.vocab_size;
    (0..chunk.len() - 1)
        .map(|i| log_softmax(&host[i * v..(i + 1) * v])[chunk[i + 1] as usize])
        .collect()
}

/// `f`'s log-probabilities over consecutive windows of `window` tokens sharing one token.
fn over_windows(
    tokens: &[u32],
    window: usize,
    mut f: impl FnMut(&[u32]) -> Result<Vec<f64>, String>,
) -> Result<Vec<f64>, String> {
    let mut logprobs: Vec<f64> = Vec::with_capacity(tokens.len() - 1);
    let mut start = 0;
    while start + 1 < tokens.len() {
        logprobs.extend(f(&tokens[start..(start + window).min(tokens.len())])?);
        start += window - 1;
    }
    Ok(logprobs)
}

pub fn run(a: Args) -> Result<(), String> {
    // The device first, as `train` does: no GPU is a one-line error before any file is read.
    let scorer = match crate::device::parse(&a.device)? {
        crate::device::Device::Cpu => Scorer::Cpu,
        #[cfg(feature = "cuda")]
        crate::device::Device::Cuda(i) => Scorer::Cuda(crate::device::cuda(
            i,
            tokenformer_train::backend::Precision::F32,
        )?),
        #[cfg(not(feature = "cuda"))]
        crate::device::Device::Cuda(i) => return Err(crate::device::no_cuda(i)),
    };
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
    let logprobs = match &scorer {
        Scorer::Cpu => {
            let mut s = Session::new(&model);
            over_windows(&tokens, window, |chunk| {
                s.reset();
                let logits = s.feed_all(chunk).map_err(|e| e.to_string())?;
                Ok((0..chunk.len() - 1)
                    .map(|i| log_softmax(logits.row(i))[chunk[i + 1] as usize])
                    .collect())
            })?
        }
        #[cfg(feature = "cuda")]
        Scorer::Cuda(be) => {
            let params = Params::from_model(be, &model);
            over_windows(&tokens, window, |chunk| {
                Ok(tape_logprobs(be, &params, chunk))
            })?
        }
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokenformer_core::{init::init, Config};

    /// The training graph's forward (what `--device cuda` runs, here on the CPU backend) scores
    /// like the inference session, window by window.
    #[test]
    fn tape_forward_scores_like_the_session() {
        let model = init(Config::preset("tiny").unwrap(), 3).unwrap();
        let v = model.config.vocab_size as u32;
        let tokens: Vec<u32> = (0..23u32).map(|i| (i * 37 + 5) % v).collect();
        let mut s = Session::new(&model);
        let want = over_windows(&tokens, 9, |chunk| {
            s.reset();
            let logits = s.feed_all(chunk).map_err(|e| e.to_string())?;
            Ok((0..chunk.len() - 1)
                .map(|i| log_softmax(logits.row(i))[chunk[i + 1] as usize])
                .collect())
        })
        .unwrap();
        let be = tokenformer_train::Cpu;
        let params = Params::from_model(&be, &model);
        let got = over_windows(&tokens, 9, |c| Ok(tape_logprobs(&be, &params, c))).unwrap();
        assert_eq!(got.len(), tokens.len() - 1);
        for (i, (a, b)) in want.iter().zip(&got).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * a.abs().max(1.0),
                "token {i}: {a} vs {b}"
            );
        }
    }
}

//! `generate`: feed a prompt, then sample and stream tokens one at a time.

use crate::common;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;
use tokenformer_core::{Sampler, SamplerConfig, Session};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["prompt", "token_ids"])))]
pub struct Args {
    /// Checkpoint (default: the bundled Shakespeare model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Prompt text (tokenizer: --tokenizer, or tokenizer.json beside the model).
    #[arg(long)]
    prompt: Option<String>,
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Prompt as comma-separated token ids.
    #[arg(long)]
    token_ids: Option<String>,
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// 0 means no limit.
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(a: Args) -> Result<(), String> {
    if !(a.temperature.is_finite() && a.temperature >= 0.0) {
        return Err(format!(
            "--temperature must be a finite number ≥ 0, got {}",
            a.temperature
        ));
    }
    if !(a.top_p > 0.0 && a.top_p <= 1.0) {
        return Err(format!("--top-p must be in (0, 1], got {}", a.top_p));
    }
    let model_path = common::model_path(&a.model)?;
    let tok = match (&a.tokenizer, &a.prompt) {
        (Some(p), _) => Some(common::load_tokenizer(p)?),
        (None, Some(_)) => Some(common::load_tokenizer(&common::tokenizer_path(
            &None,
            &model_path,
        )?)?),
        (None, None) => None,
    };
    let prompt = match (&a.token_ids, &a.prompt, &tok) {
        (Some(ids), _, _) => common::parse_ids(ids)?,
        (None, Some(p), Some(t)) => common::encode(t, p)?,
        _ => return Err("give --prompt or --token-ids".into()),
    };
    if prompt.is_empty() {
        return Err("the prompt is empty".into());
    }
    let t_load = Instant::now();
    let mf = common::open_model(&model_path)?;
    let model = mf.model().map_err(|e| e.to_string())?;
    let load_ms = t_load.elapsed().as_secs_f64() * 1e3;
    let cfg = &model.config;
    common::check_ids(&prompt, cfg.vocab_size)?;
    if prompt.len() > cfg.max_context {
        return Err(format!(
            "the prompt's {} tokens exceed the model's max context of {}",
            prompt.len(),
            cfg.max_context
        ));
    }
    // Reported only once the input is known good, so a user error stays one line.
    eprintln!(
        "loaded {} in {load_ms:.1} ms; {}",
        model_path.display(),
        common::memory_report(&model)
    );
    let mut sampler = Sampler::new(
        SamplerConfig {
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
        },
        a.seed,
    );
    let mut session = Session::new(&model);
    let t0 = Instant::now();
    let mut logits = session.feed(&prompt).map_err(|e| e.to_string())?;
    let prompt_secs = t0.elapsed().as_secs_f64();

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut generated: Vec<u32> = Vec::new();
    let mut printed = String::new();
    let t1 = Instant::now();
    let mut context_full = false;
    for _ in 0..a.max_tokens {
        let id = sampler.sample(&logits, cfg.tokenizer_vocab);
        generated.push(id);
        match &tok {
            Some(t) => {
                let text = common::decode(t, &generated)?;
                // Print only the stable new suffix; a partial UTF-8 sequence decodes to U+FFFD
                // and is held back until it completes.
                if text.starts_with(printed.as_str()) && !text.ends_with('\u{FFFD}') {
                    write!(out, "{}", &text[printed.len()..]).map_err(|e| e.to_string())?;
                    printed = text;
                }
            }
            None => {
                let sep = if generated.len() > 1 { "," } else { "" };
                write!(out, "{sep}{id}").map_err(|e| e.to_string())?;
            }
        }
        out.flush().map_err(|e| e.to_string())?;
        if generated.len() == a.max_tokens {
            break;
        }
        if session.position() >= cfg.max_context {
            context_full = true;
            break;
        }
        logits = session.feed(&[id]).map_err(|e| e.to_string())?;
    }
    if let Some(t) = &tok {
        let text = common::decode(t, &generated)?;
        if let Some(rest) = text.strip_prefix(printed.as_str()) {
            write!(out, "{rest}").map_err(|e| e.to_string())?;
        }
    }
    writeln!(out).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    let gen_secs = t1.elapsed().as_secs_f64();
    if context_full {
        eprintln!(
            "note: stopped after {} tokens: the context of {} is full",
            generated.len(),
            cfg.max_context
        );
    }
    let rate = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { f64::INFINITY };
    eprintln!(
        "prompt tokens: {} ({:.1} tokens/s), generated tokens: {} ({:.1} tokens/s)",
        prompt.len(),
        rate(prompt.len(), prompt_secs),
        generated.len(),
        rate(generated.len(), gen_secs)
    );
    Ok(())
}

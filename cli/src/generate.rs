//! `generate`: feed a prompt, then sample and stream tokens one at a time, shifting the context
//! window when it fills.

use crate::common;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;
use tokenformer_core::{Sampler, SamplerConfig, Session};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["prompt", "token_ids"])))]
#[command(
    after_help = "At the context's end (256 tokens for the bundled model) generation goes on \
    by shifting the window, as llama.cpp does: the first --keep tokens stay, the oldest half of \
    the rest is dropped, and the cache is recomputed from what remains. So --max-tokens may \
    exceed the context; text after a shift no longer sees the dropped tokens."
)]
pub struct Args {
    /// Checkpoint (default: the bundled Shakespeare model, Q8_0, inside the binary).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Prompt text (tokenizer: --tokenizer, or tokenizer.json beside --model, or the bundled
    /// model's).
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
    /// Sampling seed (default: a random one, printed on stderr so the run can be repeated).
    #[arg(long)]
    seed: Option<u64>,
    /// Tokens kept at the start of the window when the context shifts (default: the prompt if
    /// it fills less than half the context, else none).
    #[arg(long)]
    keep: Option<usize>,
}

/// A seed from the OS-randomised hasher keys, the clock and the process id: no extra crate.
fn random_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(now);
    h.write_u32(std::process::id());
    h.finish()
}

/// The context shift: keep `ctx[..keep]`, drop the oldest half of the rest.
pub fn shift(ctx: &mut Vec<u32>, keep: usize) {
    let keep = keep.min(ctx.len());
    let drop = (ctx.len() - keep) / 2;
    ctx.drain(keep..keep + drop);
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
    // The model first, so a missing --model is reported as such, not as a missing tokenizer.
    let t_load = Instant::now();
    let source = common::ModelSource::open(&a.model)?;
    let tok = match (&a.tokenizer, &a.prompt) {
        (Some(_), _) | (None, Some(_)) => Some(source.tokenizer(&a.tokenizer)?),
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
    let model = source.model()?;
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
    let keep = a.keep.unwrap_or(if 2 * prompt.len() < cfg.max_context {
        prompt.len()
    } else {
        0
    });
    if keep >= cfg.max_context {
        return Err(format!(
            "--keep must be below the model's max context of {}, got {keep}",
            cfg.max_context
        ));
    }
    let seed = a.seed.unwrap_or_else(random_seed);
    // Reported only once the input is known good, so a user error stays one line.
    eprintln!(
        "loaded {} in {load_ms:.1} ms; {}",
        source.name(),
        common::memory_report(&model)
    );
    if a.seed.is_none() {
        eprintln!("seed: {seed} (pass --seed {seed} to repeat this sample)");
    }
    let mut sampler = Sampler::new(
        SamplerConfig {
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
        },
        seed,
    );
    let mut session = Session::new(&model);
    let t0 = Instant::now();
    let mut logits = session.feed(&prompt).map_err(|e| e.to_string())?;
    let prompt_secs = t0.elapsed().as_secs_f64();
    // The tokens in the cache, for recomputing it after a shift.
    let mut ctx = prompt.clone();

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut generated: Vec<u32> = Vec::new();
    let mut printed = String::new();
    let t1 = Instant::now();
    let mut shifts = 0;
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
        ctx.push(id);
        logits = if ctx.len() > cfg.max_context {
            shift(&mut ctx, keep);
            shifts += 1;
            session.reset();
            session.feed(&ctx)
        } else {
            session.feed(&[id])
        }
        .map_err(|e| e.to_string())?;
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
    if shifts > 0 {
        eprintln!(
            "note: the context of {} filled; shifted {shifts} time(s), keeping the first {keep} \
             tokens and dropping the oldest half of the rest",
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

#[cfg(test)]
mod tests {
    use super::shift;

    #[test]
    fn shift_keeps_the_head_and_drops_the_oldest_half_of_the_rest() {
        let mut ctx: Vec<u32> = (0..11).collect();
        shift(&mut ctx, 3);
        assert_eq!(ctx, [0, 1, 2, 7, 8, 9, 10]);
        let mut ctx: Vec<u32> = (0..9).collect();
        shift(&mut ctx, 0);
        assert_eq!(ctx, [4, 5, 6, 7, 8]);
    }
}

//! Load a checkpoint and its tokenizer, and continue a prompt.
//!
//! ```text
//! cargo run --release -p tokenformer-core --example generate [-- MODEL TOKENIZER PROMPT [TOKENS]]
//! ```
//!
//! Without arguments: the tiny Shakespeare model of `models/` (Q8_0, 2 layers), "ROMEO:", 60
//! tokens.

use tokenformer_core::file::ModelFile;
use tokenformer_core::{Sampler, SamplerConfig, Session};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> Result<()> {
    let models = concat!(env!("CARGO_MANIFEST_DIR"), "/../models");
    let mut args = std::env::args().skip(1);
    let model_path = args
        .next()
        .unwrap_or(format!("{models}/tiny-q8_0.safetensors"));
    let tokenizer_path = args
        .next()
        .unwrap_or(format!("{models}/tiny-tokenizer.json"));
    let prompt = args.next().unwrap_or("ROMEO:".into());
    let tokens: usize = args.next().map_or(Ok(60), |s| s.parse())?;

    // Memory-mapped and validated; the weights stay in the map.
    let file = ModelFile::open(&model_path)?;
    let model = file.model()?;
    let tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path)?;

    let prompt_ids = tokenizer.encode(prompt.as_str(), false)?.get_ids().to_vec();
    let mut session = Session::new(&model);
    let mut sampler = Sampler::new(SamplerConfig::default(), 0);
    let mut logits = session.feed(&prompt_ids)?;
    let mut out = Vec::new();
    for _ in 0..tokens {
        let next = sampler.sample(&logits, model.config.tokenizer_vocab);
        out.push(next);
        if session.position() == model.config.max_context {
            break; // the context is full (the CLI shifts the window instead)
        }
        logits = session.feed(&[next])?;
    }
    println!("{prompt}{}", tokenizer.decode(&out, false)?);
    Ok(())
}

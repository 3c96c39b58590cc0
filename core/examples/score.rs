//! Score a text under a model: mean negative log-likelihood and perplexity.
//!
//! ```text
//! cargo run --release -p tokenformer-core --example score [-- MODEL TOKENIZER TEXT_FILE]
//! ```
//!
//! Without arguments: the tiny Shakespeare model of `models/` on the first 4 KB of
//! `models/heldout.txt` (text held out from its training).

use tokenformer_core::file::ModelFile;
use tokenformer_core::session::log_softmax;
use tokenformer_core::Session;

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
    let text = match args.next() {
        Some(path) => std::fs::read_to_string(path)?,
        None => {
            let all = std::fs::read_to_string(format!("{models}/heldout.txt"))?;
            all.lines()
                .scan(0, |n, l| {
                    *n += l.len() + 1;
                    (*n <= 4096).then_some(l)
                })
                .flat_map(|l| [l, "\n"])
                .collect()
        }
    };

    let file = ModelFile::open(&model_path)?;
    let model = file.model()?;
    let tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path)?;
    let ids = tokenizer.encode(text.as_str(), false)?.get_ids().to_vec();

    // Windows of the model's context, each scored from its second token: row i of the logits
    // predicts token i + 1.
    let (mut nll, mut scored) = (0.0, 0);
    let mut session = Session::new(&model);
    for window in ids.chunks(model.config.max_context).filter(|w| w.len() > 1) {
        session.reset();
        let logits = session.feed_all(window)?; // [window.len(), vocab_size]
        for i in 0..window.len() - 1 {
            nll -= log_softmax(logits.row(i))[window[i + 1] as usize];
            scored += 1;
        }
    }
    if scored == 0 {
        return Err("the text is shorter than two tokens".into());
    }
    let mean = nll / scored as f64;
    println!(
        "{} bytes, {} tokens ({scored} scored): {mean:.4} nats/token, perplexity {:.2}",
        text.len(),
        ids.len(),
        mean.exp()
    );
    Ok(())
}

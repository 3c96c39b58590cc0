//! Train a tiny TokenFormer on text, grow it, train it further, and save it.
//!
//! ```text
//! cargo run --release -p tokenformer-train --example train_tiny [-- OUT_DIR [TEXT_FILE ...]]
//! ```
//!
//! Without arguments: `models/heldout.txt` (100 KB of Shakespeare) tokenized with
//! `models/tiny-tokenizer.json`, written to a temporary directory that is removed at the end.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use tokenformer_core::file::{save, ModelFile};
use tokenformer_core::grow::{grow, Init, Scale, Targets};
use tokenformer_core::{init::init, Config, DType};
use tokenformer_train::data::{tokenize_files, Windows};
use tokenformer_train::optim::{AdamW, Schedule};
use tokenformer_train::{run, Cpu, LogLine, Observer, Outcome, RunConfig, TrainConfig, Trainer};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Prints every tenth step of the log.
struct Print;

impl Observer for Print {
    fn step(&mut self, log: &[LogLine]) -> std::io::Result<()> {
        let l = &log[log.len() - 1];
        if l.step.is_multiple_of(10) {
            let heldout = l
                .heldout_loss
                .map_or(String::new(), |h| format!(", held-out {h:.3}"));
            println!(
                "step {:3}: loss {:.3}{heldout}, {:.0} tokens/s",
                l.step, l.loss, l.tokens_per_s
            );
        }
        Ok(())
    }
}

fn main() -> Result<()> {
    let models = concat!(env!("CARGO_MANIFEST_DIR"), "/../models");
    let mut args = std::env::args().skip(1);
    let temp = std::env::temp_dir().join(format!("tokenformer-train-tiny-{}", std::process::id()));
    let out = args.next().map_or(temp.clone(), PathBuf::from);
    let mut files: Vec<PathBuf> = args.map(PathBuf::from).collect();
    if files.is_empty() {
        files.push(format!("{models}/heldout.txt").into());
    }

    // Tokenize once into out/data/{train,heldout}.tokens (10 % held out, at a line start).
    let tokenizer = tokenizers::Tokenizer::from_file(format!("{models}/tiny-tokenizer.json"))?;
    let corpus = tokenize_files(&files, &tokenizer, 0.1, &out.join("data"))?;
    println!(
        "{} training tokens, {} held out",
        corpus.train.len(),
        corpus.heldout.len()
    );

    // The `tiny` preset (2 layers, d 64) with this tokenizer's vocabulary.
    let vocab = tokenizer.get_vocab_size(true);
    let config = Config {
        vocab_size: vocab,
        tokenizer_vocab: vocab,
        ..Config::preset("tiny")?
    };
    let model = init(config, 0)?;
    let tc = TrainConfig {
        batch: 8,
        seq: 64,
        accum: 1,
        steps: 40,
        optim: AdamW {
            lr: 3e-3,
            ..AdamW::default()
        },
        schedule: Schedule {
            warmup: 5,
            total: 40,
            min_lr_ratio: 0.1,
        },
        seed: 0,
    };
    let heldout = corpus.heldout.to_vec();
    let rc = |dir: &str| RunConfig {
        out: Some(out.join(dir)), // checkpoints and log.jsonl
        eval_every: 20,
        eval_windows: 8,
        save_every: 0, // only at the end
        keep: 1,
    };
    let stop = AtomicBool::new(false); // set it (e.g. from a Ctrl-C handler) to stop and save
    for dir in ["small", "grown"] {
        std::fs::create_dir_all(out.join(dir))?;
    }

    let mut trainer = Trainer::new(&Cpu, &model, tc.clone());
    let mut data = Windows::new(corpus.train.clone(), tc.seed);
    let Outcome::Finished {
        heldout_loss_all, ..
    } = run(
        &mut trainer,
        &mut data,
        &heldout,
        &rc("small"),
        &stop,
        &mut Print,
    )?
    else {
        unreachable!("nothing sets the stop flag")
    };
    println!(
        "held-out loss {:.3} nats/token",
        heldout_loss_all.unwrap_or(f64::NAN)
    );

    // Double the FFN's parameter tokens without changing what the model computes, train on.
    let small = trainer.params.to_model(&Cpu)?;
    let targets = Targets {
        ffn: Some(2 * small.config.ffn_tokens),
        ..Targets::default()
    };
    let grown = grow(&small, targets, Init::Zero, Scale::Keep, 1)?;
    println!(
        "grown: {} -> {} parameters",
        small.config.param_count(),
        grown.config.param_count()
    );
    let mut trainer = Trainer::new(&Cpu, &grown, tc.clone());
    let mut data = Windows::new(corpus.train.clone(), tc.seed + 1);
    run(
        &mut trainer,
        &mut data,
        &heldout,
        &rc("grown"),
        &stop,
        &mut Print,
    )?;

    // An ordinary checkpoint: `tokenformer-cli generate --model ...` or `ModelFile` loads it.
    let path = out.join("grown.safetensors");
    save(&path, &trainer.params.to_model(&Cpu)?, DType::F32, &[])?;
    let file = ModelFile::open(&path)?;
    println!(
        "saved {} ({} parameters)",
        path.display(),
        file.model()?.config.param_count()
    );
    if out == temp {
        std::fs::remove_dir_all(&temp)?;
    }
    Ok(())
}

//! `tokenformer-cli`: init, inspect, score, tokenize and generate with TokenFormer checkpoints.

mod bench;
mod common;
mod convert;
mod device;
mod generate;
mod grow;
mod init;
mod inspect;
mod plot;
mod quantize;
mod score;
mod tokenize;
mod tokenizer_train;
mod train;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "tokenformer-cli",
    version,
    about = "TokenFormer inference from the command line"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a freshly initialised model of a preset size.
    Init(init::Args),
    /// Print a checkpoint's config, parameter counts and FLOPs per token.
    Inspect(inspect::Args),
    /// Log-probabilities of a token sequence under a model.
    Score(score::Args),
    /// Token ids of a text.
    Tokenize(tokenize::Args),
    /// Sample a continuation of a prompt.
    Generate(generate::Args),
    /// Learn a byte-level BPE tokenizer from text files.
    TokenizerTrain(tokenizer_train::Args),
    /// Train a model (from scratch, a checkpoint, or resuming a run).
    Train(train::Args),
    /// Append parameter tokens to a model's Pattentions.
    Grow(grow::Args),
    /// Convert the authors' pytorch_model.bin (or official-name safetensors) to our format.
    Convert(convert::Args),
    /// Rewrite a checkpoint with Q8_0 or Q4_0 parameter tokens.
    Quantize(quantize::Args),
    /// Prompt and decode speed against this machine's memory bandwidth.
    Bench(bench::Args),
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Init(a) => init::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Score(a) => score::run(a),
        Command::Tokenize(a) => tokenize::run(a),
        Command::Generate(a) => generate::run(a),
        Command::TokenizerTrain(a) => tokenizer_train::run(a),
        Command::Train(a) => train::run(a),
        Command::Grow(a) => grow::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Quantize(a) => quantize::run(a),
        Command::Bench(a) => bench::run(a),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            // One line, as every other error: clap's first line already starts with "error:".
            let text = e.render().to_string();
            eprintln!(
                "{}",
                text.lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("error: bad arguments")
            );
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

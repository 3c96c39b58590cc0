//! `tokenize`: text to ids with a tokenizer.json.

use crate::common;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    tokenizer: PathBuf,
    #[arg(long)]
    text: String,
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<(), String> {
    let tok = common::load_tokenizer(&a.tokenizer)?;
    let enc = tok
        .encode(a.text.as_str(), false)
        .map_err(|e| format!("tokenization failed: {e}"))?;
    if a.json {
        let v = serde_json::json!({ "ids": enc.get_ids(), "tokens": enc.get_tokens() });
        println!("{v}");
    } else {
        let ids: Vec<String> = enc.get_ids().iter().map(u32::to_string).collect();
        println!("{}", ids.join(","));
    }
    Ok(())
}

//! Running the binary from the integration tests: shared by every file in `cli/tests`.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_tokenformer-cli");

pub fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run tokenformer-cli")
}

/// Run, assert success, return the whole output.
pub fn ok_output(args: &[&str]) -> Output {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Run, assert success, return stdout.
pub fn ok(args: &[&str]) -> String {
    String::from_utf8(ok_output(args).stdout).unwrap()
}

/// Assert a failure that is one `error: ...` line on stderr, no panic; return that line.
pub fn assert_clean_failure(args: &[&str]) -> String {
    let o = run(args);
    assert!(!o.status.success(), "{args:?} succeeded");
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: {err}");
    assert!(lines[0].starts_with("error: "), "{args:?}: {err}");
    lines[0].to_string()
}

/// `dir/corpus.txt`: `lines` lines of 8 words drawn from `words` by an LCG started at `seed`,
/// every fourth line ending a sentence. Returns its path.
pub fn word_corpus(dir: &Path, words: &[&str], seed: u64, lines: usize) -> String {
    let mut text = String::new();
    let mut x = seed;
    for line in 0..lines {
        for _ in 0..8 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            text.push_str(words[((x >> 33) % words.len() as u64) as usize]);
            text.push(' ');
        }
        text.push_str(if line % 4 == 3 { ".\n" } else { ",\n" });
    }
    let f = dir.join("corpus.txt");
    std::fs::write(&f, text).unwrap();
    f.to_str().unwrap().to_string()
}

/// `tokenizer-train` on `file` with `vocab` ids into `dir/name`. Returns its path.
pub fn train_tokenizer(dir: &Path, file: &str, vocab: usize, name: &str) -> String {
    let tok = dir.join(name);
    ok_output(&[
        "tokenizer-train",
        "--files",
        file,
        "--vocab-size",
        &vocab.to_string(),
        "--out",
        tok.to_str().unwrap(),
    ]);
    tok.to_str().unwrap().to_string()
}

/// The training losses of a run directory's `log.jsonl`, in step order.
pub fn log_losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

//! The model inside the binary: generation with no --model, past the context, with a random
//! seed that is printed and reproduces the sample; a missing --model named as missing.

mod common;
use common::*;

/// The number in "generated tokens: N" on stderr.
fn generated(stderr: &str) -> usize {
    let rest = stderr
        .split("generated tokens: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no token count in {stderr}"));
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn a_thousand_tokens_past_the_256_token_context() {
    let o = ok_output(&[
        "generate",
        "--prompt",
        "ROMEO:",
        "--max-tokens",
        "1000",
        "--seed",
        "1",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bundled"), "{err}");
    assert_eq!(generated(&err), 1000, "{err}");
    assert!(err.contains("shifted"), "{err}");
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.len() > 1000, "{text}");

    // Token ids: exactly 1000 printed, every one inside the tokenizer's vocabulary.
    let o = ok(&[
        "generate",
        "--token-ids",
        "1,2,3",
        "--max-tokens",
        "1000",
        "--seed",
        "2",
    ]);
    let ids: Vec<u32> = o.trim().split(',').map(|t| t.parse().unwrap()).collect();
    assert_eq!(ids.len(), 1000);
}

#[test]
fn the_printed_seed_reproduces_the_sample() {
    let args = ["generate", "--prompt", "JULIET:", "--max-tokens", "24"];
    let first = ok_output(&args);
    let err = String::from_utf8_lossy(&first.stderr);
    let seed = err
        .split("seed: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no seed printed: {err}"))
        .to_string();
    let mut again: Vec<&str> = args.to_vec();
    again.extend(["--seed", &seed]);
    let second = ok_output(&again);
    assert_eq!(first.stdout, second.stdout);
    // Given a seed, none is printed.
    assert!(!String::from_utf8_lossy(&second.stderr).contains("seed: "));
}

#[test]
fn a_missing_model_file_is_named_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.safetensors");
    for input in [["--prompt", "hi"], ["--token-ids", "1"]] {
        let mut args = vec!["generate", "--model", missing.to_str().unwrap()];
        args.extend(input);
        let line = assert_clean_failure(&args);
        assert!(line.contains("nope.safetensors"), "{line}");
        assert!(line.contains("no such model file"), "{line}");
        assert!(!line.contains("tokenizer"), "{line}");
    }
}

#[test]
fn help_names_the_default_and_the_boundary() {
    let help = ok(&["generate", "--help"]);
    assert!(help.contains("bundled Shakespeare model"), "{help}");
    assert!(help.contains("--keep"), "{help}");
    assert!(help.contains("shifting the window"), "{help}");
}

//! End to end: `tokenizer-train` on a generated text, then the tokenizer it wrote.

mod common;
use common::*;

use std::path::Path;

use tokenizers::Tokenizer;

/// Pseudo-random verse: words of 1–3 syllables from a small set, common ones (a skewed draw)
/// repeating often enough for merges to form, with enough variety to fill a few hundred tokens.
fn verse(lines: usize, seed: u64) -> String {
    const SYL: &[&str] = &[
        "the", "king", "qu", "een", "thou", "art", "my", "lo", "rd", "an", "love", "de", "ath",
        "ni", "ght", "swe", "et", "ha", "th", "sh", "all", "no", "be", "wh", "at", "is", "ho",
        "nour", "cr", "own", "ro", "meo", "ju", "li", "ma", "cb", "ste", "ver", "ona",
    ];
    let mut x = seed;
    let mut next = |n: usize| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let u = (x >> 33) as usize;
        (u % n).min((u >> 8) % n) // skewed towards small indices
    };
    let mut out = String::new();
    for _ in 0..lines {
        let n = 4 + next(6);
        for j in 0..n {
            if j > 0 {
                out.push(' ');
            }
            for _ in 0..1 + next(3) {
                out.push_str(SYL[next(SYL.len())]);
            }
        }
        out.push_str(".\n");
    }
    out
}

fn train(dir: &Path, vocab: usize) -> (String, Tokenizer) {
    let a = dir.join("a.txt");
    let b = dir.join("b.txt");
    std::fs::write(&a, verse(300, 1)).unwrap();
    std::fs::write(&b, verse(200, 2)).unwrap();
    let out = dir.join("tokenizer.json");
    let vocab = vocab.to_string();
    let msg = ok(&[
        "tokenizer-train",
        "--files",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--vocab-size",
        &vocab,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(msg.contains("byte-level BPE"), "{msg}");
    let tok = Tokenizer::from_file(&out).unwrap();
    (out.to_str().unwrap().to_string(), tok)
}

#[test]
fn trained_tokenizer_round_trips_and_compresses() {
    let dir = tempfile::tempdir().unwrap();
    let (path, tok) = train(dir.path(), 400);
    assert_eq!(tok.get_vocab_size(true), 400);
    assert_eq!(tok.token_to_id("<|endoftext|>"), Some(0));

    // Seen words merge: under half a token per byte.
    let seen = "the king and the queen shall not be.\n";
    let ids = tok.encode(seen, false).unwrap().get_ids().to_vec();
    assert!(ids.len() * 2 < seen.len(), "{} tokens", ids.len());
    assert_eq!(tok.decode(&ids, false).unwrap(), seen);

    // Unseen text and bytes, including multi-byte UTF-8 and the special token, round-trip.
    let unseen = "Ünïcödé ✓ 🎭\ttabs  and  double spaces<|endoftext|>Next doc\r\n";
    let ids = tok.encode(unseen, false).unwrap().get_ids().to_vec();
    assert!(ids.contains(&0), "{ids:?}");
    assert!(ids.iter().all(|&i| i < 400));
    assert_eq!(tok.decode(&ids, false).unwrap(), unseen);

    // The `tokenize` subcommand sees the same ids.
    let cli_ids = ok(&["tokenize", "--tokenizer", &path, "--text", seen]);
    let want: Vec<String> = tok
        .encode(seen, false)
        .unwrap()
        .get_ids()
        .iter()
        .map(u32::to_string)
        .collect();
    assert_eq!(cli_ids.trim(), want.join(","));

    // Deterministic: the same inputs give the same file.
    let first = std::fs::read(&path).unwrap();
    let (path2, _) = train(dir.path(), 400);
    assert_eq!(std::fs::read(path2).unwrap(), first);

    // A smaller vocabulary learns fewer merges: more tokens for the same text.
    let (_, small) = train(dir.path(), 300);
    let text = verse(50, 3);
    let n_small = small.encode(text.as_str(), false).unwrap().len();
    let n_big = tok.encode(text.as_str(), false).unwrap().len();
    assert!(n_big < n_small, "{n_big} vs {n_small}");
}

#[test]
fn bad_tokenizer_train_inputs_fail_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.txt");
    std::fs::write(&good, verse(10, 1)).unwrap();
    let binary = dir.path().join("binary.txt");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x80]).unwrap();
    let out = dir.path().join("t.json");
    let (g, b, o) = (
        good.to_str().unwrap(),
        binary.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let missing = dir.path().join("missing.txt");
    let m = missing.to_str().unwrap();

    assert_clean_failure(&[
        "tokenizer-train",
        "--files",
        m,
        "--vocab-size",
        "300",
        "--out",
        o,
    ]);
    assert_clean_failure(&[
        "tokenizer-train",
        "--files",
        b,
        "--vocab-size",
        "300",
        "--out",
        o,
    ]);
    assert_clean_failure(&[
        "tokenizer-train",
        "--files",
        g,
        "--vocab-size",
        "10",
        "--out",
        o,
    ]);
    assert_clean_failure(&[
        "tokenizer-train",
        "--files",
        g,
        "--vocab-size",
        "x",
        "--out",
        o,
    ]);
    assert_clean_failure(&["tokenizer-train", "--vocab-size", "300", "--out", o]);
    let nowhere = dir.path().join("no/such/dir/t.json");
    assert_clean_failure(&[
        "tokenizer-train",
        "--files",
        g,
        "--vocab-size",
        "300",
        "--out",
        nowhere.to_str().unwrap(),
    ]);
    assert!(!out.exists(), "a failed run writes nothing");
}

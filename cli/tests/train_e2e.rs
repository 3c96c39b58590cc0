//! End to end: tokenizer-train → train (Ctrl-C, --resume) → generate / score with the result;
//! grow → score. Small enough for CI (a tiny model, a few dozen steps).

mod common;
use common::*;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn corpus(dir: &Path) -> (String, String) {
    let words = [
        "to", "be", "or", "not", "that", "is", "the", "question", "whether", "tis", "nobler", "in",
        "mind",
    ];
    let f = word_corpus(dir, &words, 12345, 3000);
    let tok = train_tokenizer(dir, &f, 300, "tokenizer.json");
    (f, tok)
}

fn train_args<'a>(data: &'a str, tok: &'a str, out: &'a str, steps: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--data",
        data,
        "--tokenizer",
        tok,
        "--preset",
        "tiny",
        "--out",
        out,
        "--steps",
        steps,
        "--batch",
        "2",
        "--seq",
        "32",
        "--lr",
        "3e-3",
        "--eval-every",
        "5",
        "--eval-windows",
        "4",
        "--save-every",
        "5",
        "--threads",
        "1",
        "--quiet",
    ]
}

fn losses(run_dir: &Path) -> Vec<(u64, u64)> {
    std::fs::read_to_string(run_dir.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["step"].as_u64().unwrap(),
                v["loss"].as_f64().unwrap().to_bits(),
            )
        })
        .collect()
}

#[test]
fn train_interrupt_resume_equals_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let (data, tok) = corpus(dir.path());
    let straight = dir.path().join("straight");
    ok_output(&train_args(&data, &tok, straight.to_str().unwrap(), "120"));
    let expected = losses(&straight);
    assert_eq!(expected.len(), 120);
    assert!(straight.join("model.safetensors").exists());
    let svg = std::fs::read_to_string(straight.join("loss.svg")).unwrap();
    assert!(svg.contains("<text") && svg.contains("<polyline"));
    // The periodic evaluations every 5 steps; the whole held-out split, under its own key, only
    // after the last step.
    let log = std::fs::read_to_string(straight.join("log.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let with = |key: &str| -> Vec<u64> {
        rows.iter()
            .filter(|r| r[key].is_f64())
            .map(|r| r["step"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(
        with("heldout_loss"),
        (1..=24).map(|k| 5 * k).collect::<Vec<_>>()
    );
    assert_eq!(with("heldout_loss_all"), [120]);
    let first: f64 = f64::from_bits(expected[0].1);
    let last: f64 = f64::from_bits(expected[119].1);
    assert!(last < first, "loss {first} -> {last}");

    // The same run, interrupted with SIGINT once a checkpoint exists, then resumed.
    let broken = dir.path().join("broken");
    let b = broken.to_str().unwrap();
    let child = Command::new(BIN)
        .args(train_args(&data, &tok, b, "120"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !broken.join("step-00000010").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(losses(&broken).len() < 120);
    // Whatever step it stopped at, resuming must reproduce the uninterrupted run exactly.
    ok_output(&{
        let mut a = train_args(&data, &tok, b, "120");
        a.push("--resume");
        a
    });
    assert_eq!(losses(&broken), expected);
    let last = |d: &Path| {
        std::fs::read_to_string(d.join("log.jsonl"))
            .unwrap()
            .lines()
            .last()
            .map(str::to_owned)
    };
    let all = |l: Option<String>| {
        serde_json::from_str::<serde_json::Value>(&l.unwrap()).unwrap()["heldout_loss_all"].as_f64()
    };
    assert_eq!(all(last(&broken)), all(last(&straight)));

    // A second run into a directory with checkpoints refuses without --resume.
    let o = run(&train_args(&data, &tok, b, "120"));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--resume"));

    // The trained model works with score and generate, the tokenizer found beside it... or given.
    let model = straight.join("model.safetensors");
    let m = model.to_str().unwrap();
    let s = ok_output(&[
        "score",
        "--model",
        m,
        "--tokenizer",
        &tok,
        "--text",
        "to be or not to be, that is the question",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    assert!(v["bits_per_byte"].as_f64().unwrap() > 0.0);
    let g = ok_output(&[
        "generate",
        "--model",
        m,
        "--tokenizer",
        &tok,
        "--prompt",
        "to be",
        "--max-tokens",
        "8",
        "--seed",
        "1",
    ]);
    assert!(!g.stdout.is_empty());
}

#[test]
fn grow_zero_keeps_scores_and_random_changes_them() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.safetensors");
    let z = dir.path().join("z.safetensors");
    let r = dir.path().join("r.safetensors");
    let (m, z, r) = (
        m.to_str().unwrap(),
        z.to_str().unwrap(),
        r.to_str().unwrap(),
    );
    ok_output(&["init", "--preset", "tiny", "--out", m]);
    ok_output(&[
        "grow",
        "--model",
        m,
        "--out",
        z,
        "--ffn-tokens",
        "160",
        "--qkv-tokens",
        "64",
    ]);
    ok_output(&[
        "grow",
        "--model",
        m,
        "--out",
        r,
        "--ffn-tokens",
        "160",
        "--init",
        "random",
        "--scale",
        "new",
    ]);
    let score = |f: &str| -> Vec<f64> {
        let o = ok_output(&[
            "score",
            "--model",
            f,
            "--token-ids",
            "5,17,300,2,99,4,250,1",
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["logprobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let (a, b, c) = (score(m), score(z), score(r));
    assert!(
        a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1e-6),
        "{a:?} vs {b:?}"
    );
    assert!(a.iter().zip(&c).any(|(x, y)| (x - y).abs() > 1e-4));
    let inspect = ok_output(&["inspect", z, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(v["config"]["ffn_tokens"], 160);
    assert_eq!(v["config"]["ffn_scale_tokens"], 96);
    let o = run(&["grow", "--model", m, "--out", z, "--ffn-tokens", "10"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).starts_with("error: "));
}

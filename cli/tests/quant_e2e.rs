//! End to end: `quantize` and `bench` on a tiny model.

mod common;
use common::*;

use std::path::Path;

fn json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(args)).unwrap()
}

fn clean_failure(args: &[&str]) {
    let o = run(args);
    assert!(!o.status.success(), "{args:?} succeeded");
    let err = String::from_utf8(o.stderr).unwrap();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: {err}");
    assert!(
        lines[0].starts_with("error: ") && !err.contains("panicked"),
        "{args:?}: {err}"
    );
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn quantize_score_and_bench() {
    let dir = tempfile::tempdir().unwrap();
    let f32m = dir.path().join("tiny.safetensors");
    ok(&["init", "--preset", "tiny", "--seed", "3", "--out", p(&f32m)]);
    let ids = "5,17,3,99,42,7,300,12,8,250,1,64";
    let nll = |m: &Path| {
        json(&["score", "--model", p(m), "--token-ids", ids, "--json"])["nll"]
            .as_f64()
            .unwrap()
    };
    let base = nll(&f32m);
    let size = |m: &Path| std::fs::metadata(m).unwrap().len();
    for (format, tol) in [("q8_0", 0.01), ("q4_0", 0.1)] {
        let q = dir.path().join(format!("{format}.safetensors"));
        ok(&[
            "quantize",
            "--model",
            p(&f32m),
            "--out",
            p(&q),
            "--format",
            format,
        ]);
        assert!(
            size(&q) < size(&f32m) / 2,
            "{format}: {} vs {}",
            size(&q),
            size(&f32m)
        );
        let got = nll(&q);
        assert!(
            (got - base).abs() <= tol * base,
            "{format}: nll {got} vs f32 {base}"
        );
        // Quantizing twice is refused.
        clean_failure(&[
            "quantize",
            "--model",
            p(&q),
            "--out",
            p(&dir.path().join("x")),
            "--format",
            "q4_0",
        ]);
    }
    let q8 = dir.path().join("q8_0.safetensors");
    for threads in ["1", "2"] {
        let b = json(&[
            "bench",
            "--model",
            p(&q8),
            "--prompt-tokens",
            "8",
            "--gen-tokens",
            "4",
            "--threads",
            threads,
            "--json",
        ]);
        for key in [
            "prefill_tokens_per_s",
            "decode_tokens_per_s",
            "bytes_per_token",
            "bandwidth_gb_s",
            "bandwidth_fraction",
        ] {
            let v = b[key].as_f64().unwrap_or(f64::NAN);
            assert!(v.is_finite() && v > 0.0, "{key} = {v}");
        }
        assert_eq!(b["format"], "q8_0");
    }
    clean_failure(&[
        "quantize",
        "--model",
        p(&f32m),
        "--out",
        p(&dir.path().join("y")),
        "--format",
        "q5_1",
    ]);
    clean_failure(&[
        "quantize",
        "--model",
        p(&dir.path().join("missing")),
        "--out",
        p(&dir.path().join("y")),
        "--format",
        "q8_0",
    ]);
    clean_failure(&["bench", "--model", p(&q8), "--threads", "0"]);
    clean_failure(&[
        "bench",
        "--model",
        p(&q8),
        "--prompt-tokens",
        "200",
        "--gen-tokens",
        "100",
    ]);
}

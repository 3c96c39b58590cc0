//! `train --device cuda` and `score --device cuda` on a machine (or a build) without CUDA, and
//! `--precision bf16` on the CPU: a one-line typed error, a non-zero exit, and nothing under
//! --out touched. Runs everywhere; the no-GPU checks print that they skipped on a machine with a
//! GPU and a `--features cuda` build (the device would be found).

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tokenformer-cli");

fn listing(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn train_device_cuda_without_a_gpu_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("step-00000001.marker"), b"an earlier run").unwrap();
    let before = listing(&out);
    for device in ["cuda", "cuda:7"] {
        let r = Command::new(BIN)
            .args([
                "train",
                "--data",
                "missing.txt",
                "--tokenizer",
                "missing.json",
                "--preset",
                "tiny",
            ])
            .args(["--out", out.to_str().unwrap(), "--device", device])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&r.stderr);
        if r.status.success() || err.lines().any(|l| l.starts_with("device: ")) {
            println!("skipped: a CUDA device is present ({device}); this test covers machines without one");
            return;
        }
        assert_ne!(r.status.code(), Some(0));
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line expected, got: {err}");
        assert!(
            lines[0].contains(&format!(
                "--device cuda:{}",
                device.strip_prefix("cuda:").unwrap_or("0")
            )) && (lines[0].contains("no CUDA") || lines[0].contains("no CUDA support")),
            "{err}"
        );
        assert!(
            !lines[0].contains("missing.txt"),
            "the device must be checked first: {err}"
        );
        assert_eq!(listing(&out), before, "--out was touched");
    }
    let r = Command::new(BIN)
        .args([
            "train",
            "--data",
            "x",
            "--tokenizer",
            "y",
            "--out",
            out.to_str().unwrap(),
            "--device",
            "tpu",
        ])
        .output()
        .unwrap();
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("--device must be cpu, cuda or cuda:N"));
}

/// Runs the CLI; returns (success, the non-empty stderr lines, whether a device was found).
fn cli(args: &[&str]) -> (bool, Vec<String>, bool) {
    let r = Command::new(BIN).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    let found = err.lines().any(|l| l.starts_with("device: "));
    let lines = err
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    (r.status.success(), lines, found)
}

#[test]
fn score_device_cuda_without_a_gpu_fails_cleanly() {
    let (ok, lines, found) = cli(&["score", "--token-ids", "1,2,3", "--device", "cuda:1"]);
    if ok || found {
        println!("skipped: a CUDA device is present; this test covers machines without one");
        return;
    }
    assert_eq!(lines.len(), 1, "one line expected, got: {lines:?}");
    assert!(
        lines[0].contains("--device cuda:1") && lines[0].contains("no CUDA"),
        "{lines:?}"
    );
    let (ok, lines, _) = cli(&["score", "--token-ids", "1,2,3", "--device", "gpu"]);
    assert!(!ok && lines.len() == 1 && lines[0].contains("--device must be cpu, cuda or cuda:N"));
}

#[test]
fn bf16_on_the_cpu_and_an_unknown_precision_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let base = [
        "train",
        "--data",
        "missing.txt",
        "--tokenizer",
        "missing.json",
        "--preset",
        "tiny",
        "--out",
        out.to_str().unwrap(),
    ];
    for (precision, want) in [
        (
            "bf16",
            "--device cpu: --precision bf16: the cpu backend computes in f32 only",
        ),
        ("fp8", "--precision must be f32 or bf16, got `fp8`"),
    ] {
        let mut args = base.to_vec();
        args.extend(["--device", "cpu", "--precision", precision]);
        let (ok, lines, _) = cli(&args);
        assert!(!ok, "{precision} accepted");
        assert_eq!(lines.len(), 1, "one line expected, got: {lines:?}");
        assert!(lines[0].contains(want), "{lines:?}");
        assert!(!out.exists(), "--out was created");
    }
}

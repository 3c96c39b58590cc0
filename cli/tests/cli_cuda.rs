//! `train --device cuda` and `score --device cuda` on a machine (or a build) without CUDA, and
//! `--precision bf16` on the CPU: a one-line typed error, a non-zero exit, and nothing under
//! --out touched. Runs everywhere; the no-GPU checks print that they skipped on a machine with a
//! GPU and a `--features cuda` build (the device would be found).

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tokenformer-cli");

/// `train` with inputs that do not exist: the device and precision must be refused first.
const TRAIN: [&str; 7] = [
    "train",
    "--data",
    "missing.txt",
    "--tokenizer",
    "missing.json",
    "--preset",
    "tiny",
];

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
fn train_device_cuda_without_a_gpu_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("step-00000001.marker"), b"an earlier run").unwrap();
    let before = listing(&out);
    let out_s = out.to_str().unwrap();
    for device in ["cuda", "cuda:7"] {
        let (ok, lines, found) = cli(&[&TRAIN[..], &["--out", out_s, "--device", device]].concat());
        if ok || found {
            println!("skipped: a CUDA device is present ({device}); this test covers machines without one");
            return;
        }
        assert_eq!(lines.len(), 1, "one line expected, got: {lines:?}");
        let index = device.strip_prefix("cuda:").unwrap_or("0");
        assert!(
            lines[0].contains(&format!("--device cuda:{index}")) && lines[0].contains("no CUDA"),
            "{lines:?}"
        );
        assert!(
            !lines[0].contains("missing.txt"),
            "the device must be checked first: {lines:?}"
        );
        assert_eq!(listing(&out), before, "--out was touched");
    }
    let (ok, lines, _) = cli(&[&TRAIN[..], &["--out", out_s, "--device", "tpu"]].concat());
    assert!(!ok);
    assert!(
        lines[0].contains("--device must be cpu, cuda or cuda:N"),
        "{lines:?}"
    );
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
    for (precision, want) in [
        (
            "bf16",
            "--device cpu: --precision bf16: the cpu backend computes in f32 only",
        ),
        ("fp8", "--precision must be f32 or bf16, got `fp8`"),
    ] {
        let extra = ["--out", out.to_str().unwrap(), "--precision", precision];
        let (ok, lines, _) = cli(&[&TRAIN[..], &extra].concat());
        assert!(!ok, "{precision} accepted");
        assert_eq!(lines.len(), 1, "one line expected, got: {lines:?}");
        assert!(lines[0].contains(want), "{lines:?}");
        assert!(!out.exists(), "--out was created");
    }
}

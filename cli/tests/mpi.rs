//! Data-parallel training under `mpirun` (feature `mpi`): ranks against one process with the
//! same global batch, the weight-hash check, resume, a killed rank, a rank with other inputs.
//! Tiny models and few steps, for CI. `mpirun` missing is a failure, not a skip.
#![cfg(feature = "mpi")]

mod common;
use common::*;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn corpus(dir: &Path, name: &str, vocab: &str) -> (String, String) {
    let words = [
        "to", "be", "or", "not", "that", "is", "the", "question", "whether",
    ];
    let mut text = String::new();
    let mut x = 99u64;
    for line in 0..1500 {
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
    let tok = dir.join(name);
    ok_output(&[
        "tokenizer-train",
        "--files",
        f.to_str().unwrap(),
        "--vocab-size",
        vocab,
        "--out",
        tok.to_str().unwrap(),
    ]);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    (s(&f), s(&tok))
}

fn train_args(data: &str, tok: &str, out: &Path, steps: u64, accum: usize) -> Vec<String> {
    let v = [
        "train",
        "--data",
        data,
        "--tokenizer",
        tok,
        "--preset",
        "tiny",
        "--out",
        out.to_str().unwrap(),
        "--steps",
        &steps.to_string(),
        "--batch",
        "4",
        "--accum",
        &accum.to_string(),
        "--seq",
        "16",
        "--lr",
        "3e-3",
        "--eval-every",
        "5",
        "--eval-windows",
        "2",
        "--save-every",
        "5",
        "--threads",
        "1",
        "--quiet",
    ];
    v.iter().map(|s| s.to_string()).collect()
}

fn mpirun(np: usize, extra: &[&str]) -> Command {
    let mut c = Command::new("mpirun");
    c.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .args(["--oversubscribe", "-np", &np.to_string()])
        .args(extra)
        .arg(BIN);
    c
}

fn output(mut c: Command) -> Output {
    c.output().expect("mpirun (apt-get install openmpi-bin)")
}

fn ok_mpi(np: usize, args: &[String]) {
    let o = output({
        let mut c = mpirun(np, &[]);
        c.args(args);
        c
    });
    assert!(
        o.status.success(),
        "mpirun -np {np} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn losses(run: &Path) -> Vec<f64> {
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

fn single(args: &[String]) {
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    ok_output(&a);
}

#[test]
fn two_ranks_equal_one_process_with_accum_two_bit_for_bit() {
    let d = tempfile::tempdir().unwrap();
    let (data, tok) = corpus(d.path(), "tok.json", "300");
    let one = d.path().join("one");
    single(&train_args(&data, &tok, &one, 20, 2));
    let two = d.path().join("two");
    ok_mpi(2, &train_args(&data, &tok, &two, 20, 1));
    let (a, b) = (losses(&one), losses(&two));
    assert_eq!(a.len(), 20);
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b), "2 ranks: {b:?}\n1 process: {a:?}");

    // Resume of an interrupted 2-rank run: drop the checkpoints after step 10, resume.
    let cut = d.path().join("cut");
    std::fs::create_dir(&cut).unwrap();
    for e in std::fs::read_dir(&two).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if name == "data" || name == "step-00000010" {
            let to = cut.join(&name);
            std::fs::create_dir(&to).unwrap();
            for f in std::fs::read_dir(e.path()).unwrap() {
                let f = f.unwrap();
                std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
            }
        } else if name == "log.jsonl" {
            std::fs::copy(e.path(), cut.join(name)).unwrap();
        }
    }
    let mut args = train_args(&data, &tok, &cut, 20, 1);
    args.push("--resume".into());
    ok_mpi(2, &args);
    assert_eq!(bits(&losses(&cut)), bits(&b), "resumed 2-rank run");
}

#[test]
fn three_ranks_match_accum_three() {
    let d = tempfile::tempdir().unwrap();
    let (data, tok) = corpus(d.path(), "tok.json", "300");
    let one = d.path().join("one");
    single(&train_args(&data, &tok, &one, 10, 3));
    let three = d.path().join("three");
    ok_mpi(3, &train_args(&data, &tok, &three, 10, 1));
    let (a, b) = (losses(&one), losses(&three));
    assert_eq!(a.len(), 10);
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-6 * x.abs(), "{a:?}\n{b:?}");
    }
}

#[test]
fn perturbed_rank_stops_on_weight_hash() {
    let d = tempfile::tempdir().unwrap();
    let (data, tok) = corpus(d.path(), "tok.json", "300");
    let out = d.path().join("run");
    let o = output({
        let mut c = mpirun(2, &["-x", "TOKENFORMER_DEBUG_PERTURB_RANK=1"]);
        c.args(train_args(&data, &tok, &out, 20, 1));
        c
    });
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("weight hash mismatch"), "{err}");
}

#[test]
fn different_tokenizer_stops_every_rank() {
    let d = tempfile::tempdir().unwrap();
    let (data, tok) = corpus(d.path(), "tok.json", "300");
    let (_, tok2) = corpus(d.path(), "tok2.json", "260");
    let out = d.path().join("run");
    let mut c = mpirun(1, &[]);
    c.args(train_args(&data, &tok, &out, 5, 1))
        .args([":", "-np", "1", BIN])
        .args(train_args(&data, &tok2, &out, 5, 1));
    let o = output(c);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(
        err.matches("startup check: the tokenizer differ").count(),
        2,
        "{err}"
    );
}

/// The pid of world rank `rank` among `parent`'s children.
fn rank_pid(parent: u32, rank: usize) -> Option<u32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|t| t.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
        let want = format!("OMPI_COMM_WORLD_RANK={rank}");
        if ppid == Some(parent) && env.split(|b| *b == 0).any(|v| v == want.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

#[test]
fn killed_rank_ends_the_job_and_the_run_resumes() {
    let d = tempfile::tempdir().unwrap();
    let (data, tok) = corpus(d.path(), "tok.json", "300");
    let out = d.path().join("run");
    let mut job = mpirun(2, &[])
        .args(train_args(&data, &tok, &out, 100_000, 1))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !out.join("step-00000010").exists() {
        assert!(t0.elapsed() < Duration::from_secs(120), "no checkpoint");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = rank_pid(job.id(), 1).expect("rank 1's process");
    // SAFETY: kill(2) on a pid we just read; no memory is involved.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let killed = Instant::now();
    let status = loop {
        if let Some(s) = job.try_wait().unwrap() {
            break s;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "job still running"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    // The newest checkpoint loads (inspect reads it) and the run resumes to a later step.
    let latest = tokenformer_latest(&out);
    ok_output(&[
        "inspect",
        latest.join("model.safetensors").to_str().unwrap(),
    ]);
    let step: u64 = latest
        .to_str()
        .unwrap()
        .rsplit('-')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut args = train_args(&data, &tok, &out, 100_000, 1);
    args.push("--resume".into());
    let mut c = mpirun(2, &[]);
    c.args(&args).stdout(Stdio::null()).stderr(Stdio::null());
    let mut again = c.spawn().unwrap();
    let t1 = Instant::now();
    while tokenformer_latest(&out) == latest {
        assert!(
            t1.elapsed() < Duration::from_secs(120),
            "resume made no checkpoint"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGTERM: mpirun passes it on to its ranks (SIGKILL would orphan them).
    // SAFETY: as above.
    unsafe { libc::kill(again.id() as i32, libc::SIGTERM) };
    let _ = again.wait();
    let newer: u64 = tokenformer_latest(&out)
        .to_str()
        .unwrap()
        .rsplit('-')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(newer > step);
}

fn tokenformer_latest(run: &Path) -> std::path::PathBuf {
    let mut v: Vec<_> = std::fs::read_dir(run)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("step-"))
        })
        .collect();
    v.sort();
    v.pop().expect("a checkpoint")
}

//! Data-parallel training under `mpirun` (feature `mpi`): ranks against one process with the
//! same global batch, the weight-hash check, resume (at the same and at another world size), a
//! killed rank, a rank with other inputs.
//! Tiny models and few steps, for CI. `mpirun` missing is a failure, not a skip.
#![cfg(feature = "mpi")]

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn corpus(dir: &Path, name: &str, vocab: usize) -> (String, String) {
    let words = [
        "to", "be", "or", "not", "that", "is", "the", "question", "whether",
    ];
    let f = word_corpus(dir, &words, 99, 1500);
    let tok = train_tokenizer(dir, &f, vocab, name);
    (f, tok)
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

/// Run a job that must fail; its stderr.
fn failed_stderr(c: Command) -> String {
    let o = output(c);
    assert!(!o.status.success());
    String::from_utf8_lossy(&o.stderr).into_owned()
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

fn single(args: &[String]) {
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    ok_output(&a);
}

/// The training inputs and two runs of `steps` steps with the same seed: `np` ranks × accum 1
/// and one process × accum `np` (the same global batch), with their loss sequences.
struct Pair {
    data: String,
    tok: String,
    one: PathBuf,
    ranks: PathBuf,
    one_losses: Vec<f64>,
    rank_losses: Vec<f64>,
}

fn ranks_and_one_process(d: &Path, np: usize, steps: u64) -> Pair {
    let (data, tok) = corpus(d, "tok.json", 300);
    let one = d.join("one");
    single(&train_args(&data, &tok, &one, steps, np));
    let ranks = d.join(format!("ranks{np}"));
    ok_mpi(np, &train_args(&data, &tok, &ranks, steps, 1));
    let (one_losses, rank_losses) = (log_losses(&one), log_losses(&ranks));
    assert_eq!(one_losses.len(), steps as usize);
    Pair {
        data,
        tok,
        one,
        ranks,
        one_losses,
        rank_losses,
    }
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Every loss of `got` within `rel` (relative) of `want`'s, and as many.
fn assert_close(got: &[f64], want: &[f64], rel: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?}\n{want:?}");
    for (x, y) in got.iter().zip(want) {
        assert!((x - y).abs() <= rel * y.abs(), "{what}: {got:?}\n{want:?}");
    }
}

/// `run` as it stood after step `step`: its token cache, that checkpoint and its log, in `to`
/// (an interrupted run).
fn cut_at(run: &Path, step: u64, to: &Path) -> PathBuf {
    std::fs::create_dir(to).unwrap();
    let keep = format!("step-{step:08}");
    for e in std::fs::read_dir(run).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if name == "data" || name == keep {
            let dir = to.join(&name);
            std::fs::create_dir(&dir).unwrap();
            for f in std::fs::read_dir(e.path()).unwrap() {
                let f = f.unwrap();
                std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
            }
        } else if name == "log.jsonl" {
            std::fs::copy(e.path(), to.join(name)).unwrap();
        }
    }
    to.to_path_buf()
}

fn resume_args(p: &Pair, out: &Path, steps: u64) -> Vec<String> {
    let mut args = train_args(&p.data, &p.tok, out, steps, 1);
    args.push("--resume".into());
    args
}

#[test]
fn two_ranks_equal_one_process_with_accum_two_bit_for_bit() {
    let d = tempfile::tempdir().unwrap();
    let p = ranks_and_one_process(d.path(), 2, 20);
    let (a, b) = (&p.one_losses, &p.rank_losses);
    assert_eq!(bits(a), bits(b), "2 ranks: {b:?}\n1 process: {a:?}");

    // Resume of an interrupted 2-rank run: drop the checkpoints after step 10, resume.
    let cut = cut_at(&p.ranks, 10, &d.path().join("cut"));
    ok_mpi(2, &resume_args(&p, &cut, 20));
    assert_eq!(bits(&log_losses(&cut)), bits(b), "resumed 2-rank run");
}

#[test]
fn three_ranks_match_accum_three() {
    let d = tempfile::tempdir().unwrap();
    let p = ranks_and_one_process(d.path(), 3, 10);
    let (a, b) = (&p.one_losses, &p.rank_losses);
    assert_close(b, a, 1e-6, "3 ranks against 1 process × accum 3");
}

/// The per-rank accumulation and world size a checkpoint recorded.
fn saved_accum_and_ranks(checkpoint: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(checkpoint.join("state.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    (
        v["train_config"]["accum"].as_u64().unwrap(),
        v["ranks"].as_u64().unwrap(),
    )
}

#[test]
fn resume_at_another_world_size_matches_to_rounding() {
    // Same global batch, other world size: the same windows every step, the micro-batch
    // gradients summed in another order. The bound: 1e-6 relative per loss (as for 3 ranks).
    const REL: f64 = 1e-6;
    let d = tempfile::tempdir().unwrap();
    let p = ranks_and_one_process(d.path(), 2, 20);
    let want = &p.one_losses;

    // Interrupted after step 10 and continued at the other world size: 2 ranks × accum 1 by one
    // process (accum 2), and 1 process × accum 2 by 2 ranks (accum 1 each).
    for (run, np, accum) in [(&p.ranks, 1, 2), (&p.one, 2, 1)] {
        let out = cut_at(run, 10, &d.path().join(format!("resumed-by-{np}")));
        match np {
            1 => single(&resume_args(&p, &out, 20)),
            _ => ok_mpi(np, &resume_args(&p, &out, 20)),
        }
        assert_close(&log_losses(&out), want, REL, &format!("resumed by {np}"));
        let last = saved_accum_and_ranks(&out.join("step-00000020"));
        assert_eq!(last, (accum, np as u64));
    }

    // 3 ranks cannot share 2 micro-batches: refused, naming why, on every rank.
    let refused = cut_at(&p.one, 10, &d.path().join("refused"));
    let err = failed_stderr({
        let mut c = mpirun(3, &[]);
        c.args(resume_args(&p, &refused, 20));
        c
    });
    assert!(err.contains("cannot take an equal share"), "{err}");
}

#[test]
fn perturbed_rank_stops_on_weight_hash() {
    let d = tempfile::tempdir().unwrap();
    let (data, tok) = corpus(d.path(), "tok.json", 300);
    let out = d.path().join("run");
    let err = failed_stderr({
        let mut c = mpirun(2, &["-x", "TOKENFORMER_DEBUG_PERTURB_RANK=1"]);
        c.args(train_args(&data, &tok, &out, 20, 1));
        c
    });
    assert!(err.contains("weight hash mismatch"), "{err}");
}

#[test]
fn different_tokenizer_stops_every_rank() {
    let d = tempfile::tempdir().unwrap();
    let (data, tok) = corpus(d.path(), "tok.json", 300);
    let (_, tok2) = corpus(d.path(), "tok2.json", 260);
    let out = d.path().join("run");
    let mut c = mpirun(1, &[]);
    c.args(train_args(&data, &tok, &out, 5, 1))
        .args([":", "-np", "1", BIN])
        .args(train_args(&data, &tok2, &out, 5, 1));
    let err = failed_stderr(c);
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
    let (data, tok) = corpus(d.path(), "tok.json", 300);
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
    let step = step_of(&latest);
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
    let newer = step_of(&tokenformer_latest(&out));
    assert!(newer > step);
}

/// The step of a `step-NNNNNNNN` checkpoint directory.
fn step_of(checkpoint: &Path) -> u64 {
    let name = checkpoint.file_name().and_then(|n| n.to_str()).unwrap();
    name.rsplit('-').next().unwrap().parse().unwrap()
}

fn tokenformer_latest(run: &Path) -> PathBuf {
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

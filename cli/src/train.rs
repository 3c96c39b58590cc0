//! `train`: tokenize once, then train with progress, JSONL log, loss plot, held-out evaluation,
//! crash-safe checkpoints, `--resume`, and a clean save on Ctrl-C.

use crate::{common, plot};
use indicatif::{ProgressBar, ProgressStyle};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokenformer_core::file::ModelFile;
use tokenformer_core::Config;
use tokenformer_train::backend::Backend;
use tokenformer_train::checkpoint::{self, MODEL_FILE};
use tokenformer_train::collective::{Collective, Single, FNV_OFFSET};
use tokenformer_train::data::Draw;
use tokenformer_train::data::{tokenize_files, Windows};
use tokenformer_train::optim::{AdamW, Schedule};
use tokenformer_train::{LogLine, Observer, Outcome, RunConfig, TrainConfig, Trainer};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("model").args(["preset", "config", "from"])))]
pub struct Args {
    /// Text files to train on (a held-out tail of each is kept aside).
    #[arg(long, num_args = 1.., required = true)]
    data: Vec<PathBuf>,
    #[arg(long)]
    tokenizer: PathBuf,
    /// A size preset; the vocabulary is set from the tokenizer.
    #[arg(long)]
    preset: Option<String>,
    /// A config JSON (as `inspect --json` prints under "config").
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue from a model checkpoint (a grown model, say) with a fresh optimizer and schedule.
    #[arg(long)]
    from: Option<PathBuf>,
    /// Run directory: checkpoints, log.jsonl, loss.svg, the token cache, model.safetensors.
    #[arg(long)]
    out: PathBuf,
    /// Continue the run in --out from its newest checkpoint (its settings win).
    #[arg(long)]
    resume: bool,
    #[arg(long, default_value_t = 1000)]
    steps: u64,
    /// Sequences per micro-batch.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    #[arg(long, default_value_t = 256)]
    seq: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    accum: usize,
    #[arg(long, default_value_t = 6e-4)]
    lr: f32,
    /// Final learning rate as a fraction of the peak.
    #[arg(long, default_value_t = 0.1)]
    min_lr_ratio: f32,
    /// Warmup steps (default: 1 % of --steps, at least 1).
    #[arg(long)]
    warmup: Option<u64>,
    #[arg(long, default_value_t = 0.1)]
    weight_decay: f32,
    #[arg(long, default_value_t = 0.9)]
    beta1: f32,
    #[arg(long, default_value_t = 0.95)]
    beta2: f32,
    #[arg(long, default_value_t = 1e-8)]
    eps: f32,
    /// Global gradient-norm clip (0 disables).
    #[arg(long, default_value_t = 1.0)]
    clip: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fraction of each file's text kept as held-out.
    #[arg(long, default_value_t = 0.02)]
    heldout_frac: f64,
    #[arg(long, default_value_t = 100)]
    eval_every: u64,
    /// Held-out windows per periodic evaluation (the final one uses all of them).
    #[arg(long, default_value_t = 32)]
    eval_windows: usize,
    #[arg(long, default_value_t = 500)]
    save_every: u64,
    /// Checkpoints kept (0 keeps all).
    #[arg(long, default_value_t = 3)]
    keep: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Storage type of the final model.safetensors.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// No progress bar (logs a line per evaluation instead).
    #[arg(long)]
    quiet: bool,
    /// Where to train: cpu, or cuda / cuda:N (a build with `--features cuda`). Checkpoints are
    /// the same on every device.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Arithmetic of the products: f32 (exact, the parity mode) or bf16 (CUDA only: bf16
    /// operands, f32 accumulation, f32 weights, moments, norms and loss).
    #[arg(long, default_value = "f32")]
    precision: String,
}

fn model_config(a: &Args, tokenizer_vocab: usize) -> Result<Config, String> {
    let mut cfg = match (&a.preset, &a.config) {
        (Some(p), _) => Config::preset(p).map_err(|e| e.to_string())?,
        (None, Some(path)) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            serde_json::from_str(&text)
                .map_err(|e| format!("{}: invalid config: {e}", path.display()))?
        }
        (None, None) => return Err("give --preset, --config or --from".into()),
    };
    if a.preset.is_some() {
        cfg.tokenizer_vocab = tokenizer_vocab;
        cfg.vocab_size = tokenizer_vocab.div_ceil(64) * 64;
        cfg.max_context = cfg.max_context.max(a.seq);
    }
    if cfg.tokenizer_vocab < tokenizer_vocab {
        return Err(format!(
            "the config's tokenizer_vocab {} is smaller than the tokenizer's {tokenizer_vocab} ids",
            cfg.tokenizer_vocab
        ));
    }
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

fn train_config(a: &Args) -> Result<TrainConfig, String> {
    if a.batch == 0 || a.seq == 0 || a.accum == 0 || a.steps == 0 {
        return Err("--batch, --seq, --accum and --steps must be positive".into());
    }
    if !(a.lr.is_finite() && a.lr > 0.0) {
        return Err(format!("--lr must be a positive number, got {}", a.lr));
    }
    Ok(TrainConfig {
        batch: a.batch,
        seq: a.seq,
        accum: a.accum,
        steps: a.steps,
        optim: AdamW {
            lr: a.lr,
            beta1: a.beta1,
            beta2: a.beta2,
            eps: a.eps,
            weight_decay: a.weight_decay,
            clip: a.clip,
        },
        schedule: Schedule {
            warmup: a.warmup.unwrap_or((a.steps / 100).max(1)),
            total: a.steps,
            min_lr_ratio: a.min_lr_ratio,
        },
        seed: a.seed,
    })
}

/// The progress bar (or, with `--quiet`, a line per evaluation) and `loss.svg` after each
/// evaluation.
struct Progress {
    bar: ProgressBar,
    quiet: bool,
    plot: PathBuf,
}

impl Observer for Progress {
    fn start(&mut self, step: u64, steps: u64) {
        self.bar.set_length(steps);
        self.bar.set_position(step);
    }

    fn step(&mut self, log: &[LogLine]) -> io::Result<()> {
        let Some(l) = log.last() else { return Ok(()) };
        self.bar.set_position(l.step);
        let (loss, lr, tps) = (l.loss, l.lr, l.tokens_per_s);
        self.bar
            .set_message(format!("loss {loss:.3} lr {lr:.1e} {tps:.0} tok/s"));
        let heldout = l.heldout_loss_all.or(l.heldout_loss);
        if let (Some(hl), true) = (heldout, self.quiet) {
            eprintln!(
                "step {} loss {loss:.4} held-out {hl:.4} lr {lr:.2e} {tps:.0} tok/s",
                l.step
            );
        }
        if heldout.is_some() || Some(l.step) == self.bar.length() {
            plot::write_loss_svg(&self.plot, log)?;
        }
        Ok(())
    }
}

/// A test hook of the data-parallel checks: the rank named by this variable adds 1e-3 to its
/// first weight after loading, so the weight-hash comparison must stop the run.
const PERTURB_RANK_VAR: &str = "TOKENFORMER_DEBUG_PERTURB_RANK";

fn hash_bytes(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

fn hash_file(path: &std::path::Path) -> Result<u64, String> {
    std::fs::read(path)
        .map(|b| hash_bytes(&b))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Rank 0's digest of the run's inputs against this rank's: every rank learns which parts
/// differ on some rank (the same answer everywhere, so all of them stop together).
fn check_digest(a: &Args, comm: &dyn Collective) -> Result<(), String> {
    let config = match (&a.preset, &a.config, &a.from) {
        (Some(p), _, _) => hash_bytes(p.as_bytes()),
        (None, Some(path), _) | (None, None, Some(path)) => hash_file(path)?,
        _ => 0,
    };
    let mut data = FNV_OFFSET;
    for f in &a.data {
        data = data.rotate_left(5) ^ hash_file(f)?;
    }
    let settings = format!(
        "{:?} {} {} {} {} {} {:?} {} {} {} {} {} {} {} {}",
        train_config(a).ok(),
        a.resume,
        a.heldout_frac,
        a.eval_every,
        a.eval_windows,
        a.save_every,
        a.keep,
        a.dtype,
        a.out.display(),
        a.lr,
        a.beta1,
        a.beta2,
        a.eps,
        a.weight_decay,
        a.clip
    );
    let parts = [
        ("model config", config),
        ("tokenizer", hash_file(&a.tokenizer)?),
        ("data files", data),
        ("run settings", hash_bytes(settings.as_bytes())),
    ];
    let mine: Vec<u8> = parts.iter().flat_map(|p| p.1.to_le_bytes()).collect();
    let mut root = mine.clone();
    comm.broadcast(&mut root);
    let differ: Vec<&str> = parts
        .iter()
        .enumerate()
        .filter(|(i, _)| comm.any(root[i * 8..i * 8 + 8] != mine[i * 8..i * 8 + 8]))
        .map(|(_, p)| p.0)
        .collect();
    if differ.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "startup check: the {} differ between ranks (rank 0's against another's); every rank \
             must be given the same arguments and files",
            differ.join(", ")
        ))
    }
}

pub fn run(a: Args) -> Result<(), String> {
    // The device first: a missing GPU, a precision the device lacks, or a model that does not
    // fit fails before anything under --out is touched.
    let precision = crate::device::precision(&a.precision)?;
    let device = crate::device::parse(&a.device)?;
    // Over MPI when launched by `mpirun` (feature `mpi`).
    #[cfg(feature = "mpi")]
    let mpi = tokenformer_train::collective::mpi::Mpi::init();
    #[cfg(feature = "mpi")]
    let host: &dyn Collective = match &mpi {
        Some(m) => m,
        None => &Single,
    };
    #[cfg(not(feature = "mpi"))]
    let host: &dyn Collective = &Single;
    let size = host.size();
    let result = on_device(device, precision, a, host);
    if let (Err(e), true) = (&result, size > 1) {
        // A rank that stops alone would leave the others waiting in a collective.
        eprintln!("error (rank {} of {size}): {e}", host.rank());
        host.abort(1);
    }
    result
}

/// Training on `device`. With several ranks, rank r of a node takes GPU N + r for
/// `--device cuda:N`, and (feature `nccl`) the ranks sum their gradients over NCCL.
fn on_device(
    device: crate::device::Device,
    precision: tokenformer_train::backend::Precision,
    a: Args,
    host: &dyn Collective,
) -> Result<(), String> {
    match device {
        crate::device::Device::Cpu => train_on(&crate::device::cpu(precision)?, a, host),
        #[cfg(feature = "cuda")]
        crate::device::Device::Cuda(i) => {
            let gpu = i + host.node_rank();
            if let (true, Ok(n)) = (
                host.size() > 1,
                tokenformer_train::backend::cuda::device_count(),
            ) {
                if gpu >= n {
                    return Err(format!(
                        "--device cuda:{i}: rank {} of this node takes GPU {gpu}, this machine \
                         has {n}: start at most {} ranks per node",
                        host.node_rank(),
                        n.saturating_sub(i)
                    ));
                }
            }
            let be = crate::device::cuda(gpu, precision)?;
            let need = footprint(&a, precision)?;
            crate::device::check_fits(&be, gpu, need.total())?;
            #[cfg(feature = "nccl")]
            if host.size() > 1 {
                let nccl = tokenformer_train::collective::nccl::Nccl::new(host, &be)
                    .map_err(|e| format!("--device {}: NCCL: {e}", a.device))?;
                return train_on(&be, a, &nccl);
            }
            train_on(&be, a, host)
        }
        #[cfg(not(feature = "cuda"))]
        crate::device::Device::Cuda(i) => Err(crate::device::no_cuda(i)),
    }
}

/// The device memory this run will need, from its model and batch as `run_on` will choose
/// them, reading (never writing) the tokenizer, --from, --config or the checkpoint to resume.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn footprint(
    a: &Args,
    precision: tokenformer_train::backend::Precision,
) -> Result<tokenformer_train::footprint::Footprint, String> {
    let resume = if a.resume {
        checkpoint::latest(&a.out).map_err(|e| e.to_string())?
    } else {
        None
    };
    let (cfg, tc) = match (&resume, &a.from) {
        (Some(dir), _) => {
            let state = checkpoint::read_state(dir).map_err(|e| e.to_string())?;
            (
                model_file_config(&dir.join(MODEL_FILE))?,
                state.train_config,
            )
        }
        (None, Some(path)) => (model_file_config(path)?, train_config(a)?),
        (None, None) => {
            let tok = common::load_tokenizer(&a.tokenizer)?;
            (model_config(a, tok.get_vocab_size(true))?, train_config(a)?)
        }
    };
    let rows = tokenformer_train::Rows {
        batch: tc.batch,
        seq: tc.seq,
    };
    Ok(tokenformer_train::footprint::training(
        &cfg, rows, tc.accum, precision,
    ))
}

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn model_file_config(path: &std::path::Path) -> Result<Config, String> {
    let f = ModelFile::open(path).map_err(|e| e.to_string())?;
    let m = f.model().map_err(|e| e.to_string())?;
    Ok(m.config.clone())
}

/// Training on one device with the ranks of `comm`.
fn train_on<B: Backend>(be: &B, a: Args, comm: &dyn Collective) -> Result<(), String> {
    if comm.size() > 1 {
        // Every rank reaches the same verdict.
        check_digest(&a, comm)?;
    }
    run_on(be, a, comm)
}

fn run_on<B: Backend>(be: &B, a: Args, comm: &dyn Collective) -> Result<(), String> {
    let lead = comm.rank() == 0;
    if let Some(t) = a.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t.max(1))
            .build_global()
            .map_err(|e| format!("--threads: {e}"))?;
    }
    let dtype = crate::init::parse_dtype(&a.dtype)
        .map_err(|_| format!("--dtype must be f32, f16 or bf16, got `{}`", a.dtype))?;
    let tok = common::load_tokenizer(&a.tokenizer)?;
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    // The token cache is built once per node, by its first rank; the others then read it.
    let tokenize = || {
        tokenize_files(&a.data, &tok, a.heldout_frac, &a.out.join("data"))
            .map_err(|e| e.to_string())
    };
    let built = (comm.node_rank() == 0).then(tokenize).transpose()?;
    comm.barrier();
    let corpus = match built {
        Some(c) => c,
        None => tokenize()?,
    };
    if lead {
        eprintln!(
            "data: {} training tokens ({} bytes), {} held-out tokens ({} bytes){}",
            corpus.train.len(),
            corpus.train_bytes,
            corpus.heldout.len(),
            corpus.heldout_bytes,
            if corpus.cached {
                ", from the cache"
            } else {
                ""
            }
        );
    }
    if lead {
        checkpoint::clean_temporaries(&a.out).map_err(|e| e.to_string())?;
    }
    comm.barrier();
    let latest = checkpoint::latest(&a.out).map_err(|e| e.to_string())?;
    let (trainer, mut windows) = if a.resume {
        let dir =
            latest.ok_or_else(|| format!("--resume: no checkpoint in {}", a.out.display()))?;
        let (t, state) = checkpoint::load_checkpoint_for_ranks(be, &dir, comm.size())
            .map_err(|e| e.to_string())?;
        let w = Windows::resume(corpus.train.clone(), &state)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        if w.draw() == Draw::Sequential && comm.size() > 1 {
            return Err(format!(
                "{}: this run was started before the keyed window draw (state.json version 1); \
                 resume it with a single process",
                dir.display()
            ));
        }
        if lead {
            eprintln!("resuming from {} (step {})", dir.display(), t.step);
        }
        (t, w)
    } else {
        if latest.is_some() {
            return Err(format!(
                "{} already holds checkpoints: pass --resume, or choose another --out",
                a.out.display()
            ));
        }
        let tc = train_config(&a)?;
        let model = match &a.from {
            Some(path) => {
                let f = ModelFile::open(path).map_err(|e| e.to_string())?;
                f.model().map_err(|e| e.to_string())?.into_owned()
            }
            None => {
                tokenformer_core::init::init(model_config(&a, tok.get_vocab_size(true))?, a.seed)
                    .map_err(|e| e.to_string())?
            }
        };
        if model.config.tokenizer_vocab < tok.get_vocab_size(true) {
            return Err("the model's vocabulary is smaller than the tokenizer's".into());
        }
        (
            Trainer::new(be, &model, tc),
            Windows::new(corpus.train.clone(), a.seed),
        )
    };
    let mut trainer = trainer.with_collective(comm);
    if std::env::var(PERTURB_RANK_VAR).ok() == Some(comm.rank().to_string()) {
        let t = &mut trainer.params.tensors[0];
        let mut host = be.download(t);
        host[0] += 1e-3;
        *t = be.upload(&host);
    }
    let (tc, cfg) = (&trainer.tc, &trainer.params.config);
    let ranks = comm.size();
    if lead {
        eprintln!(
        "model: {} parameters ({} layers, d {}, tokens {}/{}/{}); global batch {ranks} ranks × {} \
         × {} accum = {} tokens per step, {} steps",
        cfg.param_count(),
        cfg.n_layers,
        cfg.d_model,
        cfg.qkv_tokens,
        cfg.proj_tokens,
        cfg.ffn_tokens,
        tc.batch,
        tc.accum,
        trainer.global_tokens_per_step(),
        tc.steps
    );
    }
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // A second Ctrl-C while saving falls through to the default handler only after the save.
        let _ = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst));
    }
    let bar = if a.quiet || !lead {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut progress = Progress {
        bar,
        quiet: a.quiet,
        plot: a.out.join("loss.svg"),
    };
    let rc = RunConfig {
        out: Some(a.out.clone()),
        eval_every: a.eval_every,
        eval_windows: a.eval_windows,
        save_every: a.save_every,
        keep: a.keep,
    };
    let heldout = corpus.heldout.to_vec();
    let observer: &mut dyn Observer = if lead { &mut progress } else { &mut () };
    let outcome =
        tokenformer_train::run(&mut trainer, &mut windows, &heldout, &rc, &stop, observer);
    let seq = trainer.tc.seq;
    match outcome {
        Err(e) => {
            progress.bar.abandon();
            return Err(format!(
                "{e} (checkpoints in {} are untouched)",
                a.out.display()
            ));
        }
        Ok(_) if !lead => return Ok(()),
        Ok(Outcome::Stopped { checkpoint }) => {
            progress.bar.abandon();
            let dir = checkpoint.unwrap_or_default();
            eprintln!(
                "interrupted: saved {} at step {}; continue with --resume",
                dir.display(),
                trainer.step
            );
        }
        Ok(Outcome::Finished {
            heldout_loss_all,
            windows,
        }) => {
            progress.bar.finish();
            if let Some(hl) = heldout_loss_all {
                eprintln!(
                    "held-out: loss {hl:.4} nats/token over {} tokens in {windows} windows of {seq}",
                    windows * seq,
                );
            }
        }
    }
    let model = trainer.params.to_model(be).map_err(|e| e.to_string())?;
    let path = a.out.join(MODEL_FILE);
    common::save(&path, &model, dtype, &[])?;
    eprintln!(
        "wrote {} (step {}, {} tokens seen)",
        path.display(),
        trainer.step,
        trainer.tokens_seen
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use tokenformer_train::backend::Precision;
    use tokenformer_train::footprint::training;
    use tokenformer_train::{Cpu, Rows};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: Args,
    }

    fn args(extra: &[&str]) -> Args {
        let base = ["t", "--data", "d.txt", "--tokenizer", "tok.json"];
        Cli::try_parse_from(base.iter().chain(extra)).unwrap().a
    }

    /// The memory check (run before a GPU run touches --out) sizes the model and batch that
    /// training will use: --from's model with the command line's batch, or on --resume the
    /// checkpoint's model and batch; it writes nothing.
    #[test]
    fn the_memory_check_sizes_the_model_and_batch_that_will_train() {
        let dir = tempfile::tempdir().unwrap();
        let model = tokenformer_core::init::init(Config::preset("tiny").unwrap(), 1).unwrap();
        let path = dir.path().join("m.safetensors");
        common::save(&path, &model, tokenformer_core::DType::F32, &[]).unwrap();
        let run = dir.path().join("run");
        let (p, r) = (path.to_str().unwrap(), run.to_str().unwrap());
        let a = args(&[
            "--from", p, "--out", r, "--batch", "3", "--seq", "32", "--accum", "2",
        ]);
        let rows = Rows { batch: 3, seq: 32 };
        let want = training(&model.config, rows, 2, Precision::F32);
        assert_eq!(footprint(&a, Precision::F32).unwrap(), want);
        assert!(!run.exists(), "the check created --out");

        let t = Trainer::new(&Cpu, &model, train_config(&a).unwrap());
        checkpoint::save_checkpoint(&run, &t, serde_json::Value::Null, 0).unwrap();
        let b = args(&["--resume", "--out", r, "--batch", "5", "--seq", "8"]);
        let want = training(&model.config, rows, 2, Precision::Bf16);
        assert_eq!(footprint(&b, Precision::Bf16).unwrap(), want);
    }
}

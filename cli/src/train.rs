//! `train`: tokenize once, then train with progress, JSONL log, loss plot, held-out evaluation,
//! crash-safe checkpoints, `--resume`, and a clean save on Ctrl-C.

use crate::common;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokenformer_core::file::{save, ModelFile};
use tokenformer_core::{Config, DType};
use tokenformer_train::checkpoint::{self, MODEL_FILE};
use tokenformer_train::data::{heldout_windows, tokenize_files, Corpus, Windows, WindowsState};
use tokenformer_train::optim::{AdamW, Schedule};
use tokenformer_train::{BatchSource, Cpu, TrainConfig, Trainer};

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
}

/// `Windows` as the trainer's batch source.
struct Source(Windows);

impl BatchSource for Source {
    fn next_batch(
        &mut self,
        b: usize,
        s: usize,
        i: &mut Vec<u32>,
        t: &mut Vec<u32>,
    ) -> Result<(), String> {
        self.0.next_batch(b, s, i, t).map_err(|e| e.to_string())
    }
    fn state(&self) -> serde_json::Value {
        serde_json::to_value(self.0.state()).unwrap_or_default()
    }
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

/// Append-only JSONL log; on resume, lines past the resumed step are dropped.
struct Log {
    path: PathBuf,
    train: Vec<(u64, f64)>,
    heldout: Vec<(u64, f64)>,
}

impl Log {
    fn open(dir: &Path, resume_step: u64) -> Result<Log, String> {
        let path = dir.join("log.jsonl");
        let mut log = Log {
            path,
            train: Vec::new(),
            heldout: Vec::new(),
        };
        let mut kept = String::new();
        if let Ok(text) = std::fs::read_to_string(&log.path) {
            for line in text.lines() {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                let step = v["step"].as_u64().unwrap_or(u64::MAX);
                if step > resume_step {
                    continue;
                }
                log.record(&v);
                kept.push_str(line);
                kept.push('\n');
            }
        }
        tokenformer_core::file::write_atomic(&log.path, |w| w.write_all(kept.as_bytes()))
            .map_err(|e| format!("{}: {e}", log.path.display()))?;
        Ok(log)
    }

    fn record(&mut self, v: &serde_json::Value) {
        let step = v["step"].as_u64().unwrap_or(0);
        if let Some(l) = v["loss"].as_f64() {
            self.train.push((step, l));
        }
        if let Some(l) = v["heldout_loss"].as_f64() {
            self.heldout.push((step, l));
        }
    }

    fn append(&mut self, v: serde_json::Value) -> Result<(), String> {
        self.record(&v);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        writeln!(f, "{v}").map_err(|e| format!("{}: {e}", self.path.display()))
    }

    fn plot(&self, dir: &Path) -> Result<(), String> {
        let svg = tokenformer_train::plot::loss_svg(
            &self.train,
            &self.heldout,
            "TokenFormer training loss (nats/token)",
        );
        let path = dir.join("loss.svg");
        tokenformer_core::file::write_atomic(&path, |w| w.write_all(svg.as_bytes()))
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

pub fn run(a: Args) -> Result<(), String> {
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
    let corpus = tokenize_files(&a.data, &tok, a.heldout_frac, &a.out.join("data"))
        .map_err(|e| e.to_string())?;
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
    let be = Cpu;
    checkpoint::clean_temporaries(&a.out).map_err(|e| e.to_string())?;
    let (mut trainer, windows) = if a.resume {
        let dir = checkpoint::latest(&a.out)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("--resume: no checkpoint in {}", a.out.display()))?;
        let (t, state) = checkpoint::load_checkpoint(&be, &dir).map_err(|e| e.to_string())?;
        let ws: WindowsState = serde_json::from_value(state)
            .map_err(|e| format!("{}: bad data state: {e}", dir.display()))?;
        let w = Windows::from_state(corpus.train.clone(), &ws).map_err(|e| e.to_string())?;
        eprintln!("resuming from {} (step {})", dir.display(), t.step);
        (t, w)
    } else {
        if checkpoint::latest(&a.out)
            .map_err(|e| e.to_string())?
            .is_some()
        {
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
            Trainer::new(&be, &model, tc),
            Windows::new(corpus.train.clone(), a.seed),
        )
    };
    run_loop(&a, &be, &mut trainer, Source(windows), &corpus, dtype)
}

fn run_loop(
    a: &Args,
    be: &Cpu,
    t: &mut Trainer<'_, Cpu>,
    mut src: Source,
    corpus: &Corpus,
    dtype: DType,
) -> Result<(), String> {
    let tc = t.tc.clone();
    let cfg = t.params.config.clone();
    eprintln!(
        "model: {} parameters ({} layers, d {}, tokens {}/{}/{}); {} tokens per step, {} steps",
        cfg.param_count(),
        cfg.n_layers,
        cfg.d_model,
        cfg.qkv_tokens,
        cfg.proj_tokens,
        cfg.ffn_tokens,
        tc.tokens_per_step(),
        tc.steps
    );
    let heldout = corpus.heldout.to_vec();
    let all_windows = heldout_windows(&heldout, tc.seq, usize::MAX);
    let eval_set = heldout_windows(&heldout, tc.seq, a.eval_windows);
    let mut log = Log::open(&a.out, t.step)?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // A second Ctrl-C while saving falls through to the default handler only after the save.
        let _ = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst));
    }
    let bar = if a.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(tc.steps)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(t.step);
    let save = |t: &Trainer<'_, Cpu>, src: &Source| -> Result<PathBuf, String> {
        checkpoint::save_checkpoint(&a.out, t, src.state(), a.keep).map_err(|e| e.to_string())
    };
    let mut window_start = Instant::now();
    let mut window_tokens = 0u64;
    let mut tps = 0.0;
    let mut final_heldout = None;
    while t.step < tc.steps {
        if stop.load(Ordering::SeqCst) {
            let dir = save(t, &src)?;
            bar.abandon();
            eprintln!(
                "interrupted: saved {} at step {}; continue with --resume",
                dir.display(),
                t.step
            );
            return write_final(a, t, be, dtype);
        }
        let s = match t.step(&mut src) {
            Ok(s) => s,
            Err(e) => {
                bar.abandon();
                return Err(format!(
                    "{e} (checkpoints in {} are untouched)",
                    a.out.display()
                ));
            }
        };
        window_tokens += tc.tokens_per_step() as u64;
        let secs = window_start.elapsed().as_secs_f64();
        if secs > 2.0 {
            tps = window_tokens as f64 / secs;
            window_start = Instant::now();
            window_tokens = 0;
        } else if tps == 0.0 {
            tps = window_tokens as f64 / secs.max(1e-9);
        }
        let mut entry = serde_json::json!({
            "step": s.step, "loss": s.loss, "lr": s.lr, "grad_norm": s.grad_norm,
            "tokens": t.tokens_seen, "tokens_per_s": tps,
        });
        if s.step % a.eval_every == 0 || s.step == tc.steps {
            let set = if s.step == tc.steps {
                &all_windows
            } else {
                &eval_set
            };
            let hl = tokenformer_train::trainer::eval_loss(be, &t.params, set, tc.batch);
            entry["heldout_loss"] = hl.into();
            if s.step == tc.steps {
                final_heldout = Some(hl);
            }
            if a.quiet {
                eprintln!(
                    "step {} loss {:.4} held-out {:.4} lr {:.2e} {:.0} tok/s",
                    s.step, s.loss, hl, s.lr, tps
                );
            }
        }
        log.append(entry)?;
        bar.set_position(s.step);
        bar.set_message(format!(
            "loss {:.3} lr {:.1e} {:.0} tok/s",
            s.loss, s.lr, tps
        ));
        if s.step % a.eval_every == 0 || s.step == tc.steps {
            log.plot(&a.out)?;
        }
        if s.step % a.save_every == 0 || s.step == tc.steps {
            save(t, &src)?;
        }
    }
    bar.finish();
    if let Some(hl) = final_heldout {
        eprintln!(
            "held-out: loss {hl:.4} nats/token over {} tokens in {} windows of {}",
            all_windows.len() * tc.seq,
            all_windows.len(),
            tc.seq
        );
    }
    write_final(a, t, be, dtype)
}

fn write_final(a: &Args, t: &Trainer<'_, Cpu>, be: &Cpu, dtype: DType) -> Result<(), String> {
    let model = t.params.to_model(be).map_err(|e| e.to_string())?;
    let path = a.out.join(MODEL_FILE);
    save(&path, &model, dtype, &[]).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!(
        "wrote {} (step {}, {} tokens seen)",
        path.display(),
        t.step,
        t.tokens_seen
    );
    Ok(())
}

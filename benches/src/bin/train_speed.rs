//! Training throughput of the CPU backend, and the same model and batch in PyTorch, in one run.
//!
//! ```text
//! cargo run --release -p tokenformer-benches --bin train_speed -- [--threads T] [--layers L]
//!     [--d D] [--heads H] [--qkv N] [--proj N] [--ffn N] [--vocab V] [--batch B] [--seq S]
//!     [--steps N] [--torch] [--device cpu|cuda[:N]] [--precision f32|bf16] [--peak-tflops P]
//! ```
//!
//! `--device cuda` (a build with `--features cuda`) also prints the model FLOPs utilisation:
//! FLOPs per token = 6 × parameters (the tied embedding once) + 12 × layers × d × seq (attention),
//! as llm.c and PaLM count, over `--peak-tflops` (default: an H100 / H200's dense rate, 67 in
//! f32 and 989 in bf16 on the tensor cores; give another device's own figure).
//!
//! Also prints the achieved GFLOP/s (tokens/s × the FLOPs per token above) and, on the CPU, the
//! GFLOP/s of a 512³ gemm measured in the same run at the same thread count: the fraction of
//! the machine's limit that training reaches (the torch line gets the same two figures).
//!
//! With `--torch`, runs benches/peers/train_torch.py (PyTorch installed by hand, never in CI)
//! with the same arguments and prints the ratio.

use std::io;
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use tokenformer_core::init::init;
use tokenformer_core::{Config, Rng, ThetaKind};
use tokenformer_train::backend::{Backend, Precision};
use tokenformer_train::data::DataError;
use tokenformer_train::optim::{AdamW, Schedule};
use tokenformer_train::{BatchSource, Cpu, LogLine, Observer, RunConfig, TrainConfig, Trainer};

struct RandomTokens(Rng, u32);

impl BatchSource for RandomTokens {
    fn next_batch(
        &mut self,
        batch: usize,
        seq: usize,
        i: &mut Vec<u32>,
        o: &mut Vec<u32>,
    ) -> Result<(), DataError> {
        *i = (0..batch * seq)
            .map(|_| self.0.below(self.1 as u64) as u32)
            .collect();
        *o = (0..batch * seq)
            .map(|_| self.0.below(self.1 as u64) as u32)
            .collect();
        Ok(())
    }
    fn state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// Starts the clock when the first (warm-up) step is done.
struct Clock(Option<Instant>);

impl Observer for Clock {
    fn step(&mut self, _log: &[LogLine]) -> io::Result<()> {
        self.0.get_or_insert_with(Instant::now);
        Ok(())
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get_s = |name: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    let (device, precision) = (get_s("--device", "cpu"), get_s("--precision", "f32"));
    let precision: Precision = precision.parse().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    // An H100 / H200's dense rates: f32 on the CUDA cores, bf16 on the tensor cores.
    let default_peak = match precision {
        Precision::F32 => "67",
        Precision::Bf16 => "989",
    };
    let peak_tflops: f64 = get_s("--peak-tflops", default_peak)
        .parse()
        .expect("--peak-tflops wants a number");
    let get = |name: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name} wants a number"))
            })
            .unwrap_or(default)
    };
    let threads = get("--threads", 2);
    let (layers, d, heads) = (get("--layers", 4), get("--d", 256), get("--heads", 4));
    let (qkv, proj, ffn) = (get("--qkv", 256), get("--proj", 256), get("--ffn", 1024));
    let (vocab, batch, seq, steps) = (
        get("--vocab", 4096),
        get("--batch", 8),
        get("--seq", 256),
        get("--steps", 5),
    );
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("rayon pool");

    let cfg = Config {
        n_layers: layers,
        d_model: d,
        n_heads: heads,
        qkv_tokens: qkv,
        proj_tokens: proj,
        ffn_tokens: ffn,
        qkv_scale_tokens: qkv,
        proj_scale_tokens: proj,
        ffn_scale_tokens: ffn,
        rotary_pct: 0.25,
        rotary_base: 10000.0,
        norm: ThetaKind::L2NormGelu,
        vocab_size: vocab,
        tokenizer_vocab: vocab,
        max_context: seq,
        layer_norm_eps: 1e-5,
    };
    let model = init(cfg.clone(), 0).expect("config");
    let tc = TrainConfig {
        batch,
        seq,
        accum: 1,
        steps: steps as u64 + 1,
        optim: AdamW::default(),
        schedule: Schedule {
            warmup: 1,
            total: steps as u64 + 1,
            min_lr_ratio: 0.1,
        },
        seed: 0,
    };
    let secs = match device.as_str() {
        "cpu" => {
            tokenformer_train::backend::cpu_precision(precision).unwrap_or_else(|e| {
                eprintln!("--device cpu: {e}");
                std::process::exit(2)
            });
            measure(&Cpu, &model, tc, vocab)
        }
        #[cfg(feature = "cuda")]
        dev if dev.starts_with("cuda") => {
            let index = dev
                .strip_prefix("cuda:")
                .map_or(0, |i| i.parse().expect("cuda:N"));
            let be =
                tokenformer_train::backend::cuda::CudaBackend::with_precision(index, precision)
                    .unwrap_or_else(|e| {
                        eprintln!("--device {dev}: {e}");
                        std::process::exit(1)
                    });
            eprintln!("device: {}", be.describe());
            measure(&be, &model, tc, vocab)
        }
        dev => {
            eprintln!(
                "--device {dev}: not available in this build (cpu, or cuda with --features cuda)"
            );
            std::process::exit(1)
        }
    };
    let ours = (steps * batch * seq) as f64 / secs;
    let flops_per_token = 6.0 * cfg.param_count() as f64 + 12.0 * (layers * d * seq) as f64;
    let mfu = ours * flops_per_token / (peak_tflops * 1e12);
    // The machine's limit as this run sees it: gemm on a 512³ product at the same thread count.
    let gemm512 =
        (device == "cpu").then(|| tokenformer_core::kernels::gemm::gemm_512_flops(threads) / 1e9);
    let gflops = |tok_s: f64| tok_s * flops_per_token / 1e9;
    let of_gemm = |tok_s: f64| {
        gemm512.map_or(String::new(), |g| {
            format!(
                ", \"gemm512_gflops\": {g:.1}, \"fraction_of_gemm512\": {:.3}",
                gflops(tok_s) / g
            )
        })
    };
    println!(
        "{{\"impl\": \"tokenformer-train {device}\", \"precision\": \"{}\", \"threads\": {threads}, \"params\": {}, \"tokens_per_s\": {ours:.1}, \"step_ms\": {:.1}, \"gflops\": {:.1}{}, \"mfu\": {mfu:.4}, \"peak_tflops\": {peak_tflops}}}",
        precision.name(),
        cfg.param_count(),
        secs * 1e3 / steps as f64,
        gflops(ours),
        of_gemm(ours),
    );
    if args.iter().any(|a| a == "--torch") {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/train_torch.py");
        let out = std::process::Command::new("python3")
            .arg(script)
            .args([
                "--layers",
                &layers.to_string(),
                "--d",
                &d.to_string(),
                "--heads",
                &heads.to_string(),
            ])
            .args([
                "--qkv-tokens",
                &qkv.to_string(),
                "--proj-tokens",
                &proj.to_string(),
                "--ffn-tokens",
                &ffn.to_string(),
            ])
            .args([
                "--vocab",
                &vocab.to_string(),
                "--batch",
                &batch.to_string(),
                "--seq",
                &seq.to_string(),
            ])
            .args([
                "--threads",
                &threads.to_string(),
                "--steps",
                &steps.to_string(),
                "--warmup-steps",
                "1",
            ])
            .output()
            .expect("python3");
        let text = String::from_utf8_lossy(&out.stdout);
        print!("{text}");
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            std::process::exit(1);
        }
        let torch: f64 = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|v| v["tokens_per_s"].as_f64())
            .expect("tokens_per_s in the torch output");
        println!(
            "{{\"impl\": \"torch (same FLOP count)\", \"tokens_per_s\": {torch:.1}, \"gflops\": {:.1}{}}}",
            gflops(torch),
            of_gemm(torch)
        );
        println!("ratio (ours / torch): {:.2}", ours / torch);
    }
}

/// Seconds for the timed steps (after one warm-up step) on backend `be`.
fn measure<B: Backend>(
    be: &B,
    model: &tokenformer_core::Model<'_>,
    tc: TrainConfig,
    vocab: usize,
) -> f64 {
    let mut t = Trainer::new(be, model, tc);
    let mut data = RandomTokens(Rng::new(0), vocab as u32);
    // The training loop itself: no held-out data, no log, no checkpoints.
    let rc = RunConfig {
        out: None,
        eval_every: 0,
        eval_windows: 0,
        save_every: 0,
        keep: 0,
    };
    let mut clock = Clock(None);
    let stop = AtomicBool::new(false);
    tokenformer_train::run(&mut t, &mut data, &[], &rc, &stop, &mut clock).expect("training");
    clock.0.expect("a warm-up step").elapsed().as_secs_f64()
}

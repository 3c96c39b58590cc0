//! `bench`: prompt and decode speed, weight bytes read per decoded token, and this machine's
//! streaming read bandwidth measured in the same run, giving the fraction of it decode reaches;
//! prefill's achieved GFLOP/s beside the same run's f32 gemm 512³ GFLOP/s (the machine's product
//! limit as far as the `gemm` crate reaches it).

use crate::common;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;
use tokenformer_core::kernels::vector::Dispatch;
use tokenformer_core::ops::linalg::Vector;
use tokenformer_core::sample::argmax;
use tokenformer_core::{kernels, DType, Rng, Session};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    model: PathBuf,
    /// Prompt length (random token ids), run as one block.
    #[arg(long, default_value_t = 64)]
    prompt_tokens: usize,
    /// Tokens decoded one at a time after the prompt (greedy).
    #[arg(long, default_value_t = 64)]
    gen_tokens: usize,
    /// Threads the kernels split rows across.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Run the prompt block this many times (a fresh session each) and report the best: the
    /// first run also pays the memory map's page faults.
    #[arg(long, default_value_t = 1)]
    prefill_repeat: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    json: bool,
    /// Copy the weights into heap memory first instead of reading them from the memory map.
    #[arg(long)]
    in_memory: bool,
}

/// Bytes of the buffer the bandwidth is measured on: far past any cache.
const STREAM_BYTES: usize = 512 << 20;

/// Best of several passes of a SIMD sum over a buffer much larger than the caches, split across
/// the pool's threads as the kernels split rows: the streaming read bandwidth in bytes/s.
fn stream_bandwidth() -> f64 {
    use rayon::prelude::*;
    let buf: Vec<f32> = (0..STREAM_BYTES / 4).map(|i| (i % 7) as f32).collect();
    let threads = kernels::threads();
    let chunk = buf.len().div_ceil(threads);
    let mut best = f64::INFINITY;
    let mut sink = 0.0f32;
    for _ in 0..6 {
        let t = Instant::now();
        sink += buf.par_chunks(chunk).map(|c| Dispatch.sum(c)).sum::<f32>();
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(sink);
    STREAM_BYTES as f64 / best
}

/// FLOPs of one prompt block of `t` tokens as `Session::feed` runs it: every layer's products
/// (2 per weight of the layers) and causal attention (4·L·d per attended position) for each row,
/// and the logits of the last row only.
fn prefill_flops(cfg: &tokenformer_core::Config, t: usize) -> f64 {
    let b = cfg.param_breakdown();
    let layer_weights = (b.qkv + b.proj + b.ffn) as f64;
    let attended = (t * (t + 1) / 2) as f64;
    2.0 * layer_weights * t as f64
        + 4.0 * (cfg.n_layers * cfg.d_model) as f64 * attended
        + 2.0 * (cfg.vocab_size * cfg.d_model) as f64
}

/// CPU seconds this process has used (all threads): on a shared machine, decode's CPU time per
/// thread estimates the speed it would have with the cores to itself.
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } == 0;
    if ok {
        ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
    } else {
        f64::NAN
    }
}

pub fn run(a: Args) -> Result<(), String> {
    if a.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    if a.prompt_tokens == 0 || a.gen_tokens == 0 || a.prefill_repeat == 0 {
        return Err("--prompt-tokens, --gen-tokens and --prefill-repeat must be at least 1".into());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build()
        .map_err(|e| format!("cannot start {} threads: {e}", a.threads))?;
    let mf = common::open_model(&a.model)?;
    let file_bytes = mf.bytes().len();
    // --in-memory: the weights copied to anonymous (heap) memory instead of the file's page
    // cache, to tell the kernels' speed from the page cache's layout.
    let heap: Vec<u64>;
    let model = if a.in_memory {
        let mut h = vec![0u64; file_bytes.div_ceil(8)];
        // SAFETY: a byte view of the u64 buffer, within its length.
        let view =
            unsafe { std::slice::from_raw_parts_mut(h.as_mut_ptr().cast::<u8>(), file_bytes) };
        view.copy_from_slice(mf.bytes());
        heap = h;
        // SAFETY: as above; `heap` outlives `model` (declared before it, never mutated again).
        let bytes = unsafe { std::slice::from_raw_parts(heap.as_ptr().cast::<u8>(), file_bytes) };
        tokenformer_core::checkpoint::load(bytes)
            .map_err(|e| format!("{}: {e}", a.model.display()))?
    } else {
        mf.model().map_err(|e| e.to_string())?
    };
    let cfg = model.config.clone();
    if a.prompt_tokens + a.gen_tokens > cfg.max_context {
        return Err(format!(
            "--prompt-tokens {} + --gen-tokens {} exceed the model's max context of {}",
            a.prompt_tokens, a.gen_tokens, cfg.max_context
        ));
    }
    let mut rng = Rng::new(a.seed);
    let prompt: Vec<u32> = (0..a.prompt_tokens)
        .map(|_| (rng.next_u64() % cfg.tokenizer_vocab as u64) as u32)
        .collect();

    let (prefill_s, prefill_cpu_s, decode_s, decode_cpu_s, bandwidth, gemm_fps) =
        pool.install(|| -> Result<_, String> {
            let (mut prefill_s, mut prefill_cpu_s) = (f64::INFINITY, f64::INFINITY);
            let mut s = Session::new(&model);
            let mut logits = Vec::new();
            for _ in 0..a.prefill_repeat {
                s.reset();
                let (t, cpu) = (Instant::now(), cpu_seconds());
                logits = s.feed(&prompt).map_err(|e| e.to_string())?;
                prefill_s = prefill_s.min(t.elapsed().as_secs_f64());
                prefill_cpu_s = prefill_cpu_s.min(cpu_seconds() - cpu);
            }
            let t = Instant::now();
            let cpu = cpu_seconds();
            for _ in 0..a.gen_tokens {
                let next = argmax(&logits[..cfg.tokenizer_vocab]) as u32;
                logits = s.feed(&[next]).map_err(|e| e.to_string())?;
            }
            let decode_s = t.elapsed().as_secs_f64();
            let decode_cpu_s = cpu_seconds() - cpu;
            Ok((
                prefill_s,
                prefill_cpu_s,
                decode_s,
                decode_cpu_s,
                stream_bandwidth(),
                kernels::gemm::gemm_512_flops(kernels::threads()),
            ))
        })?;

    // Per decoded token: every weight once (the tied embedding whole, for the logits) and the
    // KV cache of every layer, keys and values, at that token's position.
    let weight_bytes = model.weight_bytes();
    let kv_per_pos = 2 * cfg.n_layers * cfg.d_model * 4;
    let mean_pos = a.prompt_tokens as f64 + (a.gen_tokens as f64 + 1.0) / 2.0;
    let bytes_per_token = weight_bytes as f64 + kv_per_pos as f64 * mean_pos;
    let prefill_tps = a.prompt_tokens as f64 / prefill_s;
    let prefill_cpu_tps = a.prompt_tokens as f64 / (prefill_cpu_s / a.threads as f64);
    let prefill_gflops = prefill_flops(&cfg, a.prompt_tokens) / prefill_s / 1e9;
    let gemm_gflops = gemm_fps / 1e9;
    let decode_tps = a.gen_tokens as f64 / decode_s;
    let fraction = decode_tps * bytes_per_token / bandwidth;
    let decode_cpu_tps = a.gen_tokens as f64 / (decode_cpu_s / a.threads as f64);
    let layers_format = model
        .layers
        .first()
        .map(|l| l.ffn.keys.format())
        .unwrap_or(DType::F32);
    let embedding_format = model.embedding.format();
    if a.json {
        println!(
            "{}",
            json!({
                "prefill_tokens_per_s": prefill_tps,
                "prefill_cpu_tokens_per_s": prefill_cpu_tps,
                "prefill_gflop_s": prefill_gflops,
                "gemm_512_gflop_s": gemm_gflops,
                "prefill_gemm_fraction": prefill_gflops / gemm_gflops,
                "decode_tokens_per_s": decode_tps,
                "bytes_per_token": bytes_per_token,
                "bandwidth_gb_s": bandwidth / 1e9,
                "bandwidth_fraction": fraction,
                "decode_cpu_tokens_per_s": decode_cpu_tps,
                "threads": a.threads,
                "instruction_set": kernels::instruction_set(),
                "block_dots": kernels::block_dots(),
                "format": layers_format.name(),
                "embedding_format": embedding_format.name(),
                "weight_bytes": weight_bytes,
                "file_bytes": file_bytes,
                "prompt_tokens": a.prompt_tokens,
                "gen_tokens": a.gen_tokens,
            })
        );
    } else {
        println!(
            "model: {} ({} layers, embedding {}, {:.1} MB file)",
            a.model.display(),
            layers_format,
            embedding_format,
            file_bytes as f64 / 1e6
        );
        println!(
            "kernels: {} (quantized dots: {}), {} thread(s)",
            kernels::instruction_set(),
            kernels::block_dots(),
            a.threads
        );
        println!(
            "prefill: {prefill_tps:.1} tokens/s ({} tokens; {prefill_cpu_tps:.1} per CPU-second per thread)",
            a.prompt_tokens
        );
        println!(
            "prefill: {prefill_gflops:.1} GFLOP/s; gemm 512³ f32: {gemm_gflops:.1} GFLOP/s (fraction {:.2})",
            prefill_gflops / gemm_gflops
        );
        println!(
            "decode: {decode_tps:.2} tokens/s ({} tokens; {decode_cpu_tps:.2} per CPU-second per thread)",
            a.gen_tokens
        );
        println!(
            "bytes read per decoded token: {:.1} MB",
            bytes_per_token / 1e6
        );
        println!("streaming read bandwidth: {:.2} GB/s", bandwidth / 1e9);
        println!("bandwidth fraction: {fraction:.3}");
    }
    Ok(())
}

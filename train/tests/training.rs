//! Training as a whole: train and core compute the same function (proptest), a checkpoint that
//! core loads reproduces train's logits, resume is bit-identical, a crash before the rename leaves
//! the previous checkpoint loadable, non-finite losses stop cleanly, and loss falls. `run`: a
//! run stopped by its flag or crashed, then resumed, logs exactly the uninterrupted run.

#[path = "support/synthetic.rs"]
mod synthetic;

use proptest::prelude::*;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use synthetic::Synthetic;
use tokenformer_core::file::ModelFile;
use tokenformer_core::init::init;
use tokenformer_core::{Config, Rng, Session, ThetaKind};
use tokenformer_train::checkpoint::{self, MODEL_FILE};
use tokenformer_train::data::heldout_windows;
use tokenformer_train::data::DataError;
use tokenformer_train::{
    run, BatchSource, Cpu, LogLine, Observer, Outcome, Params, Rows, RunConfig, RunError, Tape,
    TrainConfig, TrainError, Trainer,
};

fn tc(steps: u64) -> TrainConfig {
    synthetic::train_config(2, steps)
}

fn tiny() -> Config {
    Config::preset("tiny").unwrap()
}

fn arb_config() -> impl Strategy<Value = Config> {
    (
        1usize..3,
        1usize..4,
        1usize..5,
        1usize..9,
        1usize..9,
        1usize..17,
        0usize..3,
    )
        .prop_map(|(layers, heads, hd4, nq, np, nf, norm)| {
            let d = heads * hd4 * 4;
            Config {
                n_layers: layers,
                d_model: d,
                n_heads: heads,
                qkv_tokens: nq,
                proj_tokens: np,
                ffn_tokens: nf,
                qkv_scale_tokens: nq,
                proj_scale_tokens: np,
                ffn_scale_tokens: nf,
                rotary_pct: 0.5,
                rotary_base: 10000.0,
                norm: [
                    ThetaKind::L2NormGelu,
                    ThetaKind::GeluL2Norm,
                    ThetaKind::Softmax,
                ][norm],
                vocab_size: 23,
                tokenizer_vocab: 20,
                max_context: 32,
                layer_norm_eps: 1e-5,
            }
        })
}

/// max |a − b| / max(1, max |b|).
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let scale = b.iter().fold(1.0f64, |m, v| m.max(v.abs() as f64));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() as f64)
        .fold(0.0, f64::max)
        / scale
}

/// Train's logits for `batch` sequences against core's `Session`, one sequence at a time.
fn parity(
    be: &Cpu,
    params: &Params<Cpu>,
    model: &tokenformer_core::Model<'_>,
    tokens: &[u32],
    seq: usize,
) -> f64 {
    let rows = Rows {
        batch: tokens.len() / seq,
        seq,
    };
    let mut tape = Tape::new(be, params, rows);
    let logits = tape.forward(tokens);
    let train_logits = tape.value(logits).clone();
    let mut worst = 0.0f64;
    for (b, s) in tokens.chunks(seq).enumerate() {
        let core_logits = Session::new(model).feed_all(s).unwrap().data;
        let v = model.config.vocab_size;
        worst = worst.max(rel_err(
            &train_logits[b * seq * v..(b + 1) * seq * v],
            &core_logits,
        ));
    }
    worst
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Tolerance 1e-5 relative: the two differ only in summation order (gemm vs core's dots).
    #[test]
    fn train_forward_equals_core_forward(cfg in arb_config(), seed in 0u64..1000, batch in 1usize..3, seq in 1usize..12) {
        let model = init(cfg.clone(), seed).unwrap();
        let be = Cpu;
        let params = Params::from_model(&be, &model);
        let mut rng = Rng::new(seed);
        let tokens: Vec<u32> = (0..batch * seq).map(|_| rng.below(23) as u32).collect();
        let err = parity(&be, &params, &model, &tokens, seq);
        prop_assert!(err <= 1e-5, "relative logit error {err:e}");
    }
}

#[test]
fn core_loads_trained_checkpoint_and_reproduces_train_logits() {
    let be = Cpu;
    let dir = tempfile::tempdir().unwrap();
    let model = init(tiny(), 3).unwrap();
    let mut t = Trainer::new(&be, &model, tc(5));
    let mut data = Synthetic::new(500, 4000, 1);
    for _ in 0..5 {
        t.step(&mut data).unwrap();
    }
    let ck = checkpoint::save_checkpoint(dir.path(), &t, data.state(), 2).unwrap();
    let file = ModelFile::open(ck.join(MODEL_FILE)).unwrap();
    let loaded = file.model().unwrap();
    let tokens: Vec<u32> = (0..24).map(|i| (i * 37 % 500) as u32).collect();
    let err = parity(&be, &t.params, &loaded, &tokens, 12);
    assert!(err <= 1e-5, "relative logit error {err:e}");
    // The trained weights really moved away from the initial ones.
    let init_params = Params::from_model(&be, &model);
    assert!(init_params.tensors[1] != t.params.tensors[1]);
}

/// Ends a run after step `at`: through the stop flag (a clean Ctrl-C), or by failing (a crash
/// after the step's log line, before its checkpoint).
struct StopAt<'a> {
    at: u64,
    stop: &'a AtomicBool,
    crash: bool,
}

impl Observer for StopAt<'_> {
    fn step(&mut self, log: &[LogLine]) -> io::Result<()> {
        if log.last().map(|l| l.step) == Some(self.at) {
            if self.crash {
                return Err(io::Error::other("crash"));
            }
            self.stop.store(true, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// The log without its timings.
fn read_log(dir: &Path) -> Vec<LogLine> {
    std::fs::read_to_string(dir.join(tokenformer_train::run::LOG_FILE))
        .unwrap()
        .lines()
        .map(|l| LogLine {
            tokens_per_s: 0.0,
            ..serde_json::from_str(l).unwrap()
        })
        .collect()
}

#[test]
fn run_stopped_or_crashed_then_resumed_logs_the_uninterrupted_run() {
    let be = Cpu;
    let model = init(tiny(), 9).unwrap();
    let heldout = Synthetic::new(500, 400, 99).tokens;
    let rc = |dir: &Path| RunConfig {
        out: Some(dir.to_path_buf()),
        eval_every: 3,
        eval_windows: 2,
        save_every: 2,
        keep: 0,
    };
    let no_stop = AtomicBool::new(false);
    let straight = tempfile::tempdir().unwrap();
    let mut t = Trainer::new(&be, &model, tc(8));
    let mut data = Synthetic::new(500, 4000, 2);
    let done = run(
        &mut t,
        &mut data,
        &heldout,
        &rc(straight.path()),
        &no_stop,
        &mut (),
    )
    .unwrap();
    let expected = read_log(straight.path());
    assert_eq!(expected.len(), 8);
    // Periodic evaluations on the subset; the whole split only after the last step, under its
    // own key, and equal to an independent evaluation of the final weights.
    let steps = |f: fn(&LogLine) -> bool| -> Vec<u64> {
        expected.iter().filter(|l| f(l)).map(|l| l.step).collect()
    };
    assert_eq!(steps(|l| l.heldout_loss.is_some()), [3, 6]);
    assert_eq!(steps(|l| l.heldout_loss_all.is_some()), [8]);
    let all = heldout_windows(&heldout, 16, usize::MAX);
    assert_eq!(all.len(), 24);
    let want = t.eval(&all);
    assert_eq!(expected[7].heldout_loss_all, Some(want));
    assert_eq!(
        done,
        Outcome::Finished {
            heldout_loss_all: Some(want),
            windows: 24
        }
    );

    for (at, crash) in [(3, false), (5, true)] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let stop = AtomicBool::new(false);
        let mut obs = StopAt {
            at,
            stop: &stop,
            crash,
        };
        let mut t = Trainer::new(&be, &model, tc(8));
        let mut data = Synthetic::new(500, 4000, 2);
        let r = run(&mut t, &mut data, &heldout, &rc(d), &stop, &mut obs);
        if crash {
            // Log lines 1..=5 are written, the newest checkpoint is step 4.
            assert!(matches!(r, Err(RunError::Observer(_))), "{r:?}");
            assert_eq!(read_log(d).len(), 5);
        } else {
            let checkpoint = Some(checkpoint::step_dir(d, 3));
            assert_eq!(r.unwrap(), Outcome::Stopped { checkpoint });
        }
        let latest = checkpoint::latest(d).unwrap().unwrap();
        let (mut resumed, state) = checkpoint::load_checkpoint(&be, &latest).unwrap();
        assert_eq!(resumed.step, at.min(4));
        let mut data = Synthetic::new(500, 4000, 2);
        data.restore(&state).unwrap();
        let r = run(&mut resumed, &mut data, &heldout, &rc(d), &no_stop, &mut ());
        assert_eq!(r.unwrap(), done);
        assert_eq!(read_log(d), expected, "stopped at {at}, crash {crash}");
    }
}

fn run_losses(t: &mut Trainer<'_, Cpu>, data: &mut Synthetic, steps: u64) -> Vec<u64> {
    (0..steps)
        .map(|_| t.step(data).unwrap().loss.to_bits())
        .collect()
}

#[test]
fn resume_is_bit_identical() {
    let be = Cpu;
    let dir = tempfile::tempdir().unwrap();
    let model = init(tiny(), 4).unwrap();

    let mut straight = Trainer::new(&be, &model, tc(8));
    let mut d1 = Synthetic::new(500, 4000, 2);
    let expected = run_losses(&mut straight, &mut d1, 8);

    let mut first = Trainer::new(&be, &model, tc(8));
    let mut d2 = Synthetic::new(500, 4000, 2);
    let mut got = run_losses(&mut first, &mut d2, 3);
    checkpoint::save_checkpoint(dir.path(), &first, d2.state(), 0).unwrap();
    drop(first);

    let latest = checkpoint::latest(dir.path()).unwrap().unwrap();
    let (mut resumed, state) = checkpoint::load_checkpoint(&be, &latest).unwrap();
    let mut d3 = Synthetic::new(500, 4000, 2);
    let (mut i, mut o) = (Vec::new(), Vec::new());
    d3.next_batch(4, 4, &mut i, &mut o).unwrap(); // move its RNG: the restored state must win
    d3.restore(&state).unwrap();
    assert_eq!(resumed.step, 3);
    got.extend(run_losses(&mut resumed, &mut d3, 5));
    assert_eq!(
        got, expected,
        "resumed losses differ from the uninterrupted run"
    );
    let a = straight.params.to_model(&be).unwrap();
    let b = resumed.params.to_model(&be).unwrap();
    assert!(a.tensors_f32().iter().zip(b.tensors_f32()).all(|(x, y)| x
        .iter()
        .map(|v| v.to_bits())
        .eq(y.iter().map(|v| v.to_bits()))));
}

#[test]
fn reused_buffers_change_nothing() {
    // From the second micro-batch on, every op writes into buffers that hold an earlier one's
    // values: a trainer given fresh zeroed buffers before each step must match it bit for bit
    // (an op that read its output before writing it would differ).
    let be = Cpu;
    let model = init(tiny(), 5).unwrap();
    let (mut reused, mut fresh) = (
        Trainer::new(&be, &model, tc(4)),
        Trainer::new(&be, &model, tc(4)),
    );
    let (mut d1, mut d2) = (Synthetic::new(500, 4000, 2), Synthetic::new(500, 4000, 2));
    for _ in 0..4 {
        let a = reused.step(&mut d1).unwrap();
        fresh.release_buffers();
        let b = fresh.step(&mut d2).unwrap();
        assert_eq!(a.loss.to_bits(), b.loss.to_bits());
        assert_eq!(a.grad_norm.to_bits(), b.grad_norm.to_bits());
    }
    let bits = |t: &Trainer<'_, Cpu>| -> Vec<Vec<u32>> {
        let m = t.params.to_model(&be).unwrap();
        let v = m
            .tensors_f32()
            .iter()
            .map(|x| x.iter().map(|v| v.to_bits()).collect())
            .collect();
        v
    };
    assert_eq!(bits(&reused), bits(&fresh));
}

#[test]
fn another_world_size_resumes_at_the_same_global_batch() {
    let be = Cpu;
    let dir = tempfile::tempdir().unwrap();
    let model = init(tiny(), 4).unwrap();
    // One process × accum 2 (tc) saves; the checkpoint records 1 rank.
    let mut t = Trainer::new(&be, &model, tc(8));
    let mut data = Synthetic::new(500, 4000, 2);
    t.step(&mut data).unwrap();
    let saved = checkpoint::save_checkpoint(dir.path(), &t, data.state(), 0).unwrap();
    let accum = |ranks| {
        checkpoint::load_checkpoint_for_ranks(&be, &saved, ranks)
            .map(|(t, _)| (t.tc.accum, t.tc.batch, t.step))
            .map_err(|e| e.to_string())
    };
    assert_eq!(accum(1), Ok((2, 2, 1)));
    assert_eq!(accum(2), Ok((1, 2, 1)));
    let err = accum(3).unwrap_err();
    assert!(err.contains("3 ranks cannot take an equal share"), "{err}");
    // 2 ranks × accum 2 = 4 ranks × accum 1; no ranks at all is refused.
    assert_eq!(tc(8).for_ranks(2, 4).map(|t| t.accum), Ok(1));
    assert!(tc(8).for_ranks(1, 0).is_err());
    // A state.json from before the world size was recorded resumes with its per-rank settings.
    let state = saved.join("state.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(v["ranks"], 1);
    v.as_object_mut().unwrap().remove("ranks");
    std::fs::write(&state, serde_json::to_vec(&v).unwrap()).unwrap();
    assert_eq!(accum(3), Ok((2, 2, 1)));
}

#[test]
fn crash_before_rename_leaves_previous_checkpoint_loadable() {
    let be = Cpu;
    let dir = tempfile::tempdir().unwrap();
    let model = init(tiny(), 5).unwrap();
    let mut t = Trainer::new(&be, &model, tc(4));
    let mut data = Synthetic::new(500, 4000, 3);
    t.step(&mut data).unwrap();
    let first = checkpoint::save_checkpoint(dir.path(), &t, data.state(), 3).unwrap();
    let first_bytes = std::fs::read(first.join(MODEL_FILE)).unwrap();
    t.step(&mut data).unwrap();
    // Everything of step 2 written and fsynced, then the process dies before the rename.
    let staged = checkpoint::stage(dir.path(), &t, data.state()).unwrap();
    assert!(staged.temp_path().join(MODEL_FILE).exists());
    std::mem::forget(staged);

    let latest = checkpoint::latest(dir.path()).unwrap().unwrap();
    assert_eq!(latest, first);
    assert_eq!(std::fs::read(latest.join(MODEL_FILE)).unwrap(), first_bytes);
    let (resumed, _) = checkpoint::load_checkpoint(&be, &latest).unwrap();
    assert_eq!(resumed.step, 1);
    checkpoint::clean_temporaries(dir.path()).unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn non_finite_loss_stops_without_touching_the_weights() {
    let be = Cpu;
    let model = init(tiny(), 6).unwrap();
    let mut t = Trainer::new(&be, &model, tc(4));
    let mut data = Synthetic::new(500, 4000, 4);
    t.step(&mut data).unwrap();
    // Poison one embedding row that the data uses.
    let mut host = be.download_params(&t.params);
    host[0][..64].fill(f32::NAN);
    let before: Vec<Vec<f32>> = host.clone();
    t.params = Params::from_model(
        &be,
        &tokenformer_core::Model::from_tensors(
            tiny(),
            host.into_iter().map(std::borrow::Cow::Owned).collect(),
        )
        .unwrap(),
    );
    struct Zeros;
    impl BatchSource for Zeros {
        fn next_batch(
            &mut self,
            batch: usize,
            seq: usize,
            i: &mut Vec<u32>,
            o: &mut Vec<u32>,
        ) -> Result<(), DataError> {
            *i = vec![0; batch * seq];
            *o = vec![1; batch * seq];
            Ok(())
        }
        fn state(&self) -> serde_json::Value {
            serde_json::Value::Null
        }
    }
    let err = t.step(&mut Zeros).unwrap_err();
    assert!(
        matches!(err, TrainError::NonFinite { step: 1, .. }),
        "{err}"
    );
    let after = be.download_params(&t.params);
    for (a, b) in before.iter().zip(&after) {
        assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
    assert_eq!(t.step, 1);
}

#[test]
fn loss_falls_on_learnable_data() {
    let be = Cpu;
    let model = init(tiny(), 7).unwrap();
    let mut t = Trainer::new(&be, &model, tc(60));
    let mut data = Synthetic::new(500, 4000, 5);
    let losses: Vec<f64> = (0..60).map(|_| t.step(&mut data).unwrap().loss).collect();
    let first = losses[..5].iter().sum::<f64>() / 5.0;
    let last = losses[55..].iter().sum::<f64>() / 5.0;
    println!("loss {first:.3} -> {last:.3}");
    assert!(last < first - 1.0, "loss {first} -> {last}");
}

trait Download {
    fn download_params(&self, p: &Params<Cpu>) -> Vec<Vec<f32>>;
}

impl Download for Cpu {
    fn download_params(&self, p: &Params<Cpu>) -> Vec<Vec<f32>> {
        p.tensors.clone()
    }
}

#[test]
fn grown_checkpoint_trains_on_and_loss_keeps_falling() {
    use tokenformer_core::grow::{grow, Init, Scale, Targets};
    let be = Cpu;
    let dir = tempfile::tempdir().unwrap();
    let model = init(tiny(), 8).unwrap();
    let mut t = Trainer::new(&be, &model, tc(30));
    let mut data = Synthetic::new(500, 4000, 6);
    let stage1: Vec<f64> = (0..30).map(|_| t.step(&mut data).unwrap().loss).collect();
    let small = t.params.to_model(&be).unwrap();
    let targets = Targets {
        qkv: Some(64),
        proj: Some(64),
        ffn: Some(128),
    };
    let grown = grow(&small, targets, Init::Zero, Scale::Keep, 1).unwrap();
    // Through a file, as `grow` then `train --from` do.
    let path = dir.path().join("grown.safetensors");
    tokenformer_core::file::save(&path, &grown, tokenformer_core::DType::F32, &[]).unwrap();
    let file = ModelFile::open(&path).unwrap();
    let loaded = file.model().unwrap();
    assert_eq!(loaded.config.ffn_tokens, 128);
    let probe: Vec<u32> = (0..32).map(|i| (i * 31 % 500) as u32).collect();
    let before = Session::new(&small).feed_all(&probe).unwrap().data;
    let after = Session::new(&loaded).feed_all(&probe).unwrap().data;
    assert!(rel_err(&after, &before) <= 1e-6);
    let mut t2 = Trainer::new(&be, &loaded, tc(30));
    let stage2: Vec<f64> = (0..30).map(|_| t2.step(&mut data).unwrap().loss).collect();
    let end1 = stage1[25..].iter().sum::<f64>() / 5.0;
    let end2 = stage2[25..].iter().sum::<f64>() / 5.0;
    println!(
        "stage 1 end {end1:.3}, stage 2 start {:.3}, end {end2:.3}",
        stage2[0]
    );
    assert!(
        end2 < end1 - 0.1,
        "loss did not keep falling: {end1} -> {end2}"
    );
}

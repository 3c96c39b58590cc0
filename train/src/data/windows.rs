//! Drawing windows: seeded random training windows that resume bit-identically, and the
//! deterministic, non-overlapping held-out windows.

use super::token_file::TokenFile;
use super::DataError;
use crate::BatchSource;
use serde::{Deserialize, Serialize};
use tokenformer_core::Rng;

/// How a [`Windows`] stream draws its windows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Draw {
    /// One RNG draws every window in turn: run directories written before `Keyed` existed
    /// (their `state.json` has no `draw`) resume with it, single-process only.
    #[default]
    Sequential,
    /// The windows of global micro-batch `j` at step `s` come from an RNG seeded by
    /// (seed, s, j) alone, so N data-parallel ranks with accumulation A draw exactly the
    /// windows of one process with accumulation N·A.
    Keyed,
}

/// Where a [`Windows`] stream stands: enough to resume it bit-identically.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowsState {
    /// How the stream draws.
    #[serde(default)]
    pub draw: Draw,
    /// The run's seed (keyed draw).
    #[serde(default)]
    pub seed: u64,
    /// The RNG's state ([`tokenformer_core::Rng::state`]).
    pub rng: [u64; 4],
    /// Windows drawn so far.
    pub drawn: u64,
    /// The token file it draws from (its input hash and length), checked on resume.
    pub corpus_hash: u64,
    /// Tokens in that file.
    pub tokens: u64,
}

/// splitmix64's finaliser: a bijective mix of one word.
fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The RNG seed of global micro-batch `micro` at step `step` of a run seeded with `seed`.
pub fn micro_batch_seed(seed: u64, step: u64, micro: u64) -> u64 {
    mix64(mix64(mix64(seed) ^ step) ^ micro.rotate_left(32))
}

/// Training windows of `seq_len + 1` tokens at uniformly random offsets (with replacement),
/// from a seeded RNG (see [`Draw`]).
pub struct Windows {
    tokens: TokenFile,
    draw: Draw,
    seed: u64,
    rng: Rng,
    drawn: u64,
}

impl Windows {
    /// A keyed stream (the draw of new runs).
    pub fn new(tokens: TokenFile, seed: u64) -> Windows {
        Windows {
            tokens,
            draw: Draw::Keyed,
            seed,
            rng: Rng::new(micro_batch_seed(seed, 0, 0)),
            drawn: 0,
        }
    }

    /// A stream with the sequential draw of older run directories.
    pub fn sequential(tokens: TokenFile, seed: u64) -> Windows {
        Windows {
            draw: Draw::Sequential,
            rng: Rng::new(seed),
            ..Windows::new(tokens, seed)
        }
    }

    /// How this stream draws its windows.
    pub fn draw(&self) -> Draw {
        self.draw
    }

    /// Windows drawn so far.
    pub fn drawn(&self) -> u64 {
        self.drawn
    }

    /// Where the stream stands, for a checkpoint ([`Windows::from_state`] resumes it).
    pub fn state(&self) -> WindowsState {
        WindowsState {
            draw: self.draw,
            seed: self.seed,
            rng: self.rng.state(),
            drawn: self.drawn,
            corpus_hash: self.tokens.hash,
            tokens: self.tokens.len as u64,
        }
    }

    /// Resume from [`Windows::state`]; the state must come from the same token file.
    pub fn from_state(tokens: TokenFile, state: &WindowsState) -> Result<Windows, DataError> {
        if state.corpus_hash != tokens.hash || state.tokens != tokens.len as u64 {
            return Err(DataError::StateMismatch(format!(
                "saved for {} tokens with input hash {:016x}, corpus has {} tokens with hash {:016x}",
                state.tokens,
                state.corpus_hash,
                tokens.len,
                tokens.hash
            )));
        }
        let rng = Rng::from_state(state.rng)
            .ok_or_else(|| DataError::StateMismatch("all-zero RNG state".into()))?;
        Ok(Windows {
            tokens,
            draw: state.draw,
            seed: state.seed,
            rng,
            drawn: state.drawn,
        })
    }

    /// Resume from the JSON a checkpoint stored ([`BatchSource::state`]).
    pub fn resume(tokens: TokenFile, state: &serde_json::Value) -> Result<Windows, DataError> {
        let state = serde_json::from_value(state.clone())
            .map_err(|e| DataError::StateMismatch(format!("bad data state: {e}")))?;
        Windows::from_state(tokens, &state)
    }
}

/// `state` is [`Windows::state`] as JSON, as checkpoints store it.
impl BatchSource for Windows {
    /// Keyed draw: reseed for global micro-batch `micro` of step `step`; sequential: nothing.
    fn seek(&mut self, step: u64, micro: u64) {
        if self.draw == Draw::Keyed {
            self.rng = Rng::new(micro_batch_seed(self.seed, step, micro));
        }
    }

    /// Fill `inputs` and `targets` with `batch` windows, each `seq_len` tokens, row-major
    /// [batch, seq_len]; `targets[i]` is the token after `inputs[i]`. On error nothing is drawn.
    fn next_batch(
        &mut self,
        batch: usize,
        seq_len: usize,
        inputs: &mut Vec<u32>,
        targets: &mut Vec<u32>,
    ) -> Result<(), DataError> {
        let n = self.tokens.len();
        let need = seq_len + 1;
        if seq_len == 0 || n < need {
            return Err(DataError::TooShort { tokens: n, need });
        }
        inputs.clear();
        targets.clear();
        inputs.reserve(batch * seq_len);
        targets.reserve(batch * seq_len);
        // Valid starts: 0 ..= n - need, i.e. n - seq_len of them.
        let starts = (n - seq_len) as u64;
        for _ in 0..batch {
            let s = self.rng.below(starts) as usize;
            self.tokens.extend_range(s, s + seq_len, inputs);
            self.tokens.extend_range(s + 1, s + need, targets);
            self.drawn += 1;
        }
        Ok(())
    }

    fn state(&self) -> serde_json::Value {
        serde_json::to_value(Windows::state(self)).unwrap_or_default()
    }
}

/// Deterministic, non-overlapping evaluation windows over `tokens`: window k has inputs
/// `tokens[s..s+seq_len]` and targets `tokens[s+1..s+seq_len+1]` with `s = j·seq_len`, so no
/// token is predicted twice. There are `(len − 1) / seq_len` such windows (the last partial one
/// is dropped); when that is more than `max_windows`, `max_windows` of them are taken evenly
/// spread over the whole split (j = ⌊k·total/max_windows⌋), not just its beginning.
pub fn heldout_windows(
    tokens: &[u32],
    seq_len: usize,
    max_windows: usize,
) -> Vec<(Vec<u32>, Vec<u32>)> {
    if seq_len == 0 || tokens.len() < seq_len + 1 {
        return Vec::new();
    }
    let total = (tokens.len() - 1) / seq_len;
    let take = total.min(max_windows);
    (0..take)
        .map(|k| {
            let j = if take == total { k } else { k * total / take };
            let s = j * seq_len;
            (
                tokens[s..s + seq_len].to_vec(),
                tokens[s + 1..s + seq_len + 1].to_vec(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::token_file::tests::write_sample;
    use std::path::Path;

    fn sample_file(dir: &Path, n: u32) -> TokenFile {
        let p = dir.join("w.tokens");
        // Token i is i: a window's position in the file is its first token.
        write_sample(&p, n, &(0..n).collect::<Vec<_>>());
        TokenFile::open(&p).unwrap()
    }

    #[test]
    fn window_targets_are_inputs_shifted_by_one() {
        let d = tempfile::tempdir().unwrap();
        let f = sample_file(d.path(), 50);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        let mut w = Windows::new(f.clone(), 3);
        let mut starts = std::collections::HashSet::new();
        for _ in 0..200 {
            w.next_batch(4, 9, &mut x, &mut y).unwrap();
            assert_eq!((x.len(), y.len()), (36, 36));
            for (xr, yr) in x.chunks(9).zip(y.chunks(9)) {
                for j in 0..9 {
                    assert_eq!(xr[j], xr[0] + j as u32, "a window is contiguous");
                    assert_eq!(yr[j], xr[j] + 1, "target is the next token");
                }
                assert!(yr[8] < 50);
                starts.insert(xr[0]);
            }
        }
        // Every start 0..=40 is drawn (800 draws of 41 starts), nothing beyond.
        assert_eq!(starts.len(), 41);
        assert_eq!(w.drawn(), 800);

        // Exactly one window fits: every draw is it.
        let mut w = Windows::new(sample_file(d.path(), 10), 1);
        w.next_batch(3, 9, &mut x, &mut y).unwrap();
        assert_eq!(x, (0..9).collect::<Vec<u32>>().repeat(3));
        let before = w.state();
        assert!(matches!(
            w.next_batch(1, 10, &mut x, &mut y),
            Err(DataError::TooShort {
                tokens: 10,
                need: 11
            })
        ));
        assert!(w.next_batch(1, 0, &mut x, &mut y).is_err());
        assert_eq!(w.state(), before, "a failed draw changes nothing");
    }

    #[test]
    fn resumed_windows_continue_identically() {
        let d = tempfile::tempdir().unwrap();
        let f = sample_file(d.path(), 5000);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        let mut straight = Windows::new(f.clone(), 42);
        let mut seq = Vec::new();
        for _ in 0..10 {
            straight.next_batch(3, 16, &mut x, &mut y).unwrap();
            seq.push((x.clone(), y.clone()));
        }

        let mut first = Windows::new(f.clone(), 42);
        for want in &seq[..4] {
            first.next_batch(3, 16, &mut x, &mut y).unwrap();
            assert_eq!(&(x.clone(), y.clone()), want);
        }
        let json = serde_json::to_string(&first.state()).unwrap();
        drop(first);
        let state: WindowsState = serde_json::from_str(&json).unwrap();
        assert_eq!(state.drawn, 12);
        let mut resumed = Windows::from_state(f.clone(), &state).unwrap();
        for want in &seq[4..] {
            resumed.next_batch(3, 16, &mut x, &mut y).unwrap();
            assert_eq!(&(x.clone(), y.clone()), want);
        }
        assert_eq!(resumed.state(), straight.state());

        // A different seed draws differently; a state from another file or a zero RNG is refused.
        let mut other = Windows::new(f.clone(), 43);
        other.next_batch(3, 16, &mut x, &mut y).unwrap();
        assert_ne!(x, seq[0].0);
        let other_dir = d.path().join("other");
        std::fs::create_dir(&other_dir).unwrap();
        let g = sample_file(&other_dir, 4000);
        assert!(matches!(
            Windows::from_state(g, &state),
            Err(DataError::StateMismatch(_))
        ));
        let zero = WindowsState {
            rng: [0; 4],
            ..state
        };
        assert!(Windows::from_state(f, &zero).is_err());
    }

    /// The windows of step `s`, micro-batches `js`, as one stream draws them after `seek`.
    fn keyed(w: &mut Windows, s: u64, js: std::ops::Range<u64>) -> Vec<u32> {
        let (mut x, mut y, mut all) = (Vec::new(), Vec::new(), Vec::new());
        for j in js {
            w.seek(s, j);
            w.next_batch(2, 8, &mut x, &mut y).unwrap();
            all.extend_from_slice(&x);
        }
        all
    }

    #[test]
    fn keyed_draw_depends_on_seed_step_and_micro_batch_only() {
        let d = tempfile::tempdir().unwrap();
        let f = sample_file(d.path(), 5000);
        // One process with accum 4 against 2 ranks with accum 2 (micro = rank·2 + a), after
        // different histories.
        let mut one = Windows::new(f.clone(), 7);
        keyed(&mut one, 0, 0..4);
        let whole = keyed(&mut one, 1, 0..4);
        let (mut r0, mut r1) = (Windows::new(f.clone(), 7), Windows::new(f.clone(), 7));
        keyed(&mut r1, 0, 2..4);
        let mut split = keyed(&mut r0, 1, 0..2);
        split.extend(keyed(&mut r1, 1, 2..4));
        assert_eq!(whole, split);
        // Step, micro-batch and seed each change the windows.
        assert_ne!(keyed(&mut one, 2, 0..1), keyed(&mut one, 1, 0..1));
        assert_ne!(keyed(&mut one, 1, 1..2), keyed(&mut one, 1, 0..1));
        let mut other = Windows::new(f.clone(), 8);
        assert_ne!(keyed(&mut other, 1, 0..1), keyed(&mut one, 1, 0..1));
        // A resumed keyed stream keeps its seed.
        let mut back = Windows::from_state(f, &one.state()).unwrap();
        assert_eq!(keyed(&mut back, 1, 0..4), whole);
    }

    #[test]
    fn old_state_resumes_with_the_sequential_draw() {
        let d = tempfile::tempdir().unwrap();
        let f = sample_file(d.path(), 5000);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        let mut seq = Windows::sequential(f.clone(), 5);
        seq.next_batch(3, 16, &mut x, &mut y).unwrap();
        // state.json as written before the keyed draw: no `draw`, no `seed`.
        let s = seq.state();
        let old = serde_json::json!({
            "rng": s.rng, "drawn": s.drawn, "corpus_hash": s.corpus_hash, "tokens": s.tokens
        });
        let mut back = Windows::resume(f, &old).unwrap();
        assert_eq!(back.draw(), Draw::Sequential);
        let (mut x2, mut y2) = (Vec::new(), Vec::new());
        seq.next_batch(3, 16, &mut x, &mut y).unwrap();
        back.seek(1, 0); // ignored by the sequential draw
        back.next_batch(3, 16, &mut x2, &mut y2).unwrap();
        assert_eq!((x, y), (x2, y2));
    }

    #[test]
    fn heldout_windows_tile_without_overlap() {
        let t: Vec<u32> = (100..200).collect(); // 100 tokens
        let w = heldout_windows(&t, 10, usize::MAX);
        assert_eq!(w.len(), 9); // (100 − 1) / 10
        for (k, (x, y)) in w.iter().enumerate() {
            assert_eq!(x[0], 100 + 10 * k as u32);
            assert_eq!(x.len(), 10);
            assert!(x.iter().zip(y).all(|(a, b)| b == &(a + 1)));
        }
        // Each token is a target at most once, and targets cover 1..=90 contiguously.
        let targets: Vec<u32> = w.iter().flat_map(|(_, y)| y.clone()).collect();
        assert_eq!(targets, (101..191).collect::<Vec<_>>());

        // Capped: spread over the whole split, still disjoint and in order.
        let few = heldout_windows(&t, 10, 3);
        let firsts: Vec<u32> = few.iter().map(|(x, _)| x[0]).collect();
        assert_eq!(firsts, [100, 130, 160]);
        assert_eq!(heldout_windows(&t, 10, 3), few, "deterministic");

        assert_eq!(heldout_windows(&t[..11], 10, 5).len(), 1);
        assert!(heldout_windows(&t[..10], 10, 5).is_empty());
        assert!(heldout_windows(&t, 0, 5).is_empty());
        assert!(heldout_windows(&t, 10, 0).is_empty());
    }
}

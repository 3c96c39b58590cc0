//! Sampling: greedy, temperature, top-k, top-p, with a seeded RNG that needs no OS.

use alloc::vec::Vec;

/// xoshiro256** seeded through splitmix64: small, fast, reproducible on every target.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator seeded from `seed`; equal seeds give equal sequences on every target.
    pub fn new(seed: u64) -> Rng {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    /// The raw generator state, for checkpoints that must resume bit-identically.
    pub fn state(&self) -> [u64; 4] {
        self.s
    }

    /// A generator restored from [`Rng::state`]. An all-zero state would emit only zeros, so it
    /// is rejected.
    pub fn from_state(s: [u64; 4]) -> Option<Rng> {
        (s != [0; 4]).then_some(Rng { s })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let r = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        r
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]: ln never sees 0
        let u2 = self.next_f64();
        libm::sqrt(-2.0 * libm::log(u1)) * libm::cos(core::f64::consts::TAU * u2)
    }
}

/// How to pick the next token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplerConfig {
    /// 0 means greedy (argmax).
    pub temperature: f32,
    /// Keep only the k most likely ids (0: no limit).
    pub top_k: usize,
    /// Keep the smallest set of ids whose probability reaches p (1.0: no limit).
    pub top_p: f32,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
        }
    }
}

/// Picks token ids from logits under a [`SamplerConfig`], reproducibly from its seed.
#[derive(Clone, Debug)]
pub struct Sampler {
    /// The settings in force; may be changed between calls.
    pub config: SamplerConfig,
    rng: Rng,
    scratch: Vec<(f32, u32)>,
}

/// Index of the largest value; the first on ties.
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

impl Sampler {
    /// A sampler with its own [`Rng`] seeded from `seed`: equal seeds and logits give equal picks.
    pub fn new(config: SamplerConfig, seed: u64) -> Sampler {
        Sampler {
            config,
            rng: Rng::new(seed),
            scratch: Vec::new(),
        }
    }

    /// Pick an id from `logits[..allowed]`: ids at or past `allowed` (the embedding's padding
    /// past the tokenizer's vocabulary) are never returned.
    pub fn sample(&mut self, logits: &[f32], allowed: usize) -> u32 {
        let logits = &logits[..allowed.min(logits.len())];
        let c = self.config;
        if c.temperature <= 0.0 || !c.temperature.is_finite() || c.top_k == 1 {
            return argmax(logits) as u32;
        }
        let s = &mut self.scratch;
        s.clear();
        s.extend(logits.iter().enumerate().map(|(i, &l)| (l, i as u32)));
        // Descending by logit, ids ascending on ties, NaN last: a total order, so results are
        // reproducible.
        s.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        if c.top_k > 0 && c.top_k < s.len() {
            s.truncate(c.top_k);
        }
        let m = s[0].0;
        let mut total = 0.0f64;
        for e in s.iter_mut() {
            let p = libm::exp(((e.0 - m) / c.temperature) as f64);
            e.0 = p as f32;
            total += p;
        }
        if c.top_p < 1.0 {
            let mut acc = 0.0f64;
            let mut keep = s.len();
            for (i, e) in s.iter().enumerate() {
                acc += e.0 as f64 / total;
                if acc >= c.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            s.truncate(keep);
            total = s.iter().map(|e| e.0 as f64).sum();
        }
        let mut r = self.rng.next_f64() * total;
        for e in s.iter() {
            r -= e.0 as f64;
            if r < 0.0 {
                return e.1;
            }
        }
        s.last().map_or(0, |e| e.1)
    }
}

//! The model in naive f64, written from the spec and calling nothing of core or train: the
//! reference that finite differences run on. Rows are flat row-major `Vec<f64>`.
#![allow(dead_code)]

use tokenformer_core::ThetaKind;

pub fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
}

/// Θ of one row.
pub fn theta(a: &[f64], norm: ThetaKind, scale_n: usize) -> Vec<f64> {
    let sn = (scale_n as f64).sqrt();
    let l2 = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    match norm {
        ThetaKind::L2NormGelu => {
            let r = l2(a);
            a.iter().map(|x| gelu(x / r * sn)).collect()
        }
        ThetaKind::GeluL2Norm => {
            let g: Vec<f64> = a.iter().map(|&x| gelu(x)).collect();
            let r = l2(&g);
            g.iter().map(|x| x / r * sn).collect()
        }
        ThetaKind::Softmax => {
            let m = a.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = a.iter().map(|x| (x - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|x| x / s * a.len() as f64).collect()
        }
    }
}

/// x [r, d_in] · keys [n, d_in]ᵀ → Θ → · values [n, d_out].
pub fn pattention(
    x: &[f64],
    keys: &[f64],
    values: &[f64],
    d: usize,
    norm: ThetaKind,
    scale_n: usize,
) -> Vec<f64> {
    let n = keys.len() / d;
    let d_out = values.len() / n;
    let mut out = Vec::with_capacity(x.len() / d * d_out);
    for row in x.chunks(d) {
        let a: Vec<f64> = keys
            .chunks(d)
            .map(|k| k.iter().zip(row).map(|(a, b)| a * b).sum())
            .collect();
        let s = theta(&a, norm, scale_n);
        for o in 0..d_out {
            out.push((0..n).map(|j| s[j] * values[j * d_out + o]).sum());
        }
    }
    out
}

pub fn layer_norm(x: &[f64], d: usize, eps: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(d) {
        let mean = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / d as f64;
        out.extend(row.iter().map(|v| (v - mean) / (var + eps).sqrt()));
    }
    out
}

pub fn affine_norm(x: &[f64], w: &[f64], b: &[f64], eps: f64) -> Vec<f64> {
    let d = w.len();
    let mut y = layer_norm(x, d, eps);
    for row in y.chunks_mut(d) {
        for i in 0..d {
            row[i] = row[i] * w[i] + b[i];
        }
    }
    y
}

/// GPT-NeoX rotary on rows [batch·seq, d]; row r at position r % seq.
pub fn rotary(x: &[f64], seq: usize, d: usize, hd: usize, rot: usize, base: f64) -> Vec<f64> {
    let half = rot / 2;
    let mut y = x.to_vec();
    for (r, row) in y.chunks_mut(d).enumerate() {
        let pos = (r % seq) as f64;
        for head in row.chunks_mut(hd) {
            for i in 0..half {
                // The reference computes inv_freq and the angle in f32.
                let inv = 1.0 / (base as f32).powf((2 * i) as f32 / rot as f32);
                let ang = (pos as f32 * inv) as f64;
                let (a, b) = (head[i], head[i + half]);
                head[i] = a * ang.cos() - b * ang.sin();
                head[i + half] = b * ang.cos() + a * ang.sin();
            }
        }
    }
    y
}

/// Causal attention per sequence of `seq` rows.
pub fn attention(q: &[f64], k: &[f64], v: &[f64], seq: usize, d: usize, heads: usize) -> Vec<f64> {
    let hd = d / heads;
    let scale = 1.0 / (hd as f64).sqrt();
    let mut out = vec![0.0; q.len()];
    for b in 0..q.len() / (seq * d) {
        let at = |buf: &[f64], t: usize, i: usize| buf[(b * seq + t) * d + i];
        for t in 0..seq {
            for h in 0..heads {
                let r = h * hd..(h + 1) * hd;
                let s: Vec<f64> = (0..=t)
                    .map(|j| r.clone().map(|i| at(q, t, i) * at(k, j, i)).sum::<f64>() * scale)
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for (j, ej) in e.iter().enumerate() {
                    for i in r.clone() {
                        out[(b * seq + t) * d + i] += ej / z * at(v, j, i);
                    }
                }
            }
        }
    }
    out
}

/// Mean cross-entropy of logits [r, vocab] against targets.
pub fn cross_entropy(z: &[f64], targets: &[u32], vocab: usize) -> f64 {
    let mut total = 0.0;
    for (row, &t) in z.chunks(vocab).zip(targets) {
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = row.iter().map(|x| (x - m).exp()).sum::<f64>().ln() + m;
        total += lse - row[t as usize];
    }
    total / targets.len() as f64
}

pub struct Shape {
    pub layers: usize,
    pub d: usize,
    pub heads: usize,
    /// Token counts and √n scale counts of q/k/v, o, ffn.
    pub tokens: [usize; 3],
    pub scale: [usize; 3],
    pub vocab: usize,
    pub rot: usize,
    pub base: f64,
    pub norm: ThetaKind,
}

/// Logits [batch·seq, vocab] of the whole model; `w` in core's tensor order.
pub fn forward(s: &Shape, w: &[Vec<f64>], tokens: &[u32], seq: usize) -> Vec<f64> {
    let (d, eps) = (s.d, 1e-5);
    let mut x: Vec<f64> = tokens
        .iter()
        .flat_map(|&t| w[0][t as usize * d..(t as usize + 1) * d].to_vec())
        .collect();
    for l in 0..s.layers {
        let pat = |j: usize, x: &[f64]| {
            let kind = [0, 0, 0, 1, 2][j];
            pattention(
                x,
                &w[1 + l * 10 + 2 * j],
                &w[2 + l * 10 + 2 * j],
                d,
                s.norm,
                s.scale[kind],
            )
        };
        let y = layer_norm(&x, d, eps);
        let q = rotary(&pat(0, &y), seq, d, d / s.heads, s.rot, s.base);
        let k = rotary(&pat(1, &y), seq, d, d / s.heads, s.rot, s.base);
        let v = pat(2, &y);
        let a = attention(&q, &k, &v, seq, d, s.heads);
        let o = pat(3, &a);
        let h: Vec<f64> = x.iter().zip(&o).map(|(a, b)| a + b).collect();
        let f = pat(4, &layer_norm(&h, d, eps));
        x = h.iter().zip(&f).map(|(a, b)| a + b).collect();
    }
    let nw = 1 + s.layers * 10;
    let y = affine_norm(&x, &w[nw], &w[nw + 1], eps);
    let emb = &w[0];
    y.chunks(d)
        .flat_map(|row| {
            emb.chunks(d)
                .map(|e| e.iter().zip(row).map(|(a, b)| a * b).sum::<f64>())
                .collect::<Vec<_>>()
        })
        .collect()
}

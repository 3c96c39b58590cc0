#!/usr/bin/env python3
"""PyTorch CPU peer for the training-speed benchmark: TokenFormer written from
/work/shared/spec/TOKENFORMER.md, timed over full training steps (forward, backward, global-norm
clipping at 1.0, AdamW). Prints one JSON line.

    python3 benches/peers/train_torch.py --layers 2 --d 64 --heads 4 --qkv-tokens 48 \
        --proj-tokens 40 --ffn-tokens 96 --vocab 512 --batch 8 --seq 64 --threads 2

Needs torch (installed by hand; never in CI). Inputs are uniformly random token batches, drawn
before timing, so the figure is the model's cost alone.

--check-core path/to/tokenformer-cli first checks that this is the same model as the Rust core:
it writes this model (with weights scaled up so every part matters) as a core checkpoint, runs
`tokenformer-cli score` on random ids, and compares the log-probabilities with its own float64
forward (tolerance 2e-4 absolute); it exits non-zero on a mismatch.
"""

import argparse
import json
import math
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn


def pattention(x, keys, values, scale_n):
    """l2_norm_gelu Pattention: GELU(a / ||a|| * sqrt(n)) @ V with a = x K^T, no other scale.

    A zero row gives zeros (the eps-free reference would give NaN), as in core."""
    a = x @ keys.t()
    norm = a.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)
    s = F.gelu(a * (math.sqrt(scale_n) / norm))  # exact erf GELU
    return s @ values


class Pattention(nn.Module):
    def __init__(self, d_in, d_out, n, value_std):
        super().__init__()
        self.keys = nn.Parameter(torch.randn(n, d_in) * 0.02)
        self.values = nn.Parameter(torch.randn(n, d_out) * value_std)
        self.n = n

    def forward(self, x):
        return pattention(x, self.keys, self.values, self.n)


class Rotary(nn.Module):
    """GPT-NeoX partial rotary: the first rot = floor(head_dim * pct) dims of each head, pairs
    (x_i, x_{i + rot/2}) ("rotate half"), inv_freq_i = base^(-2i/rot)."""

    def __init__(self, head_dim, pct, base, max_len):
        super().__init__()
        self.rot = int(head_dim * pct) // 2 * 2
        half = self.rot // 2
        inv_freq = base ** (-torch.arange(half, dtype=torch.float64) * 2 / max(self.rot, 1))
        ang = torch.arange(max_len, dtype=torch.float64)[:, None] * inv_freq[None, :]
        self.register_buffer("cos", ang.cos().float(), persistent=False)
        self.register_buffer("sin", ang.sin().float(), persistent=False)

    def forward(self, x):  # [B, H, T, hd]
        if self.rot == 0:
            return x
        t, h = x.shape[-2], self.rot // 2
        cos, sin = self.cos[:t], self.sin[:t]
        x1, x2, rest = x[..., :h], x[..., h : self.rot], x[..., self.rot :]
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest), dim=-1)


class Layer(nn.Module):
    def __init__(self, a, rotary, value_std):
        super().__init__()
        d = a.d
        self.q = Pattention(d, d, a.qkv_tokens, value_std)
        self.k = Pattention(d, d, a.qkv_tokens, value_std)
        self.v = Pattention(d, d, a.qkv_tokens, value_std)
        self.o = Pattention(d, d, a.proj_tokens, value_std)
        self.ffn = Pattention(d, d, a.ffn_tokens, value_std)
        self.heads = a.heads
        self.rotary = rotary

    def forward(self, x):  # [B, T, d]
        b, t, d = x.shape
        hd = d // self.heads
        y = F.layer_norm(x, (d,), eps=1e-5)  # non-parametric
        split = lambda z: z.view(b, t, self.heads, hd).transpose(1, 2)  # noqa: E731
        q = self.rotary(split(self.q(y)))
        k = self.rotary(split(self.k(y)))
        v = split(self.v(y))
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # scale 1/sqrt(hd)
        h = x + self.o(att.transpose(1, 2).reshape(b, t, d))
        return h + self.ffn(F.layer_norm(h, (d,), eps=1e-5))


class TokenFormer(nn.Module):
    def __init__(self, a):
        super().__init__()
        value_std = 2.0 / (a.layers * math.sqrt(a.d))  # "wang init"
        self.embedding = nn.Parameter(torch.randn(a.vocab, a.d) * 0.02)
        rotary = Rotary(a.d // a.heads, 0.25, 10000.0, a.seq)
        self.layers = nn.ModuleList(Layer(a, rotary, value_std) for _ in range(a.layers))
        self.final_norm = nn.LayerNorm(a.d, eps=1e-5)

    def logits(self, tokens):
        x = self.embedding[tokens]
        for layer in self.layers:
            x = layer(x)
        return self.final_norm(x) @ self.embedding.t()  # tied, no bias

    def forward(self, tokens, targets):
        logits = self.logits(tokens)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def save_core_checkpoint(model, a, path):
    """This model as a core checkpoint: safetensors, core's tensor names, Config JSON."""
    config = {
        "n_layers": a.layers, "d_model": a.d, "n_heads": a.heads,
        "qkv_tokens": a.qkv_tokens, "proj_tokens": a.proj_tokens, "ffn_tokens": a.ffn_tokens,
        "qkv_scale_tokens": a.qkv_tokens, "proj_scale_tokens": a.proj_tokens,
        "ffn_scale_tokens": a.ffn_tokens, "rotary_pct": 0.25, "rotary_base": 10000.0,
        "norm": "l2_norm_gelu", "vocab_size": a.vocab, "tokenizer_vocab": a.vocab,
        "max_context": a.seq, "layer_norm_eps": 1e-5,
    }
    tensors = {"embedding": model.embedding,
               "final_norm.weight": model.final_norm.weight,
               "final_norm.bias": model.final_norm.bias}
    for i, layer in enumerate(model.layers):
        for name in ["q", "k", "v", "o", "ffn"]:
            pt = getattr(layer, name)
            tensors[f"layers.{i}.{name}.keys"] = pt.keys
            tensors[f"layers.{i}.{name}.values"] = pt.values
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        b = tensors[name].detach().float().contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "tokenformer", "config": json.dumps(config)}
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def check_core(a, cli):
    torch.manual_seed(a.seed + 1)
    model = TokenFormer(a)
    with torch.no_grad():  # larger weights than the init, so attention and every layer matter
        model.embedding.normal_(0, 1.0)
        for t in model.layers.parameters():
            t.normal_(0, 0.5)
        model.final_norm.weight.normal_(1.0, 0.3)
        model.final_norm.bias.normal_(0, 0.3)
    ids = torch.randint(0, a.vocab, (a.seq,))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "peer.safetensors")
        save_core_checkpoint(model, a, path)
        out = subprocess.run([cli, "score", "--model", path, "--token-ids",
                              ",".join(map(str, ids.tolist())), "--json"],
                             capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"error: {cli} score failed: {out.stderr.strip()}")
    core = torch.tensor(json.loads(out.stdout)["logprobs"], dtype=torch.float64)
    with torch.no_grad():
        m64 = model.double()
        lp = torch.log_softmax(m64.logits(ids[None])[0], dim=-1)
        ours = lp[:-1].gather(1, ids[1:, None])[:, 0]
    diff = (ours - core).abs().max().item()
    spread = (ours.max() - ours.min()).item()
    print(json.dumps({"check_core_max_abs_diff": diff, "logprob_spread": spread,
                      "tokens": a.seq}), file=sys.stderr)
    if not diff <= 2e-4:
        sys.exit(f"error: PyTorch peer and core differ by {diff} in log-probabilities")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--qkv-tokens", type=int, default=48)
    p.add_argument("--proj-tokens", type=int, default=40)
    p.add_argument("--ffn-tokens", type=int, default=96)
    p.add_argument("--vocab", type=int, default=512)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup-steps", type=int, default=3)
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--check-core", metavar="TOKENFORMER_CLI",
                   help="first check parity with the Rust core through `score`")
    a = p.parse_args()
    if a.d % a.heads:
        p.error(f"--d {a.d} is not divisible by --heads {a.heads}")
    if min(a.layers, a.d, a.qkv_tokens, a.proj_tokens, a.ffn_tokens, a.vocab, a.batch, a.seq,
           a.threads, a.steps) < 1 or a.warmup_steps < 0:
        p.error("sizes, --threads and --steps must be positive")

    torch.set_num_threads(a.threads)
    if a.check_core:
        check_core(a, a.check_core)
    torch.manual_seed(a.seed)
    model = TokenFormer(a)
    params = sum(t.numel() for t in model.parameters())
    # Weight decay on everything but LayerNorm parameters (spec: training recipe).
    decay = [t for n, t in model.named_parameters() if not n.startswith("final_norm")]
    no_decay = list(model.final_norm.parameters())
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    kw = dict(lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    try:
        opt, impl = torch.optim.AdamW(groups, fused=True, **kw), "fused"
    except (RuntimeError, TypeError):
        opt, impl = torch.optim.AdamW(groups, **kw), "default"

    n = a.warmup_steps + a.steps
    data = torch.randint(0, a.vocab, (n, a.batch, a.seq + 1))
    losses = []

    def step(i):
        x, y = data[i, :, :-1].contiguous(), data[i, :, 1:].contiguous()
        opt.zero_grad(set_to_none=True)
        loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())

    for i in range(a.warmup_steps):
        step(i)
    t0 = time.perf_counter()
    for i in range(a.warmup_steps, n):
        step(i)
    dt = time.perf_counter() - t0

    tokens = a.batch * a.seq * a.steps
    print(json.dumps({
        "impl": "pytorch",
        "tokens_per_s": tokens / dt,
        "step_ms": dt / a.steps * 1e3,
        "steps": a.steps,
        "warmup_steps": a.warmup_steps,
        "batch": a.batch,
        "seq": a.seq,
        "threads": a.threads,
        "params": params,
        "config": {k: getattr(a, k) for k in
                   ["layers", "d", "heads", "qkv_tokens", "proj_tokens", "ffn_tokens", "vocab"]},
        "adamw": impl,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
    }))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""TokenFormer in PyTorch (CPU, eager, KV cache), written from shared/spec/TOKENFORMER.md, to time
against `tokenformer-cli bench` on the same checkpoint. Run by hand (needs torch; never in CI):

    python3 benches/peers/torch_tokenformer.py --model m150.safetensors --threads 1 --json
    python3 benches/peers/torch_tokenformer.py --model m150.safetensors --score 1,2,3,4   # NLL check

Reads our f32 safetensors checkpoints (config in __metadata__) without the safetensors package.
"""
import argparse, json, math, mmap, struct, time

import warnings

import torch
import torch.nn.functional as F


warnings.filterwarnings("ignore", message="The given buffer is not writable")


def load(path):
    f = open(path, "rb")
    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    n = struct.unpack("<Q", mm[:8])[0]
    header = json.loads(mm[8 : 8 + n])
    meta = header.pop("__metadata__")
    if "quantization" in meta:
        raise SystemExit("this peer reads f32 checkpoints only")
    cfg = json.loads(meta["config"])
    base = 8 + n
    tensors = {}
    for name, e in header.items():
        if e["dtype"] != "F32":
            raise SystemExit(f"{name}: dtype {e['dtype']}, expected F32")
        a, b = e["data_offsets"]
        t = torch.frombuffer(mm, dtype=torch.float32, offset=base + a, count=(b - a) // 4)
        tensors[name] = t.view(*e["shape"])
    return cfg, tensors


class TokenFormer:
    def __init__(self, cfg, w):
        self.cfg, self.w = cfg, w
        self.L, self.d, self.h = cfg["n_layers"], cfg["d_model"], cfg["n_heads"]
        self.hd = self.d // self.h
        self.rot = int(self.hd * cfg["rotary_pct"])
        half = self.rot // 2
        self.inv_freq = 1.0 / (cfg["rotary_base"] ** (torch.arange(0, half, dtype=torch.float32) * 2 / self.rot))
        self.scale = {
            "q": cfg["qkv_scale_tokens"], "k": cfg["qkv_scale_tokens"], "v": cfg["qkv_scale_tokens"],
            "o": cfg["proj_scale_tokens"], "ffn": cfg["ffn_scale_tokens"],
        }
        self.eps = cfg["layer_norm_eps"]

    def pattention(self, x, l, p):
        keys = self.w[f"layers.{l}.{p}.keys"]
        values = self.w[f"layers.{l}.{p}.values"]
        a = x @ keys.T  # no scale
        norm = self.cfg["norm"]
        sn = math.sqrt(self.scale[p])
        if norm == "l2_norm_gelu":
            s = F.gelu(a / a.norm(dim=-1, keepdim=True) * sn)
        elif norm == "gelu_l2_norm":
            g = F.gelu(a)
            s = g / g.norm(dim=-1, keepdim=True) * sn
        else:
            s = torch.softmax(a, dim=-1) * a.shape[-1]
        return s @ values

    def rotary(self, x, pos0):
        # x [T, heads, hd]; GPT-NeoX rotate-half on the first `rot` dims.
        if self.rot == 0:
            return x
        t = torch.arange(pos0, pos0 + x.shape[0], dtype=torch.float32)
        ang = torch.outer(t, self.inv_freq)  # [T, rot/2]
        cos, sin = ang.cos()[:, None, :], ang.sin()[:, None, :]
        half = self.rot // 2
        x1, x2, rest = x[..., :half], x[..., half : self.rot], x[..., self.rot :]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest], dim=-1)

    def forward(self, tokens, cache, last_only=False):
        pos0 = cache["pos"]
        T = len(tokens)
        x = self.w["embedding"][torch.tensor(tokens)]
        for l in range(self.L):
            y = F.layer_norm(x, (self.d,), eps=self.eps)
            q = self.rotary(self.pattention(y, l, "q").view(T, self.h, self.hd), pos0)
            k = self.rotary(self.pattention(y, l, "k").view(T, self.h, self.hd), pos0)
            v = self.pattention(y, l, "v").view(T, self.h, self.hd)
            kc = torch.cat([cache["k"][l], k]) if cache["k"][l] is not None else k
            vc = torch.cat([cache["v"][l], v]) if cache["v"][l] is not None else v
            cache["k"][l], cache["v"][l] = kc, vc
            # causal mask over [T, pos0 + T]
            mask = torch.ones(T, pos0 + T, dtype=torch.bool).tril(pos0)
            att = F.scaled_dot_product_attention(
                q.transpose(0, 1), kc.transpose(0, 1), vc.transpose(0, 1), attn_mask=mask
            ).transpose(0, 1).reshape(T, self.d)
            h = x + self.pattention(att, l, "o")
            x = h + self.pattention(F.layer_norm(h, (self.d,), eps=self.eps), l, "ffn")
        y = F.layer_norm(x, (self.d,), self.w["final_norm.weight"], self.w["final_norm.bias"], eps=self.eps)
        cache["pos"] += T
        if last_only:  # a prompt block wants only its last row's logits, as `Session::feed`
            y = y[-1:]
        return y @ self.w["embedding"].T

    def new_cache(self):
        return {"pos": 0, "k": [None] * self.L, "v": [None] * self.L}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prefill-repeat", type=int, default=1,
                    help="time the prompt block this many times (fresh cache each), report the best")
    ap.add_argument("--score", help="comma-separated ids: print the mean NLL (compare with `tokenformer-cli score`)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg, w = load(a.model)
    m = TokenFormer(cfg, w)
    with torch.inference_mode():
        if a.score:
            ids = [int(t) for t in a.score.split(",")]
            logits = m.forward(ids, m.new_cache())
            lp = torch.log_softmax(logits.double(), dim=-1)
            nll = -sum(lp[i, ids[i + 1]].item() for i in range(len(ids) - 1)) / (len(ids) - 1)
            print(json.dumps({"nll": nll, "tokens": len(ids)}))
            return
        g = torch.Generator().manual_seed(a.seed)
        prompt = torch.randint(0, cfg["tokenizer_vocab"], (a.prompt_tokens,), generator=g).tolist()
        prefill, prefill_cpu = float("inf"), float("inf")
        for _ in range(max(1, a.prefill_repeat)):
            cache = m.new_cache()
            t, c = time.perf_counter(), time.process_time()
            logits = m.forward(prompt, cache, last_only=True)
            prefill = min(prefill, time.perf_counter() - t)
            prefill_cpu = min(prefill_cpu, time.process_time() - c)
        t = time.perf_counter()
        for _ in range(a.gen_tokens):
            nxt = int(logits[-1, : cfg["tokenizer_vocab"]].argmax())
            logits = m.forward([nxt], cache)
        decode = time.perf_counter() - t
    out = {
        "prefill_tokens_per_s": a.prompt_tokens / prefill,
        "prefill_cpu_tokens_per_s": a.prompt_tokens / (prefill_cpu / a.threads),
        "prompt_tokens": a.prompt_tokens,
        "decode_tokens_per_s": a.gen_tokens / decode,
        "threads": a.threads,
        "torch": torch.__version__,
    }
    print(json.dumps(out) if a.json else "\n".join(f"{k}: {v}" for k, v in out.items()))


if __name__ == "__main__":
    main()

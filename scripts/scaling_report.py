#!/usr/bin/env python3
"""Tables and plot for docs/scaling.md from the runs of scripts/scaling.sh (standard library only).

Compute: the paper's cost model as core's Config::flops_per_token implements it, per trained
token 3 x (2 N + 4 L d T) with T = seq/2 (the mean causal history of a window) and the factor 3
for forward + backward.
"""
import json
import math
import sys
from pathlib import Path

SEQ, BATCH = 128, 8


def params(c):
    d = c["d_model"]
    per_layer = 3 * c["qkv_tokens"] + c["proj_tokens"] + c["ffn_tokens"]
    return c["vocab_size"] * d + c["n_layers"] * 2 * d * per_layer + 2 * d


def train_flops_per_token(c):
    return 3 * (2 * params(c) + 4 * c["n_layers"] * c["d_model"] * (SEQ / 2))


def load_cfg(out, name):
    return json.loads((out / f"{name}.json").read_text())


def log(out, run):
    rows = [json.loads(l) for l in (out / run / "log.jsonl").read_text().splitlines() if l.strip()]
    return rows


def run_cfg(out, run):
    """The config a run trained: read from its final checkpoint's safetensors header."""
    path = out / run / "model.safetensors"
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    return json.loads(header["__metadata__"]["config"])


def equal_steps(out, stage_steps, target, stages):
    spent = sum(train_flops_per_token(load_cfg(out, s)) * stage_steps * SEQ * BATCH for s in stages)
    return max(1, round(spent / (train_flops_per_token(load_cfg(out, target)) * SEQ * BATCH)))


def curve(out, runs):
    """(cumulative FLOPs, held-out loss) points over a chain of runs."""
    pts, base = [], 0.0
    for r in runs:
        fpt = train_flops_per_token(run_cfg(out, r)) * SEQ * BATCH
        rows = log(out, r)
        for row in rows:
            if "heldout_loss" in row:
                pts.append((base + row["step"] * fpt, row["heldout_loss"]))
        base += rows[-1]["step"] * fpt
    return pts, base


def svg(series, width=720, height=420):
    xs = [x for _, p in series for x, _ in p if x > 0]
    ys = [y for _, p in series for _, y in p]
    x0, x1 = math.log10(min(xs)), math.log10(max(xs))
    y0, y1 = min(ys), max(ys)
    pad = 60

    def px(x):
        return pad + (math.log10(x) - x0) / (x1 - x0 or 1) * (width - 2 * pad)

    def py(y):
        return height - pad - (y - y0) / (y1 - y0 or 1) * (height - 2 * pad)

    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<line x1="{pad}" y1="{height-pad}" x2="{width-pad}" y2="{height-pad}" stroke="black"/>',
           f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height-pad}" stroke="black"/>',
           f'<text x="{width/2}" y="{height-15}" text-anchor="middle">training FLOPs (log scale)</text>',
           f'<text x="15" y="{height/2}" transform="rotate(-90 15 {height/2})" text-anchor="middle">held-out loss (nats/token)</text>']
    for e in range(math.floor(x0), math.ceil(x1) + 1):
        if x0 <= e <= x1:
            out.append(f'<text x="{px(10**e):.1f}" y="{height-pad+16}" text-anchor="middle">1e{e}</text>')
    for i in range(5):
        y = y0 + (y1 - y0) * i / 4
        out.append(f'<text x="{pad-6}" y="{py(y)+4:.1f}" text-anchor="end">{y:.2f}</text>')
    for k, (name, pts) in enumerate(series):
        c = colors[k % len(colors)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts if x > 0)
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{path}"/>')
        out.append(f'<text x="{width-pad-180}" y="{pad+16*k}" fill="{c}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out)


def report(out, stage_steps):
    chains = {
        "grown (zero keys, kept scale)": ["grown-zero-S0", "grown-zero-S1", "grown-zero-S2"],
        "grown (authors: random, new scale)": ["grown-random-S0", "grown-random-S1", "grown-random-S2"],
        "scratch S1, equal compute": ["scratch-S1-equal"],
        "scratch S2, equal compute": ["scratch-S2-equal"],
        "scratch S2, long": ["scratch-S2-long"],
    }
    series, rows = [], []
    for name, runs in chains.items():
        pts, total = curve(out, runs)
        series.append((name, pts))
        for i, r in enumerate(runs):
            cfg = run_cfg(out, r)
            _, spent = curve(out, runs[: i + 1])
            final = [row for row in log(out, r) if "heldout_loss" in row][-1]["heldout_loss"]
            tokens = sum(log(out, x)[-1]["tokens"] for x in runs[: i + 1])
            rows.append((name, r, params(cfg), tokens, spent, final))
    Path("docs/scaling.svg").write_text(svg(series))
    print("# Progressive scaling in miniature\n")
    print("Regenerate everything on this page: `bash scripts/scaling.sh` (about 3 hours on the project's 2-core machine).\n")
    print(f"Shakespeare (bundled tokenizer, 2 % held out per file), d 128, 4 layers, seq {SEQ}, batch {BATCH}, "
          f"{stage_steps} steps ({stage_steps*SEQ*BATCH} tokens) per growth stage, lr 2e-3 with warmup + cosine per stage.\n")
    print("Compute is the paper's cost model: 3 × (2N + 4·L·d·T) FLOPs per trained token, T = seq/2.\n")
    print("| method | run | params | tokens (cumulative) | training FLOPs (cumulative) | held-out loss |")
    print("|---|---|---|---|---|---|")
    for name, r, p, tok, fl, loss in rows:
        print(f"| {name} | {r} | {p:,} | {tok:,} | {fl:.3e} | {loss:.4f} |")
    print("\n![held-out loss against training compute](scaling.svg)\n")


if __name__ == "__main__":
    if sys.argv[1] == "--equal-steps":
        print(equal_steps(Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5:]))
    elif sys.argv[1] == "--report":
        report(Path(sys.argv[2]), int(sys.argv[3]))

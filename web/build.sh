#!/usr/bin/env bash
# Builds what web/index.html loads into web/dist/:
#   tokenformer_web.wasm          web/wasm (core's no_std path) for wasm32-unknown-unknown
#   shakespeare-q8_0.safetensors  the bundled model quantized to Q8_0 by tokenformer-cli
#   tokenizer.json                the bundled tokenizer
# Then serve web/ over HTTP, e.g. `python3 -m http.server --bind 127.0.0.1 -d web 8000`, and
# open http://127.0.0.1:8000/. Needs the wasm32-unknown-unknown target
# (`rustup target add wasm32-unknown-unknown`).
set -euo pipefail
cd "$(dirname "$0")/.."

DIST=web/dist
mkdir -p "$DIST"

# Size over debug info: no DWARF, one codegen unit, LTO; panics abort (a trap in the page).
# These override the workspace's release profile for this build only.
CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=true CARGO_PROFILE_RELEASE_LTO=true \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_PANIC=abort \
    cargo build -p tokenformer-web --target wasm32-unknown-unknown --release
cp target/wasm32-unknown-unknown/release/tokenformer_web.wasm "$DIST/"

cargo build --release -p tokenformer-cli
target/release/tokenformer-cli quantize --model models/shakespeare.safetensors \
    --out "$DIST/shakespeare-q8_0.safetensors" --format q8_0
cp models/tokenizer.json "$DIST/"
chmod 644 "$DIST"/*

echo "web/dist:"
for f in "$DIST"/*; do
    printf '  %10d bytes  %s\n' "$(stat -c %s "$f")" "$(basename "$f")"
done

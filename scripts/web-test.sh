#!/usr/bin/env bash
# The browser test: builds the page (web/build.sh), serves web/ on a loopback port, and drives
# it in Debian's headless chromium with playwright-core (web/test/browser.mjs): a typed prompt,
# temperature 0, 50 tokens, whose prompt ids, generated ids and text must equal the host's
# (tokenformer-cli with TOKENFORMER_KERNELS=scalar, the kernels the wasm build runs).
# Needs: cargo with the wasm32-unknown-unknown target, python3, node + npm, chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

TOKENS=50
PROMPT=$'ROMEO:\nWhat light through yonder window breaks?'
WORK=$(mktemp -d)
SERVER=
cleanup() {
    [ -z "$SERVER" ] || kill "$SERVER" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

for tool in python3 node npm timeout "${CHROMIUM:-/usr/bin/chromium}"; do
    command -v "$tool" >/dev/null || fail "$tool is not installed"
done

echo "== building the page"
bash web/build.sh

echo "== the host's reference (scalar kernels)"
CLI=target/release/tokenformer-cli
MODEL=web/dist/shakespeare-q8_0.safetensors
printf '%s' "$PROMPT" >"$WORK/prompt"
PROMPT_IDS=$("$CLI" tokenize --tokenizer models/tokenizer.json --text "$PROMPT")
IDS=$(TOKENFORMER_KERNELS=scalar "$CLI" generate --model "$MODEL" --token-ids "$PROMPT_IDS" \
    --temperature 0 --max-tokens "$TOKENS")
TOKENFORMER_KERNELS=scalar "$CLI" generate --model "$MODEL" --tokenizer models/tokenizer.json \
    --prompt "$PROMPT" --temperature 0 --max-tokens "$TOKENS" >"$WORK/text"
echo "prompt ids: $PROMPT_IDS"
echo "ids: $IDS"
[ "$(tr ',' '\n' <<<"$IDS" | wc -l)" -eq "$TOKENS" ] || fail "the CLI gave not $TOKENS ids: $IDS"

echo "== playwright-core"
(cd web/test && timeout 300 npm ci --no-audit --no-fund)

echo "== serving web/ on 127.0.0.1"
# Port 0: the OS picks a free port; the server prints it.
python3 -u -m http.server --bind 127.0.0.1 --directory web 0 >"$WORK/server.log" 2>&1 &
SERVER=$!
PORT=
for _ in $(seq 100); do
    PORT=$(sed -n 's/.*port \([0-9][0-9]*\).*/\1/p' "$WORK/server.log" | head -1)
    [ -n "$PORT" ] && break
    kill -0 "$SERVER" 2>/dev/null || fail "the server exited: $(cat "$WORK/server.log")"
    sleep 0.1
done
[ -n "$PORT" ] || fail "the server did not start within 10 s"
echo "http://127.0.0.1:$PORT/"

echo "== chromium (headless)"
timeout 300 node web/test/browser.mjs "http://127.0.0.1:$PORT/index.html" "$WORK/prompt" \
    "$PROMPT_IDS" "$IDS" "$WORK/text"
WASM=web/dist/tokenformer_web.wasm
echo "wasm: $(stat -c %s "$WASM") bytes; model: $(stat -c %s "$MODEL") bytes"

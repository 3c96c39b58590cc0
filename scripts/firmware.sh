#!/usr/bin/env bash
# Builds the firmware (firmware/), runs it under QEMU's mps2-an386 (Cortex-M4F) and checks it
# against the host:
#   - the tiny Q8_0 model: exit 0, and the ids, text and first step's logits checksum equal to
#     the host's scalar kernels (core built --no-default-features, the firmware's code path);
#   - the Q4_0 twin (same config, smaller file): exit 0, the same heap high-water mark;
#   - four corrupted models (header length, JSON, tensor offset, truncated): a printed error
#     and a non-zero exit, each under a timeout;
# then prints a report (flash, RAM, heap, stack, MACs per token) and, for information, whether
# the host's default SIMD kernels give the same ids.
# Needs: cargo with the thumbv7em-none-eabihf target, qemu-system-arm, python3.
set -euo pipefail
cd "$(dirname "$0")/.."

TIMEOUT=${FW_TIMEOUT:-300}
MODEL=models/tiny-q8_0.safetensors
MODEL_Q4=models/tiny-q4_0.safetensors
TOKENIZER=models/tiny-tokenizer.json
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

for tool in qemu-system-arm python3 timeout; do
    command -v "$tool" >/dev/null || fail "$tool is not installed"
done

# Build one firmware variant (env FW_MODEL / FW_CORRUPT as build.rs reads them) into $WORK/$1.elf.
build() {
    local name=$1
    shift
    (cd firmware && env "$@" cargo build --release --quiet)
    cp firmware/target/thumbv7em-none-eabihf/release/tokenformer-firmware "$WORK/$name.elf"
}

# Run $WORK/$1.elf; its output goes to $WORK/$1.out, its exit status to $WORK/$1.rc.
run() {
    local rc=0
    # -icount shift=0: one instruction per virtual nanosecond, so the board's timer counts
    # instructions (the firmware calibrates it against a loop of known length).
    timeout "$TIMEOUT" qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic \
        -semihosting-config enable=on,target=native -icount shift=0 \
        -kernel "$WORK/$1.elf" >"$WORK/$1.out" 2>&1 || rc=$?
    echo "$rc" >"$WORK/$1.rc"
    [ "$rc" -ne 124 ] || fail "$1: no exit within ${TIMEOUT}s (hang)"
}

echo "== building the firmware"
build q8_0 FW_MODEL="../$MODEL" FW_CORRUPT=none
build q4_0 FW_MODEL="../$MODEL_Q4" FW_CORRUPT=none
CORRUPT=(header-len json offset truncate)
for c in "${CORRUPT[@]}"; do
    build "corrupt-$c" FW_MODEL="../$MODEL" FW_CORRUPT="$c"
done
# Leave the default build in place for whoever runs cargo in firmware/ next.
(cd firmware && env FW_MODEL="../$MODEL" FW_CORRUPT=none cargo build --release --quiet)

echo "== running under qemu-system-arm (mps2-an386)"
for v in q8_0 q4_0; do
    run "$v"
    cat "$WORK/$v.out"
    [ "$(cat "$WORK/$v.rc")" -eq 0 ] || fail "$v: exit status $(cat "$WORK/$v.rc")"
done
for c in "${CORRUPT[@]}"; do
    run "corrupt-$c"
    rc=$(cat "$WORK/corrupt-$c.rc")
    msg=$(grep -E '^(error|panic):' "$WORK/corrupt-$c.out" || true)
    echo "corrupt $c: exit $rc, $msg"
    [ "$rc" -ne 0 ] || fail "corrupt $c: exit 0"
    grep -q '^error:' <<<"$msg" || fail "corrupt $c: no error line (a panic is not an error code)"
done

echo "== host reference (core --no-default-features: the scalar kernels)"
cargo build --release --quiet -p tokenformer-core --no-default-features --example firmware_reference
cp target/release/examples/firmware_reference "$WORK/host-scalar"
"$WORK/host-scalar" "$MODEL" "$TOKENIZER" >"$WORK/host-scalar.out"
cat "$WORK/host-scalar.out"
KEYS='^(prompt_ids|ids|text|first_logits_fnv1a):'
diff <(grep -E "$KEYS" "$WORK/host-scalar.out") <(grep -E "$KEYS" "$WORK/q8_0.out") \
    || fail "the firmware's ids, text or logits checksum differ from the host's scalar run"
echo "firmware == host scalar: ids, text and first-step logits checksum identical"

cargo build --release --quiet -p tokenformer-core --example firmware_reference
# The std build with its kernel level forced to scalar (TOKENFORMER_KERNELS) is the same code.
TOKENFORMER_KERNELS=scalar target/release/examples/firmware_reference "$MODEL" "$TOKENIZER" \
    >"$WORK/host-forced.out"
diff <(grep -E "$KEYS|^kernels:" "$WORK/host-forced.out") \
    <(grep -E "$KEYS|^kernels:" "$WORK/host-scalar.out") \
    || fail "TOKENFORMER_KERNELS=scalar (std build) differs from the no_std scalar run"
echo "firmware == host std build forced to TOKENFORMER_KERNELS=scalar: identical"
target/release/examples/firmware_reference "$MODEL" "$TOKENIZER" >"$WORK/host-simd.out"
SIMD_KERNELS=$(sed -n 's/^kernels: //p' "$WORK/host-simd.out")
if diff -q <(grep '^ids:' "$WORK/host-simd.out") <(grep '^ids:' "$WORK/q8_0.out") >/dev/null; then
    SIMD_IDS="identical ids"
else
    SIMD_IDS="DIFFERENT ids (a near-tie flipped): $(grep '^ids:' "$WORK/host-simd.out")"
fi
if diff -q <(grep '^first_logits' "$WORK/host-simd.out") <(grep '^first_logits' "$WORK/q8_0.out") >/dev/null; then
    SIMD_SUM="identical"
else
    SIMD_SUM="different (expected: other summation order)"
fi

python3 - "$WORK" "$MODEL" "$MODEL_Q4" "$SIMD_KERNELS" "$SIMD_IDS" "$SIMD_SUM" <<'PY'
import json, re, struct, sys
work, model, model_q4, simd_kernels, simd_ids, simd_sum = sys.argv[1:]

def sections(path):
    b = open(path, "rb").read()
    shoff, = struct.unpack_from("<I", b, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", b, 0x2E)
    hdr = [struct.unpack_from("<IIIIII", b, shoff + i * shentsize) for i in range(shnum)]
    strtab = hdr[shstrndx][4]
    name = lambda o: b[strtab + o:b.index(b"\0", strtab + o)].decode()
    # (name, type, flags, addr, offset, size)
    return [(name(h[0]),) + h[1:] for h in hdr]

def field(out, key):
    m = re.search(rf"^{key}: (\d+)", open(f"{work}/{out}.out").read(), re.M)
    return int(m.group(1))

SHF_ALLOC, NOBITS = 2, 8
secs = sections(f"{work}/q8_0.elf")
flash = sum(s[5] for s in secs if s[2] & SHF_ALLOC and s[1] != NOBITS)  # .data's image too
ram_static = sum(s[5] for s in secs if s[2] & SHF_ALLOC and s[3] >= 0x20000000 and s[0] != ".uninit")
heap_reserved = sum(s[5] for s in secs if s[0] == ".uninit")
model_bytes = len(open(model, "rb").read())
q4_bytes = len(open(model_q4, "rb").read())
code = flash - model_bytes
goal = 1.5 * model_bytes + 64 * 1024

raw = open(model, "rb").read()
n = struct.unpack_from("<Q", raw)[0]
meta = json.loads(raw[8:8 + n])["__metadata__"]
cfg = json.loads(meta["config"])
d, L, V = cfg["d_model"], cfg["n_layers"], cfg["vocab_size"]
per_layer = d * (3 * 2 * cfg["qkv_tokens"] + 2 * cfg["proj_tokens"] + 2 * cfg["ffn_tokens"])
ctx = 10 + 64 - 1  # decode.rs: the prompt and the generated tokens but the last
attn_avg = L * 2 * d * (ctx + 1) / 2  # scores and weighted sum over the positions so far
macs = L * per_layer + V * d

def instructions(out):
    m = re.search(r"^timer_ticks: prompt (\d+) \((\d+) tokens\), decode (\d+) \((\d+) tokens\), "
                  r"calibration (\d+) for (\d+) instructions", open(f"{work}/{out}.out").read(), re.M)
    p, pn, dt, dn, cal, ci = map(int, m.groups())
    per_tick = ci / cal
    return p * per_tick / pn, dt * per_tick / dn, per_tick

heap8, heap4 = field("q8_0", "heap_peak"), field("q4_0", "heap_peak")
stack8 = field("q8_0", "stack_peak")
print()
print("== firmware report (Cortex-M4F, QEMU mps2-an386)")
print(f"model {model}: {model_bytes:,} bytes; {cfg['n_layers']} layers, d {d}, vocab {V}, context {cfg['max_context']}")
print(f"flash: {flash:,} bytes = model {model_bytes:,} + code and tables {code:,}; "
      f"goal ≤ 1.5 × model + 64 KiB = {goal:,.0f}: {'met' if flash <= goal else 'NOT MET'}")
print(f"RAM: statics {ram_static:,} bytes, heap {heap_reserved:,} reserved (Session::bytes_needed at context "
      f"{cfg['max_context']} + load and fragmentation headroom), stack peak {stack8:,}")
print(f"heap high-water mark: {heap8:,} bytes with Q8_0 ({model_bytes:,}-byte file), "
      f"{heap4:,} with Q4_0 ({q4_bytes:,}-byte file): "
      f"{'the same: RAM does not grow with the weights' if heap8 == heap4 else 'DIFFERENT'}")
print(f"multiply-accumulates per token: {macs:,} in the Pattentions and logits "
      f"(+ {attn_avg:,.0f} in attention on average over the {ctx} positions)")
for v in ("q8_0", "q4_0"):
    pre, dec, per_tick = instructions(v)
    print(f"instructions per token ({v}, QEMU -icount, {per_tick:.1f} per timer tick): "
          f"{dec:,.0f} decoding ({dec / macs:.1f} per multiply-accumulate), {pre:,.0f} in the prompt block")
print(f"host SIMD kernels ({simd_kernels}): {simd_ids}; first-step logits checksum {simd_sum}")
if flash > goal:
    sys.exit("flash goal not met")
if heap8 != heap4:
    sys.exit("the heap depends on the weights' format")
PY
echo "firmware check passed"

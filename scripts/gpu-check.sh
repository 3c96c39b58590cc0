#!/usr/bin/env bash
# The CUDA backend's device check, in two halves.
#
#   scripts/gpu-check.sh --build   (here, with Rust): release builds of the CLI, train_speed and the
#       CUDA test binaries with --features cuda, stripped into gpu-carry/ (git-ignored).
#   scripts/gpu-check.sh [--run]   (on the GPU machine, no Rust needed): finds libcuda, cuBLAS and
#       NVRTC (usual folders and pip's nvidia/*/lib), prints versions, runs every test binary and
#       train_speed, and prints a summary table. Exits 0 only when every GPU test passed; a test
#       that skipped (no device) or failed makes the exit non-zero, so "no GPU" is never a pass.
set -uo pipefail
SELF_DIR=$(cd "$(dirname "$0")" && pwd)
cd "$SELF_DIR/.."
CARRY=${GPU_CARRY:-gpu-carry}
MODE=${1:---run}

build() {
    set -e
    local tests=(cuda_gpu cuda_nvrtc)
    cargo build --release -p tokenformer-cli --features cuda
    cargo build --release -p tokenformer-benches --features cuda --bin train_speed
    rm -rf "$CARRY" && mkdir -p "$CARRY"
    cp target/release/tokenformer-cli target/release/train_speed "$CARRY/"
    local t exe
    for t in "${tests[@]}"; do
        exe=$(cargo test --release -p tokenformer-train --features cuda --test "$t" --no-run \
            --message-format=json 2>/dev/null |
            python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"]==sys.argv[1]:
        print(m["executable"])' "$t" | tail -1)
        [ -n "$exe" ] || { echo "no test binary for $t" >&2; return 1; }
        cp "$exe" "$CARRY/$t"
    done
    strip --strip-debug "$CARRY"/*
    cp "$0" "$CARRY/gpu-check.sh"
    du -sh "$CARRY"
    ls -l "$CARRY"
}

# The folder holding a library, searched where CUDA and pip put it.
find_lib() {
    local name=$1 d
    local dirs=(/usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib/wsl/lib)
    for d in $(python3 -c 'import site,sys; print(" ".join(site.getsitepackages()+[site.getusersitepackages()]))' 2>/dev/null); do
        dirs+=("$d"/nvidia/*/lib)
    done
    for d in "${dirs[@]}"; do
        if compgen -G "$d/$name*" >/dev/null; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

run_checks() {
    local here lib dir
    # The binaries sit beside this script (the carried copy) or in $CARRY (the repository's).
    here=$( [ -x "$SELF_DIR/cuda_gpu" ] && echo "$SELF_DIR" || echo "$PWD/$CARRY" )
    echo "== libraries"
    for lib in libcuda.so libcublas.so libnvrtc.so; do
        if dir=$(find_lib "$lib"); then
            echo "$lib: $dir"
            case ":${LD_LIBRARY_PATH:-}:" in *":$dir:"*) ;; *) export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;; esac
        else
            echo "$lib: not found"
        fi
    done
    echo "== versions"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "nvidia-smi: none"
    echo "glibc needed by the carried binaries: $(for f in "$here"/tokenformer-cli "$here"/train_speed "$here"/cuda_*; do
        objdump -T "$f" 2>/dev/null | grep -o 'GLIBC_[0-9.]*'; done | sort -t. -k1,1 -k2,2n -k3,3n -u | tail -1)"
    echo "glibc here: $(ldd --version 2>/dev/null | head -1)"
    # nvrtcVersion and the driver version come from the NVRTC test's output below.

    # Each test alone: passed (exit 0, no "skipped:"), skipped (printed "skipped:"), or failed.
    declare -A result
    local t name out status
    local names
    for t in cuda_nvrtc cuda_gpu; do
        names=$("$here/$t" --list 2>/dev/null | sed -n 's/: test$//p' || true)
        # A binary that is missing, does not start or lists nothing is a failure, never a pass.
        [ -n "$names" ] || result["$t"]="failed (no tests listed)"
        for name in $names; do
            echo "== $t::$name"
            out=$(timeout 120 "$here/$t" --exact "$name" --test-threads=1 --nocapture 2>&1)
            status=$?
            echo "$out" | tail -40
            if [ $status -ne 0 ]; then
                result["$t::$name"]=failed
            elif grep -q "skipped:" <<<"$out"; then
                result["$t::$name"]="skipped ($(grep -m1 -o 'skipped:.*' <<<"$out"))"
            else
                result["$t::$name"]=passed
            fi
        done
    done

    echo "== train_speed"
    # tokens/s and MFU (train_speed's FLOPs count over an H100 / H200's dense peak: 67 TFLOPS in
    # f32, 989 in bf16). The 150M row is the 150m preset's shape.
    local speeds=()
    local cfg prec out json tps mfu
    for cfg in "5M:--layers 4 --d 256 --heads 4 --qkv 256 --proj 256 --ffn 1024 --vocab 4096 --batch 8 --seq 256 --steps 10" \
               "150M:--layers 12 --d 768 --heads 12 --qkv 768 --proj 768 --ffn 3072 --vocab 50304 --batch 8 --seq 1024 --steps 5"; do
        for prec in f32 bf16; do
            # shellcheck disable=SC2086
            out=$(timeout 45 "$here/train_speed" ${cfg#*:} --device cuda --precision "$prec" 2>&1)
            echo "$out" | tail -3
            json=$(grep -m1 '^{.*tokens_per_s' <<<"$out")
            if [ -n "$json" ]; then
                tps=$(sed -n 's/.*"tokens_per_s": \([0-9.]*\).*/\1/p' <<<"$json")
                mfu=$(sed -n 's/.*"mfu": \([0-9.]*\).*/\1/p' <<<"$json")
                speeds+=("$(printf '%-6s %-5s %14s %8s' "${cfg%%:*}" "$prec" "$tps" \
                    "$(awk -v m="$mfu" 'BEGIN { printf "%.1f %%", 100 * m }')")")
            else
                speeds+=("$(printf '%-6s %-5s not measured: %s' "${cfg%%:*}" "$prec" \
                    "$(grep -v '^\s*$' <<<"$out" | tail -1)")")
            fi
        done
    done

    echo
    echo "== summary"
    local passed=0 other=0 k
    for k in $(printf '%s\n' "${!result[@]}" | sort); do
        printf '%-70s %s\n' "$k" "${result[$k]}"
        if [ "${result[$k]}" = passed ]; then passed=$((passed + 1)); else other=$((other + 1)); fi
    done
    echo
    printf '%-6s %-5s %14s %8s\n' config prec tokens/s MFU
    printf '%s\n' "${speeds[@]}"
    echo "passed $passed, skipped or failed $other"
    if [ ${#result[@]} -eq 0 ] || [ $other -ne 0 ]; then
        echo "GPU check NOT passed (a skipped test means no GPU was used)"
        return 1
    fi
    echo "GPU check passed"
}

case "$MODE" in
--build) build ;;
--run) run_checks ;;
*)
    echo "usage: $0 [--build | --run]" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# The CUDA backend's device check, in two halves.
#
#   scripts/gpu-check.sh --build   (here, with Rust): release builds of the CLI, train_speed and the
#       CUDA test binaries with --features cuda, stripped into gpu-carry/ (git-ignored).
#   scripts/gpu-check.sh [--run]   (on the GPU machine, no Rust needed): finds libcuda, cuBLAS and
#       NVRTC (usual folders and pip's nvidia/*/lib), prints versions, runs every test binary and
#       train_speed, and prints a summary table. Exits 0 only when every GPU test passed; a test
#       that skipped (no device) or failed makes the exit non-zero, so "no GPU" is never a pass.
#   NCCL: a 1-rank smoke test of the device all-reduce (counted); with 2 or more GPUs, 2 ranks
#       against 1 GPU with accum 2, and (GPU_CHECK_NCCL_CLI=1 at --build, OpenMPI there) the same
#       under mpirun with tokens/s; with fewer GPUs it says the multi-GPU part skipped.
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
    build_nccl
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

# One test of a carried binary into result[]: passed (exit 0, no "skipped:"), skipped (printed
# "skipped:"), or failed. Uses the caller's `result` array.
run_test() { # dir binary test
    local out status
    echo "== $2::$3"
    out=$(timeout 120 "$1/$2" --exact "$3" --test-threads=1 --nocapture 2>&1)
    status=$?
    echo "$out" | tail -40
    if [ $status -ne 0 ]; then
        result["$2::$3"]=failed
    elif grep -q "skipped:" <<<"$out"; then
        result["$2::$3"]="skipped ($(grep -m1 -o 'skipped:.*' <<<"$out"))"
    else
        result["$2::$3"]=passed
    fi
}

# NCCL (data-parallel CUDA ranks), build half: the nccl_gpu test binary (feature `nccl` of the
# train crate: no MPI, it runs wherever libnccl is; 2 MB). With GPU_CHECK_NCCL_CLI=1 also the CLI
# with `--features nccl` (13 MB, links OpenMPI's libmpi) for the mpirun run of the multi-GPU
# section: only worth carrying to a machine with 2 or more GPUs and OpenMPI.
build_nccl() {
    local exe
    exe=$(cargo test --release -p tokenformer-train --features nccl --test nccl_gpu --no-run 2>&1 |
        sed -n 's/.*Executable tests\/nccl_gpu.rs (\(.*\))$/\1/p' | tail -1)
    [ -n "$exe" ] || { echo "no test binary for nccl_gpu" >&2; return 1; }
    cp "$exe" "$CARRY/nccl_gpu"
    if [ "${GPU_CHECK_NCCL_CLI:-0}" = 1 ]; then
        cargo build --release -p tokenformer-cli --features nccl
        cp target/release/tokenformer-cli "$CARRY/tokenformer-cli-nccl"
    fi
}

# NCCL, run half: find libnccl (cudarc opens `libnccl.so`; pip's nvidia-nccl wheels and the
# libnccl2 package ship only libnccl.so.2, so a link is made in a temporary folder), run the
# 1-rank smoke test (counted), and with 2 or more GPUs the 2-rank checks (counted); with fewer it
# says the multi-GPU part skipped and is unverified (not counted: the machine cannot run it).
nccl_checks() {
    local here=$1 dir gpus link
    echo "== NCCL"
    if dir=$(find_lib libnccl.so); then
        echo "libnccl: $dir: $(cd "$dir" && ls libnccl.so* | tr '\n' ' ')"
        if [ ! -e "$dir/libnccl.so" ]; then
            link=$(mktemp -d)
            ln -s "$(ls "$dir"/libnccl.so.* | head -1)" "$link/libnccl.so"
            dir="$link:$dir"
        fi
        export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    else
        echo "libnccl: not found (pip install nvidia-nccl-cu12 or -cu13, or the libnccl2 package)"
    fi
    run_test "$here" nccl_gpu unique_id_comes_from_libnccl
    run_test "$here" nccl_gpu one_rank_all_reduce_runs_on_the_device
    gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
    if [ "${gpus:-0}" -lt 2 ]; then
        echo "NCCL multi-GPU: skipped: this machine has ${gpus:-0} GPU(s), 2 are needed"
        speeds+=("NCCL 2 ranks: skipped (${gpus:-0} GPU here): unverified")
        return 0
    fi
    run_test "$here" nccl_gpu two_ranks_on_two_gpus_sum_exactly_and_train_like_accum_two
    nccl_two_ranks_cli "$here"
}

# 2 ranks under mpirun (one GPU each, NCCL) against 1 GPU with accum 2, same seed: the loss
# sequences within 1e-6 relative (f32), and the tokens/s of each. Needs the CLI built with
# GPU_CHECK_NCCL_CLI=1 and OpenMPI here; without them it says so (not counted: nccl_gpu's 2-rank
# test above already compares the losses).
nccl_two_ranks_cli() {
    local bin=$1/tokenformer-cli-nccl w key=nccl_cli::mpirun_2_ranks_equal_1_gpu_accum_2
    if [ ! -x "$bin" ] || ! command -v mpirun >/dev/null; then
        speeds+=("NCCL mpirun 2 ranks (tokens/s): skipped: needs tokenformer-cli-nccl in the carry (--build with GPU_CHECK_NCCL_CLI=1) and OpenMPI's mpirun")
        return 0
    fi
    w=$(mktemp -d)
    python3 -c 'import random; r = random.Random(1); w = ["w%d" % i for i in range(3000)]
print("\n".join(" ".join(r.choice(w) for _ in range(12)) + "." for _ in range(40000)))' >"$w/corpus.txt"
    "$bin" tokenizer-train --files "$w/corpus.txt" --vocab-size 4096 --out "$w/tok.json" >/dev/null
    local args=(train --data "$w/corpus.txt" --tokenizer "$w/tok.json" --preset 150m --device cuda
        --steps 20 --batch 4 --seq 512 --eval-every 10 --save-every 0 --quiet)
    if ! timeout 300 "$bin" "${args[@]}" --accum 2 --out "$w/one" ||
        ! timeout 300 mpirun --allow-run-as-root -np 2 "$bin" "${args[@]}" --accum 1 --out "$w/two"; then
        result["$key"]=failed
        return 0
    fi
    local report status
    report=$(python3 - "$w/one/log.jsonl" "$w/two/log.jsonl" <<'PY'
import json, sys
one, two = ([json.loads(l) for l in open(p)] for p in sys.argv[1:])
tps = lambda log: sum(l["tokens_per_s"] for l in log[3:]) / max(len(log[3:]), 1)
print(f"NCCL tokens/s: 1 GPU (accum 2) {tps(one):.0f}, 2 GPUs {tps(two):.0f}, "
      f"ratio {tps(two) / max(tps(one), 1e-9):.2f}")
bad = [(a["step"], a["loss"], b["loss"]) for a, b in zip(one, two)
       if abs(a["loss"] - b["loss"]) > 1e-6 * abs(a["loss"])]
ok = not bad and len(one) == len(two) == 20
print("losses within 1e-6 relative" if ok else f"losses differ: {bad} ({len(one)}, {len(two)} steps)")
sys.exit(0 if ok else 1)
PY
)
    status=$?
    echo "$report"
    [ $status -eq 0 ] && result["$key"]=passed || result["$key"]=failed
    speeds+=("$(head -1 <<<"$report")")
    rm -rf "$w"
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
    local t name
    local names
    for t in cuda_nvrtc cuda_gpu; do
        names=$("$here/$t" --list 2>/dev/null | sed -n 's/: test$//p' || true)
        # A binary that is missing, does not start or lists nothing is a failure, never a pass.
        [ -n "$names" ] || result["$t"]="failed (no tests listed)"
        for name in $names; do
            run_test "$here" "$t" "$name"
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

    nccl_checks "$here"

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

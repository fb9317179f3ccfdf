#!/usr/bin/env bash
# Every GPU number issue 12 asks for, in one go (Lite-HRNet-18 256x192; about 10 minutes on one GPU):
#   training through the real loop (JPEG files, loader workers): fp32, bfloat16 autocast, channels_last,
#   regional torch.compile, and torch.compile with CUDA graphs (TRAIN.COMPILE_MODE reduce-overhead);
#   inference at batch 1 and 32: eager, BN folded, compiled, compiled with CUDA graphs.
# Each run is printed as it finishes and kept whole (with its JSON line) in $OUT/<name>.txt; a run that fails
# is reported and the next one runs. Usage: bash tools/benchmark_gpu.sh [extra KEY VALUE overrides]
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-output/benchmark_gpu}
WORKERS=${WORKERS:-8}
BATCH=${BATCH:-64}
mkdir -p "$OUT"
if ! python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "error: torch sees no CUDA device; this script measures the GPU (tools/benchmark.py model/train for CPUs)" >&2
    exit 2
fi
python -c 'import torch; print("torch", torch.__version__, "on", torch.cuda.get_device_name())'

run() {  # run NAME SUBCOMMAND ARGS...: one benchmark, its table on the console, everything in $OUT/NAME.txt
    local name=$1
    shift
    echo "== $name: python tools/benchmark.py $*"
    local start=$SECONDS
    if timeout 1200 python tools/benchmark.py "$@" --json > "$OUT/$name.txt" 2>&1; then
        grep -E '^\||speed-up|first call|first training|samples/s' "$OUT/$name.txt" | grep -v '^{'
    else
        echo "   FAILED (exit $?), last lines:"
        tail -5 "$OUT/$name.txt"
    fi
    echo "   ($((SECONDS - start)) s)"
}

TRAIN=(train --device cuda --batch "$BATCH" --iters 20 --workers "$WORKERS" --rounds 3)
run train_fp32 "${TRAIN[@]}" "$@"
run train_bf16 "${TRAIN[@]}" TRAIN.AMP True TRAIN.AMP_DTYPE bfloat16 "$@"
run train_channels_last "${TRAIN[@]}" TRAIN.CHANNELS_LAST True "$@"
run train_compiled "${TRAIN[@]}" --compile "$@"
run train_cuda_graphs "${TRAIN[@]}" --compile TRAIN.COMPILE_MODE reduce-overhead "$@"
run model_compiled model --device cuda --compile --batch 32 --seconds 10 "$@"
run model_cuda_graphs model --device cuda --compile --batch 32 --seconds 10 --skip-train \
    TEST.COMPILE_MODE reduce-overhead "$@"
echo "all runs in $OUT/"

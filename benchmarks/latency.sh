#!/usr/bin/env bash
# Inference latency, PyTorch eager vs ONNX Runtime (random weights, float32, 112x112), as in benchmarks/RESULTS.md.
# Batch 1 with 5 warm-up + 20 timed calls; batch 32 with fewer calls (each takes seconds on a CPU).
# Usage: benchmarks/latency.sh [cpu|cuda] [threads]     e.g. benchmarks/latency.sh cpu 2
set -euo pipefail
device=${1:-cpu}
threads=${2:-$(nproc)}
py=${PYTHON:-python}
backbones=(mobilefacenet ir18 ir50 ir100)
"$py" -m facezoo bench latency --device "$device" --threads "$threads" --backbones "${backbones[@]}" \
    --batch-sizes 1 --warmup 5 --iters 20
if [ "$device" = cuda ]; then warm=5; iters=20; else warm=2; iters=10; fi
"$py" -m facezoo bench latency --device "$device" --threads "$threads" --backbones "${backbones[@]}" \
    --batch-sizes 32 --warmup "$warm" --iters "$iters"

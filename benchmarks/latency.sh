#!/usr/bin/env bash
# Inference latency table (benchmarks/RESULTS.md): TFace's backbones x every runtime variant (eager, ORT fp32/int8,
# OpenVINO fp32/int8; on a GPU eager bf16, ORT CUDA, TensorRT fp16; skipped with the reason elsewhere), batch 1 and
# 32, variants interleaved call by call. About 15-20 minutes on 2 quiet cores (exports included).
# Usage: benchmarks/latency.sh [threads] [extra options...]   e.g. benchmarks/latency.sh 2
#        BACKBONES="ir18 ir50" benchmarks/latency.sh 2         (any names of `facezoo list backbones`)
set -euo pipefail
threads=${1:-$(nproc)}
shift || true
py=${PYTHON:-python}
read -r -a backbones <<< "${BACKBONES:-mobilefacenet efficientnet_b0 ghostnet ir18 ir34 ir50 ir100}"
"$py" -m facezoo bench latency --backbones "${backbones[@]}" --threads "$threads" \
    --batch-sizes 1 32 --warmup 3 1 --iters 20 5 "$@"

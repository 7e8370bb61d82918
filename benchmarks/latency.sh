#!/usr/bin/env bash
# Inference latency table (benchmarks/RESULTS.md): backbones x every runtime variant (eager, ORT fp32/int8,
# OpenVINO fp32/int8; on a GPU eager bf16, ORT CUDA, TensorRT fp16; skipped with the reason elsewhere), batch 1 and
# 32, variants interleaved call by call. Default backbones: TFace's table (7 minutes on 2 quiet cores, exports
# included); BACKBONES=all: every backbone of `facezoo list backbones` (64 minutes on 2 cores with --warmup 1 1
# --iters 10 3, about twice that at the defaults; ir2060 and vit_h time eager only, their ONNX files would pass
# 2 GiB). Add --isolated for batch-1 figures on small networks (each variant alone in a fresh process).
# Usage: benchmarks/latency.sh [threads] [extra options...]   e.g. benchmarks/latency.sh 2
#        BACKBONES="ir18 ir50" benchmarks/latency.sh 2         (any names of `facezoo list backbones`, or all)
#        BACKBONES=mobilefacenet benchmarks/latency.sh 1 --batch-sizes 1 --warmup 0 --iters 2   (a dry run, ~1 min)
set -euo pipefail
threads=${1:-$(nproc)}
shift || true
py=${PYTHON:-python}
read -r -a backbones <<< "${BACKBONES:-mobilefacenet efficientnet_b0 ghostnet ir18 ir34 ir50 ir100}"
which=(--backbones "${backbones[@]}")
[[ "${backbones[*]}" == all ]] && which=()  # bench latency's default: every registered backbone
"$py" -m facezoo bench latency "${which[@]}" --threads "$threads" --batch-sizes 1 32 --warmup 3 1 --iters 20 5 "$@"

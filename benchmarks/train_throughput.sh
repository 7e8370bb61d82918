#!/usr/bin/env bash
# Training throughput at the anchors' settings (../shared/reference/anchors.md): one GPU, ArcFace s=64 m=0.5,
# SGD, 93,431 classes, full FC, synthetic uint8 input on the device. Run on a GPU machine; add the printed lines
# to benchmarks/RESULTS.md with the command, device and date. Extra arguments are passed to every line, e.g.
# `compile=true` (torch.compile the backbone, inductor) or `head.chunk_size=0` (force the unchunked softmax).
set -euo pipefail
FZ=${FZ:-facezoo}
$FZ bench train --backbone ir50 --batch-size 512 --classes 93431 "$@"
$FZ bench train --backbone ir50 --batch-size 512 --classes 93431 "$@" compile=true
$FZ bench train --backbone ir50 --batch-size 128 --classes 93431 "$@"
$FZ bench train --backbone ir100 --batch-size 128 --classes 93431 "$@"
$FZ bench train --backbone mobilefacenet --batch-size 512 --classes 93431 "$@"
$FZ bench train --backbone mobilefacenet --batch-size 512 --classes 93431 "$@" compile=true
# 10M identities with Partial FC 0.1 (issue 3's memory target): 1M sampled rows, so head.chunk_size=auto
# chunks the softmax (2^26 / 512 = 131,072 columns per chunk)
$FZ bench train --backbone ir50 --batch-size 512 --classes 10000000 --sample-rate 0.1 "$@"

"""Training throughput of every registered backbone (or the named ones): one Markdown row per backbone.

Each row is `facezoo bench train` for that backbone at its native input size (synthetic uint8 batches on the
device, ArcFace, bf16, the trainer's own step), beside the parameters and GFLOPs that `facezoo list backbones
--details` counts on the meta device. Speed figures only mean something on a quiet machine; on a GPU:

    python benchmarks/backbone_zoo.py --batch-size 256 --steps 30 --warmup 10
    python benchmarks/backbone_zoo.py ir50 efficientnet_b0 ghostnet --batch-size 512

A backbone that fails (e.g. out of memory at that batch size) gets a row with the error instead of a figure.
"""

from __future__ import annotations

import argparse

import torch

from facezoo.bench.train import bench_train
from facezoo.models.backbones import BACKBONES
from facezoo.models.backbones.facts import describe


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="backbones (default: every registered one)")
    p.add_argument("--batch-size", type=int, default=256, help="per process (default 256)")
    p.add_argument("--classes", type=int, default=93431, help="identities of the synthetic classifier")
    p.add_argument("--steps", type=int, default=30, help="timed optimiser steps (default 30)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (default 10)")
    p.add_argument("--precision", default="bf16", choices=("fp32", "bf16", "fp16"))
    args = p.parse_args(argv)
    names = args.names or BACKBONES.names()
    for name in names:
        BACKBONES.get(name)  # unknown names fail before anything runs
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"training throughput, {device}, batch {args.batch_size}, {args.classes} classes, {args.precision}\n")
    print("| backbone | params | GFLOPs | input | images/s | peak GiB |")
    print("|---|---:|---:|---|---:|---:|")
    for name in names:
        f = describe(name)
        h, w = f.input_size
        head = f"| `{name}` | {f.params / 1e6:.2f}M | {f.gflops:.2f} | {h}x{w} |"
        try:
            r = bench_train(
                backbone=name,
                batch_size=args.batch_size,
                classes=args.classes,
                steps=args.steps,
                warmup=args.warmup,
                overrides=[
                    f"model.input_size={h}",
                    f"model.embedding_size={f.embedding_size}",
                    f"precision={args.precision}",
                ],
            )
        except Exception as e:  # one backbone's failure (OOM, ...) must not hide the others' rows
            print(f"{head} failed: {type(e).__name__}: {str(e)[:80]} | |", flush=True)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        peak = "" if r["peak_gib"] is None else f"{r['peak_gib']:.1f}"
        rate = r["images_per_s"]
        print(f"{head} {rate:,.0f} | {peak} |" if rate >= 10 else f"{head} {rate:.2f} | {peak} |", flush=True)


if __name__ == "__main__":
    main()

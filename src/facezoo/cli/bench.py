"""`facezoo bench train ...` (training throughput) and `facezoo bench latency ...` (inference latency).

train:   --backbone NAME --batch-size B --classes C [--sample-rate R] [--data synthetic|REC_DIR]
         [--compile [MODE]] [--chunk-size auto|0|N]
latency: [--backbones mobilefacenet ir18 ir50] [--batch-sizes 1 32] [--threads N] [--warmup 5] [--iters 20]
         [--device cpu|cuda] [--input-size 112]: PyTorch eager vs ONNX Runtime, random weights, markdown table.
"""

from __future__ import annotations

import json
import sys

from . import COMMANDS
from ._sdk_args import print_json


@COMMANDS.register("bench")
def register(sub) -> None:
    p = sub.add_parser("bench", help="measure training throughput or inference latency", description=__doc__)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = actions.add_parser("train", help="images/s and peak GPU memory of the training step", description=__doc__)
    t.add_argument("--backbone", default="ir50", help="a registered backbone (facezoo list backbones; default ir50)")
    t.add_argument("--batch-size", type=int, default=512, help="per process")
    t.add_argument("--classes", type=int, default=93431, help="identities (synthetic data; real data has its own)")
    t.add_argument("--sample-rate", type=float, default=1.0, help="Partial FC rate (1.0 = full FC)")
    t.add_argument("--data", default="synthetic", help="'synthetic' (uint8 tensors on the device) or a RecordIO folder")
    t.add_argument("--steps", type=int, default=50, help="timed optimiser steps")
    t.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    t.add_argument(
        "--compile",
        nargs="?",
        const=True,
        default=None,
        metavar="MODE",
        help="torch.compile the backbone (optional mode: default, reduce-overhead, max-autotune)",
    )
    t.add_argument("--chunk-size", default=None, help="margin-softmax column chunks: auto, 0 (unchunked) or N")
    t.add_argument("--json", action="store_true", help="print the result as JSON")
    t.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, e.g. precision=fp16 channels_last=false"
    )
    t.set_defaults(func=run)

    lat = actions.add_parser(
        "latency", help="inference latency: PyTorch eager vs ONNX Runtime per backbone", description=__doc__
    )
    lat.add_argument(
        "--backbones",
        nargs="+",
        default=["mobilefacenet", "ir18", "ir50"],
        metavar="NAME",
        help="registered backbones (facezoo list); default mobilefacenet ir18 ir50",
    )
    lat.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32], metavar="B", help="default 1 32")
    lat.add_argument("--threads", type=int, default=None, help="CPU threads for both runtimes (default: torch's)")
    lat.add_argument("--warmup", type=int, default=5, help="untimed calls per setting (default 5)")
    lat.add_argument("--iters", type=int, default=20, help="timed calls per setting (default 20)")
    lat.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to time (default cpu)")
    lat.add_argument("--input-size", type=int, default=112, help="square input side in pixels (default 112)")
    lat.add_argument("--embedding-size", type=int, default=512, help="embedding dimension (default 512)")
    lat.add_argument(
        "--backbone-kwargs",
        default="{}",
        metavar="JSON",
        help="extra backbone arguments as JSON, e.g. '{\"width\": 0.5}'",
    )
    lat.add_argument(
        "--runtimes",
        nargs="+",
        choices=("torch", "onnxruntime"),
        default=["torch", "onnxruntime"],
        help="runtimes to time (default both)",
    )
    lat.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    lat.set_defaults(func=run_latency)


def run(args) -> int:
    from ..bench.train import bench_train
    from ..errors import ConfigError

    if args.steps < 1 or args.warmup < 0:
        raise ConfigError("--steps must be >= 1 and --warmup >= 0")
    chunk = args.chunk_size
    if chunk not in (None, "auto"):
        if not chunk.isdigit():
            raise ConfigError(f"--chunk-size {chunk}: give auto, 0 (unchunked) or a positive column count")
        chunk = int(chunk)
    r = bench_train(
        args.backbone,
        args.batch_size,
        args.classes,
        args.sample_rate,
        args.data,
        args.steps,
        args.warmup,
        args.overrides,
        compile=args.compile,
        chunk_size=chunk,
    )
    if args.json:
        print_json(r)
    else:
        peak = f", peak {r['peak_gib']:.1f} GiB" if r["peak_gib"] is not None else ""
        print(
            f"{r['backbone']} batch {r['batch_size']} classes {r['classes']:,} sample_rate {r['sample_rate']} "
            f"{r['precision']} {r['data']} on {r['device_name']}: {r['images_per_s']:,.0f} images/s{peak}"
        )
    return 0


def run_latency(args) -> int:
    import os

    import torch

    from ..bench.latency import bench_latency, cpu_name, format_latency_table
    from ..errors import ConfigError

    try:
        kwargs = json.loads(args.backbone_kwargs)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--backbone-kwargs is not valid JSON ({e}); e.g. '{{\"width\": 0.5}}'") from None
    if not isinstance(kwargs, dict):
        raise ConfigError("--backbone-kwargs must be a JSON object, e.g. '{\"width\": 0.5}'")
    rows = bench_latency(
        args.backbones,
        args.batch_sizes,
        args.threads,
        args.warmup,
        args.iters,
        args.device,
        args.input_size,
        args.embedding_size,
        kwargs,
        args.runtimes,
        log=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    if args.json:
        print_json(rows)
        return 0
    r = rows[0]
    versions = f"torch {torch.__version__}"
    if "onnxruntime" in args.runtimes:
        from importlib.metadata import PackageNotFoundError, version

        for dist in ("onnxruntime", "onnxruntime-gpu"):
            try:
                versions += f", onnxruntime {version(dist)}"
                break
            except PackageNotFoundError:
                pass
    where = r["device_name"] if r["device"] != "cpu" else f"{cpu_name()} ({os.cpu_count()} cores)"
    print(
        f"{where}, {r['threads']} threads, input {args.input_size}x{args.input_size}, float32, random weights; "
        f"{r['warmup']} warm-up + {r['iters']} timed calls per row; {versions}"
    )
    print(format_latency_table(rows))
    return 0

"""`facezoo bench train ...` (training throughput) and `facezoo bench latency ...` (inference latency).

train:   --backbone NAME --batch-size B --classes C [--sample-rate R] [--data synthetic|REC_DIR]
         [--compile [MODE]] [--chunk-size auto|0|N]
latency: [--backbones NAME ...] [--batch-sizes 1 32] [--threads N] [--warmup 5 [2]] [--iters 20 [5]]
         [--runtimes eager ort ort-int8 openvino openvino-int8 eager-bf16 ort-cuda tensorrt-fp16] [--tiny]: every
         backbone (default) x runtime, random weights, interleaved calls, median (p10-p90), TFace-style Markdown
         tables; --tiny: each backbone's small test build, a dry run of the whole table.
"""

from __future__ import annotations

import contextlib
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
        "latency",
        help="inference latency per backbone x runtime (eager, ORT, OpenVINO; int8; GPU variants), interleaved",
        description=__doc__,
    )
    lat.add_argument(
        "--backbones",
        nargs="+",
        default=None,
        metavar="NAME",
        help="registered backbones (default: every one, `facezoo list backbones`)",
    )
    lat.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32], metavar="B", help="default 1 32")
    lat.add_argument("--threads", type=int, default=None, help="CPU threads for every runtime (default: torch's)")
    lat.add_argument(
        "--warmup", type=int, nargs="+", default=[5], metavar="N", help="untimed rounds: one, or one per batch size"
    )
    lat.add_argument(
        "--iters", type=int, nargs="+", default=[20], metavar="N", help="timed rounds: one, or one per batch size"
    )
    lat.add_argument(
        "--input-size", type=int, default=None, help="square input side (default: each backbone's own, 112 mostly)"
    )
    lat.add_argument("--embedding-size", type=int, default=None, help="embedding dimension (default: the backbone's)")
    lat.add_argument(
        "--backbone-kwargs",
        default="{}",
        metavar="JSON",
        help="extra backbone arguments as JSON, e.g. '{\"width\": 0.5}'",
    )
    lat.add_argument(
        "--runtimes",
        nargs="+",
        default=None,
        metavar="VARIANT",
        help="variants to time (default all; the GPU ones are skipped without CUDA, with the reason): eager ort "
        "ort-int8 openvino openvino-int8 eager-bf16 ort-cuda tensorrt-fp16",
    )
    lat.add_argument(
        "--tiny",
        action="store_true",
        help="each backbone at its small test build (registration's test_kwargs): a dry run of every backbone x "
        "runtime in minutes; the timings mean nothing",
    )
    lat.add_argument(
        "--isolated",
        action="store_true",
        help="time each variant of each backbone alone, in a fresh process (no other runtime's threads around; "
        "slower: every process exports anew). Default: all variants of a backbone interleaved in one process",
    )
    lat.add_argument("--json", action="store_true", help="print the rows as JSON instead of the tables")
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
            f"{r['precision']}{' (default for the device)' if r['precision_default'] else ''} {r['data']} on "
            f"{r['device_name']}: {r['images_per_s']:,.0f} images/s{peak}"
        )
    return 0


def run_latency(args) -> int:
    import os

    import torch

    from ..bench.latency import VARIANTS, bench_latency, cpu_name, format_latency_table
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
        args.runtimes or tuple(VARIANTS),
        args.input_size,
        args.embedding_size,
        kwargs,
        log=lambda msg: print(msg, file=sys.stderr, flush=True),
        tiny=args.tiny,
        isolated=args.isolated,
    )
    if args.json:
        print_json(rows)
        return 0
    from importlib.metadata import PackageNotFoundError, version

    versions = [f"torch {torch.__version__}"]
    for dist in ("onnxruntime", "onnxruntime-gpu", "openvino"):
        with contextlib.suppress(PackageNotFoundError):
            versions.append(f"{dist} {version(dist)}")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    threads = rows[0]["threads"] or torch.get_num_threads()
    rounds = ", ".join(f"batch {r['batch']}: {r['warmup']} warm-up + {r['iters']} timed" for r in _firsts(rows))
    print("| | device | frameworks |\n|---|---|---|")
    print(f"| CPU | {cpu_name()} ({os.cpu_count()} cores), {threads} threads per runtime | {', '.join(versions)} |")
    print(f"| GPU | {gpu} | |\n")
    if args.tiny:
        print("--tiny: small test builds of each backbone (a dry run; these timings mean nothing)\n")
    how = "each variant alone in a fresh process" if args.isolated else "variants interleaved call by call"
    print(
        f"Random weights (BatchNorm calibrated), uint8 crops in, embeddings out; {how} "
        f"({rounds} rounds); int8: static QDQ, 32 random calibration crops.\n"
    )
    print(format_latency_table(rows))
    return 0


def _firsts(rows):
    seen = {}
    for r in rows:
        seen.setdefault(r["batch"], r)
    return list(seen.values())

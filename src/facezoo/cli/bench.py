"""`facezoo bench train --backbone NAME --batch-size B --classes C [--sample-rate R] [--data synthetic|REC_DIR]`."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("bench", help="measure training throughput")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = actions.add_parser("train", help="images/s and peak GPU memory of the training step", description=__doc__)
    t.add_argument("--backbone", default="ir50")
    t.add_argument("--batch-size", type=int, default=512, help="per process")
    t.add_argument("--classes", type=int, default=93431, help="identities (synthetic data; real data has its own)")
    t.add_argument("--sample-rate", type=float, default=1.0, help="Partial FC rate (1.0 = full FC)")
    t.add_argument("--data", default="synthetic", help="'synthetic' (uint8 tensors on the device) or a RecordIO folder")
    t.add_argument("--steps", type=int, default=50, help="timed optimiser steps")
    t.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    t.add_argument("--json", action="store_true", help="print the result as JSON")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. precision=fp16 channels_last=false")
    t.set_defaults(func=run)


def run(args) -> int:
    from ..bench.train import bench_train
    from ..errors import ConfigError

    if args.steps < 1 or args.warmup < 0:
        raise ConfigError("--steps must be >= 1 and --warmup >= 0")
    r = bench_train(args.backbone, args.batch_size, args.classes, args.sample_rate, args.data, args.steps,
                    args.warmup, args.overrides)
    if args.json:
        print(json.dumps(r))
    else:
        peak = f", peak {r['peak_gib']:.1f} GiB" if r["peak_gib"] is not None else ""
        print(f"{r['backbone']} batch {r['batch_size']} classes {r['classes']:,} sample_rate {r['sample_rate']} "
              f"{r['precision']} {r['data']} on {r['device_name']}: {r['images_per_s']:,.0f} images/s{peak}")
    return 0

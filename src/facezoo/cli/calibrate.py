"""`facezoo calibrate MODEL --bin X.bin [--folder CROPS] [--far 1e-3 1e-4] --out MODEL_calibrated.pt`: cosine
thresholds by target false accept rate, written into a copy of the model so `verify --far` can use them.

For each FAR the threshold is the smallest t with #{impostor pairs with cosine >= t} / #impostors <= FAR, on the
listed pairs of .bin sets and/or all pairs of a folder of aligned crops (FOLDER/<person>/<crop>), pooled. A FAR
needs at least 1/FAR impostor pairs (LFW's 3000 reach 1e-3 at best; `facezoo eval` reports n/a by the same
rule); without --far every FAR of 1e-2 ... 1e-6 that the pairs support is calibrated. Scores are single-view
cosines, as verify computes them (--flip: e(x) + e(flip x)). .pt: meta.thresholds; .onnx: the metadata key
"facezoo.thresholds" (and meta.thresholds of facezoo exports). The output is written atomically; TAR at each
threshold is printed with it. Without --far, verify and identify then use the lowest calibrated FAR.
"""

from __future__ import annotations

from pathlib import Path

from . import COMMANDS
from ._sdk_args import (
    MODEL_HELP,
    add_device_arg,
    add_quiet_arg,
    add_runtime_args,
    check_files,
    log,
    preprocessing,
    print_json,
)


@COMMANDS.register("calibrate")
def register(sub) -> None:
    p = sub.add_parser(
        "calibrate", help="verification thresholds by target FAR, saved in the model", description=__doc__
    )
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--bin", dest="bins", nargs="+", default=[], metavar="FILE", help="InsightFace .bin pair sets")
    p.add_argument(
        "--folder",
        dest="folders",
        nargs="+",
        default=[],
        metavar="DIR",
        help="folders of aligned crops, one sub-folder per person (all pairs are used)",
    )
    p.add_argument(
        "--far",
        type=float,
        nargs="+",
        default=None,
        metavar="FAR",
        help="target FARs (default: those of 1e-2 ... 1e-6 the pairs support)",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help="calibrated copy (default: MODEL_calibrated.<ext> beside MODEL; in the current folder for a name)",
    )
    p.add_argument("--flip", action="store_true", help="score e(x) + e(flip x) instead of single-view embeddings")
    add_runtime_args(p, batch_size=128)
    add_device_arg(p)
    add_quiet_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import ConfigError
    from ..far import check_far
    from ..models.loader import load_model
    from ..models.zoo import resolve
    from ..sdk.thresholds import DEFAULT_KEY, calibrate, calibrated_path, write_thresholds

    if not args.bins and not args.folders:
        raise ConfigError("nothing to calibrate on: give --bin FILE ... and/or --folder DIR ...")
    for f in args.far or ():
        check_far(f, "--far")  # before the model loads; the impostor count is checked by the same rule later
    check_files(args.bins)
    model = resolve(args.model)
    out = Path(args.out) if args.out else calibrated_path(args.model)
    rec = load_model(model, args.device, batch_size=args.batch_size, **preprocessing(args))
    log(rec.describe())
    result = calibrate(rec, bins=args.bins, folders=args.folders, fars=args.far, flip=args.flip)
    # a stated default operating point (dlib_resnet's) stays beside the calibrated FARs
    kept = {DEFAULT_KEY: rec.thresholds[DEFAULT_KEY]} if DEFAULT_KEY in rec.thresholds else {}
    write_thresholds(model, {**kept, **result["thresholds"]}, out)
    print_json({"model": str(model), "out": str(out), **result})
    return 0

"""`facezoo verify IMG1 IMG2 --model M [--far F | --threshold T]`: same person? JSON with same true/false, the cosine
similarity of the best face of each image, the threshold and the operating point it came from: {"far", "threshold",
"source": "calibrated"} for a FAR calibrated into the model (`facezoo calibrate`), {"threshold", "source": "model
default"} for a model's stated default (dlib_resnet), {"threshold", "source": "--threshold"} for a given one.
Without --far / --threshold the model's default operating point is used: its lowest calibrated FAR, else its stated
default; a model with neither is an error that gives the commands to calibrate it. Exit 0 whether or not they
match; 2 when an image has no face."""

from __future__ import annotations

from . import COMMANDS
from ._sdk_args import (
    add_detector_args,
    add_device_arg,
    add_model_args,
    build_analyzer,
    check_files,
    face_dict,
    print_json,
)


def add_decision_args(p, far_help: str) -> None:
    """--far / --threshold, checked before any model loads."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--far", type=float, default=None, metavar="F", help=far_help)
    g.add_argument(
        "--threshold",
        type=float,
        default=None,
        metavar="T",
        help="cosine threshold in [-1, 1], instead of the model's operating point",
    )


def check_decision_args(args) -> None:
    from ..far import check_far
    from ..sdk.thresholds import check_threshold

    if args.far is not None:
        check_far(args.far, "--far")
    if args.threshold is not None:
        check_threshold(args.threshold, "--threshold")


@COMMANDS.register("verify")
def register(sub) -> None:
    p = sub.add_parser("verify", help="are two photos the same person?", description=__doc__)
    p.add_argument("image1", metavar="IMG1", help="first photo")
    p.add_argument("image2", metavar="IMG2", help="second photo")
    add_model_args(p)
    add_decision_args(
        p,
        "target false accept rate, calibrated into the model (default: the model's default operating point, its "
        "lowest calibrated FAR or its stated threshold)",
    )
    add_detector_args(p)
    add_device_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    check_decision_args(args)
    p1, p2 = check_files([args.image1, args.image2])
    fa = build_analyzer(args)
    fa.operating_point(args.far, args.threshold)  # before any detection: a model without one fails fast
    r = fa.verify(p1, p2, far=args.far, threshold=args.threshold)
    r["face1"], r["face2"] = face_dict(r["face1"]), face_dict(r["face2"])
    print_json({"image1": str(p1), "image2": str(p2), **r})
    return 0

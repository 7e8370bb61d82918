"""`facezoo verify IMG1 IMG2 --model M [--far 1e-4 | --threshold T]`: same person? JSON with same true/false, the
cosine similarity of the best face of each image and the threshold used (calibrated for --far in the model's
metadata, see `facezoo calibrate`; the model's default operating point; or given). Exit 0 whether or not they
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


@COMMANDS.register("verify")
def register(sub) -> None:
    p = sub.add_parser("verify", help="are two photos the same person?", description=__doc__)
    p.add_argument("image1", metavar="IMG1")
    p.add_argument("image2", metavar="IMG2")
    add_model_args(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--far",
        type=float,
        default=None,
        help="target false accept rate (default: the model's default operating point if it has one, e.g. "
        "dlib_resnet's, else 1e-4)",
    )
    g.add_argument("--threshold", type=float, default=None, help="cosine threshold, instead of --far")
    add_detector_args(p)
    add_device_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    p1, p2 = check_files([args.image1, args.image2])
    fa = build_analyzer(args)
    r = fa.verify(p1, p2, far=args.far, threshold=args.threshold)
    r["face1"], r["face2"] = face_dict(r["face1"]), face_dict(r["face2"])
    print_json({"image1": str(p1), "image2": str(p2), **r})
    return 0

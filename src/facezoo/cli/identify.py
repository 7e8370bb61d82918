"""`facezoo identify IMAGES... --model M --gallery G.db [--top-k 5] [--far F | --threshold T]`: who is in each
photo? JSON per image: every face with its top-k gallery identities by cosine (only those at or above the
threshold when --far or --threshold is given)."""

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


@COMMANDS.register("identify")
def register(sub) -> None:
    p = sub.add_parser("identify", help="search faces in a gallery", description=__doc__)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    add_model_args(p)
    p.add_argument(
        "--gallery", required=True, metavar="G.db", help="gallery file (facezoo gallery enroll) or postgresql:// URL"
    )
    p.add_argument("--top-k", type=int, default=5, help="identities per face (default 5)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--far", type=float, default=None, help="keep matches above the threshold calibrated for FAR")
    g.add_argument("--threshold", type=float, default=None, help="keep matches with cosine >= T")
    add_detector_args(p)
    add_device_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..sdk.gallery import open_gallery

    paths = check_files(args.images)
    fa = build_analyzer(args)
    threshold = args.threshold if args.far is None else fa.threshold_for(args.far)
    with open_gallery(args.gallery, create=False, model_key=fa.recognizer.key) as gallery:
        for path in paths:
            results = fa.identify(path, gallery, top_k=args.top_k, threshold=threshold)
            faces = [{**face_dict(r["face"]), "matches": r["matches"]} for r in results]
            print_json({"image": str(path), "faces": faces})
    return 0

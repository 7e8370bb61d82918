"""`facezoo identify IMAGES_OR_FOLDERS... --model M --gallery G.db [--top-k 5] [--far F | --threshold T]
[--annotate OUT_DIR]`: who is in each photo? JSON per image: the operating point, and every face with "identity"
(the best gallery identity at or above the threshold, null when unknown), "unknown" and its top-k matches at or above
the threshold. The threshold is --threshold, the one calibrated for --far, or by default the model's operating point
(its lowest calibrated FAR, else its stated default), as `facezoo verify` decides; `--threshold -1` lists the top-k
candidates whatever their score. Folders are searched recursively (other files, and images there that cannot be
decoded, are skipped and listed on stderr). --annotate writes copies with each face's box and name (or "unknown")."""

from __future__ import annotations

from . import COMMANDS
from ._sdk_args import (
    add_detector_args,
    add_device_arg,
    add_model_args,
    add_quiet_arg,
    build_analyzer,
    collect_images,
    face_dict,
    print_json,
    read_input,
    unique_outputs,
    write_annotated,
)
from .verify import add_decision_args, check_decision_args


@COMMANDS.register("identify")
def register(sub) -> None:
    p = sub.add_parser("identify", help="search faces in a gallery", description=__doc__)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files and/or folders (searched recursively)")
    add_model_args(p)
    p.add_argument(
        "--gallery", required=True, metavar="G.db", help="gallery file (facezoo gallery enroll) or postgresql:// URL"
    )
    p.add_argument("--top-k", type=int, default=5, metavar="K", help="identities per face")
    add_decision_args(
        p,
        "accept matches above the threshold calibrated for this FAR (default: the model's default operating point)",
    )
    p.add_argument(
        "--annotate", metavar="OUT_DIR", default=None, help="write copies of the images with names drawn here"
    )
    add_detector_args(p)
    add_device_arg(p)
    add_quiet_arg(p)
    p.set_defaults(func=run)


def label(result: dict) -> str:
    """What an annotated copy says of a face: 'name 0.87', or 'unknown'."""
    if result["unknown"]:
        return "unknown"
    return f"{result['identity']} {result['matches'][0]['score']:.2f}"


def run(args) -> int:
    from ..errors import ConfigError
    from ..progress import track
    from ..sdk.gallery import open_gallery

    if args.top_k < 1:
        raise ConfigError(f"--top-k {args.top_k}: give a positive number of identities per face.")
    check_decision_args(args)
    items = collect_images(args.images)
    if args.annotate:
        unique_outputs(items, args.annotate)
    fa = build_analyzer(args)
    op = fa.operating_point(args.far, args.threshold)  # a model without one fails before any image is read
    with open_gallery(args.gallery, create=False, model_key=fa.recognizer.key) as gallery:
        for item in track(items, len(items), "identify", "img"):
            img = read_input(item)
            if img is None:
                continue
            results = fa.identify(img, gallery, top_k=args.top_k, threshold=args.threshold, far=args.far)
            faces = [
                {**face_dict(r["face"]), "identity": r["identity"], "unknown": r["unknown"], "matches": r["matches"]}
                for r in results
            ]
            record = {"image": str(item.path), "operating_point": op, "faces": faces}
            if args.annotate:
                labels = [label(r) for r in results]
                record["annotated"] = write_annotated(img, [r["face"] for r in results], args.annotate, item, labels)
            print_json(record)
    return 0

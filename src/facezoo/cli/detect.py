"""`facezoo detect IMAGES_OR_FOLDERS... [--detector SPEC] [--out DIR]`: faces (box, score, 5 points) as JSON, one
object per image; folders are searched recursively for images (other files are skipped and listed on stderr, as
are images there that cannot be decoded). --out writes annotated copies (boxes, scores, landmarks) named like the
inputs (a folder's images keep their relative paths)."""

from __future__ import annotations

from . import COMMANDS
from ._sdk_args import (
    add_detector_args,
    add_device_arg,
    add_quiet_arg,
    build_analyzer,
    collect_images,
    face_dict,
    print_json,
    read_input,
    unique_outputs,
    write_annotated,
)


@COMMANDS.register("detect")
def register(sub) -> None:
    p = sub.add_parser("detect", help="detect faces: boxes, scores and 5 landmarks as JSON", description=__doc__)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files and/or folders (searched recursively)")
    add_detector_args(p)
    add_device_arg(p)
    p.add_argument("--out", metavar="DIR", default=None, help="write annotated copies of the images here")
    add_quiet_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..progress import track

    items = collect_images(args.images)
    if args.out:
        unique_outputs(items, args.out)
    fa = build_analyzer(args, recognizer=False)
    for item in track(items, len(items), "detect", "img"):
        img = read_input(item)
        if img is None:
            continue
        faces = fa.analyze(img)
        record = {"image": str(item.path), "faces": [face_dict(f) for f in faces]}
        if args.out:
            record["annotated"] = write_annotated(img, faces, args.out, item)
        print_json(record)
    return 0

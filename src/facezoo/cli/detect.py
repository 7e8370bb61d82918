"""`facezoo detect IMAGES... [--detector SPEC] [--out DIR]`: faces (box, score, 5 points) as JSON, one object per
image; --out writes annotated copies (boxes, scores, landmarks) named like the inputs."""

from __future__ import annotations

from pathlib import Path

from . import COMMANDS
from ._sdk_args import (
    add_detector_args,
    add_device_arg,
    build_analyzer,
    check_files,
    face_dict,
    print_json,
    unique_stems,
)

ANNOTATED = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png"}


@COMMANDS.register("detect")
def register(sub) -> None:
    p = sub.add_parser("detect", help="detect faces: boxes, scores and 5 landmarks as JSON", description=__doc__)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    add_detector_args(p)
    add_device_arg(p)
    p.add_argument("--out", metavar="DIR", default=None, help="write annotated copies of the images here")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..data.image import encode_image, read_image_file
    from ..io import atomic_write
    from ..sdk.draw import draw_faces

    paths = check_files(args.images)
    if args.out:
        unique_stems(paths)
    fa = build_analyzer(args, recognizer=False)
    for path in paths:
        img = read_image_file(path)
        faces = fa.analyze(img)
        record = {"image": str(path), "faces": [face_dict(f) for f in faces]}
        if args.out:
            fmt = ANNOTATED.get(path.suffix.lower(), "png")
            out = Path(args.out) / (path.name if path.suffix.lower() in ANNOTATED else f"{path.stem}.png")
            with atomic_write(out) as f:
                f.write(encode_image(draw_faces(img, faces), fmt))
            record["annotated"] = str(out)
        print_json(record)
    return 0

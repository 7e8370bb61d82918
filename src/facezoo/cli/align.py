"""`facezoo align IMAGES... --out DIR [--size 112]`: detect, then write each face aligned to the ArcFace template
(similarity transform of its 5 points) as DIR/<stem>_<i>.png, i = 0 for the highest-scoring face; JSON per image."""

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


@COMMANDS.register("align")
def register(sub) -> None:
    p = sub.add_parser("align", help="detect and write aligned face crops", description=__doc__)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the crops")
    p.add_argument(
        "--size",
        type=int,
        nargs="+",
        default=[112],
        metavar="N",
        help="crop size: N (square) or H W (default 112; 112 96 gives the SphereFace-era crop)",
    )
    add_detector_args(p)
    add_device_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..data.image import encode_image, read_image_file
    from ..errors import ConfigError
    from ..io import atomic_write

    if len(args.size) not in (1, 2) or min(args.size) < 1:
        raise ConfigError(f"--size {' '.join(map(str, args.size))}: give one positive size or H W.")
    size = (args.size[0], args.size[-1])
    paths = check_files(args.images)
    unique_stems(paths)
    fa = build_analyzer(args, recognizer=False, crop_size=size)
    out = Path(args.out)
    for path in paths:
        faces = fa.analyze(read_image_file(path))
        record = {"image": str(path), "faces": []}
        for i, face in enumerate(faces):
            d = face_dict(face)
            if face.crop is not None:
                target = out / f"{path.stem}_{i}.png"
                with atomic_write(target) as f:
                    f.write(encode_image(face.crop, "png"))
                d["crop"] = str(target)
            record["faces"].append(d)
        print_json(record)
    return 0

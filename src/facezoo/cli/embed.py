"""`facezoo embed IMAGES_OR_FOLDERS... --model M [--out emb.npy] [--aligned]`: embeddings as JSON, one object per
image.

Photos are detected and aligned first (every face, highest score first); --aligned takes the images as aligned
crops and embeds each whole image. Folders are searched recursively for images (other files, and images there that
cannot be decoded, are skipped and listed on stderr). --out saves the L2-normalised embeddings of all faces, in
printed order, as a float32 (N, D) .npy; each face's "row" in the JSON is its index there.
"""

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
)


@COMMANDS.register("embed")
def register(sub) -> None:
    p = sub.add_parser("embed", help="face embeddings as JSON / .npy", description=__doc__)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files and/or folders (searched recursively)")
    add_model_args(p)
    p.add_argument("--aligned", action="store_true", help="inputs are aligned crops: skip detection")
    p.add_argument("--out", metavar="FILE.npy", default=None, help="save L2-normalised embeddings (N, D) here")
    add_detector_args(p)
    add_device_arg(p)
    add_quiet_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from ..io import atomic_write
    from ..progress import track

    items = collect_images(args.images)
    if args.aligned:
        args.detector = _no_detector()
    fa = build_analyzer(args)
    rows = []
    for item in track(items, len(items), "embed", "img"):
        img = read_input(item)
        if img is None:
            continue
        if args.aligned:
            emb = fa.embed_crops(img[None])[0]
            rows.append(emb / max(float(np.linalg.norm(emb)), 1e-12))
            print_json({"image": str(item.path), "row": len(rows) - 1, "embedding": emb.astype(float).tolist()})
            continue
        faces = []
        for face in fa.analyze(img):
            d = face_dict(face, embedding=True)
            if face.embedding is not None:
                rows.append(face.normed_embedding)
                d["row"] = len(rows) - 1
            faces.append(d)
        print_json({"image": str(item.path), "faces": faces})
    if args.out:
        d = rows[0].shape[0] if rows else 0
        with atomic_write(args.out) as f:
            np.save(f, np.stack(rows).astype(np.float32) if rows else np.zeros((0, d), np.float32))
    return 0


def _no_detector():
    """A stand-in detector for --aligned (never called: crops go straight to the recognizer)."""
    from ..sdk.detect.base import Detector

    class NoDetector(Detector):
        def detect(self, image, max_faces=None):
            raise AssertionError("--aligned embeds whole crops; detection is skipped")

    return NoDetector()

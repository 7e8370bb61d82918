"""IJB image embeddings: each loose crop aligned to the model's template with the release's 5 points, embedded
with and without horizontal flip, in chunks so that memory stays bounded (IJB-C has 469,375 images)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..data.image import read_image_file
from ..errors import DataError
from .features import extract_features, file_key
from .ijb_meta import meta_dir, read_landmarks


def loose_crop_dir(root, target: str) -> Path:
    """<root>/loose_crop or <root>/<target>/loose_crop."""
    root = Path(root)
    for cand in (root / "loose_crop", root / target.upper() / "loose_crop"):
        if cand.is_dir():
            return cand
    raise DataError(f"no loose_crop/ folder under {root} or {root / target.upper()}; point --root at the release")


def embed_ijb_images(
    embed,
    root,
    target: str,
    batch_size: int = 256,
    device=None,
    chunk: int = 4096,
    log: Callable[[str], None] | None = None,
    cache_dir=None,
    progress: bool = False,
    flip: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(e, e_flip), float64 (N, D) in the order of <target>_name_5pts_score.txt (InsightFace's image order);
    e_flip None with flip=False.

    Embedded through facezoo.eval.features.extract_features: with cache_dir the aligned-crop features are cached
    per model (key: the landmark file and crop folder, the alignment size) and an interrupted run resumes.
    progress: a bar over the images embedded (stderr, when it is a terminal).
    """
    from ..sdk.align import align_faces

    target = target.upper()
    marks_file = meta_dir(root, target) / f"{target.lower()}_name_5pts_score.txt"
    marks = read_landmarks(marks_file)
    crops = loose_crop_dir(root, target)
    size = tuple(getattr(embed, "input_size", (112, 112)))

    def load(a: int, b: int) -> np.ndarray:
        images = [read_image_file(crops / name) for name in marks.names[a:b]]
        return align_faces(images, marks.points[a:b], size)[0]

    key = f"ijb:{target}:{file_key(marks_file)}:{Path(crops).resolve()}:aligned{size[0]}x{size[1]}"
    e, e_flip = extract_features(
        embed,
        key,
        len(marks.names),
        load,
        flip=flip,
        batch_size=batch_size,
        device=device,
        cache_dir=cache_dir,
        chunk=chunk,
        log=log,
        progress=progress,
        desc=f"{target} images",
    )
    return e.astype(np.float64), None if e_flip is None else e_flip.astype(np.float64)

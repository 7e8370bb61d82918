"""IJB image embeddings: each loose crop aligned to the model's template with the release's 5 points, embedded
with and without horizontal flip, in chunks so that memory stays bounded (IJB-C has 469,375 images)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..data.image import read_image_file
from ..errors import DataError
from .ijb import meta_dir, read_landmarks
from .verification import embed_views


def loose_crop_dir(root, target: str) -> Path:
    """<root>/loose_crop or <root>/<target>/loose_crop."""
    root = Path(root)
    for cand in (root / "loose_crop", root / target.upper() / "loose_crop"):
        if cand.is_dir():
            return cand
    raise DataError(f"no loose_crop/ folder under {root} or {root / target.upper()}; point --root at the release")


def embed_ijb_images(embed, root, target: str, batch_size: int = 256, device=None, chunk: int = 4096,
                     log: Callable[[str], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(e, e_flip), float64 (N, D) in the order of <target>_name_5pts_score.txt (InsightFace's image order)."""
    from ..sdk.align import align_faces

    target = target.upper()
    marks = read_landmarks(meta_dir(root, target) / f"{target.lower()}_name_5pts_score.txt")
    crops = loose_crop_dir(root, target)
    size = tuple(getattr(embed, "input_size", (112, 112)))
    views: list[list[np.ndarray]] = [[], []]
    for start in range(0, len(marks.names), chunk):
        names = marks.names[start : start + chunk]
        images = [read_image_file(crops / name) for name in names]
        aligned, _ = align_faces(images, marks.points[start : start + len(names)], size)
        e, e_flip = embed_views(embed, aligned, batch_size=batch_size, device=device, flip=True)
        views[0].append(e)
        views[1].append(e_flip)
        if log is not None:
            log(f"embedded {start + len(names):,}/{len(marks.names):,} {target} images")
    return np.concatenate(views[0]), np.concatenate(views[1])

"""Landmarkers by name: image + face box -> landmark points. LANDMARKERS.create("dlib_sp68") or create_landmarker.

Interface: `landmarker(image, box) -> float32 (P, 2)` x, y pixel coordinates (pixel (x, y) at integer coordinates,
as sdk.align uses them), for a uint8 (H, W, 3) RGB (or (H, W) grey) image and a box (x1, y1, x2, y2) as the
detectors give it; `landmarker.num_points` is P, and sdk.landmarks.to_five_points maps P points to the 5 used
for alignment (P = 68: the iBUG layout).

Registered:
  dlib_sp68  dlib's 68-point shape predictor (iBUG 300-W layout; trained on iBUG 300-W, whose licence excludes
             commercial use: see README), models_dir()/dlib/dlib_sp68.npz.
  dlib_sp5   dlib's 5-point shape predictor (CC0): the two corners of each eye (image-right eye first: outer,
             inner; then image-left eye: outer, inner) and the bottom of the nose; models_dir()/dlib/dlib_sp5.npz.
Both come from `facezoo models fetch dlib`. The box becomes dlib's inclusive rectangle (round(x1), round(y1),
round(x2) - 1, round(y2) - 1), so dlib_mmod's boxes give back dlib's own rectangles; points are dlib's integer
points unless subpixel=True.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ..errors import DataError, ModelError
from ..registry import Registry

LANDMARKERS: Registry = Registry("landmarker")


def box_to_dlib_rect(box) -> tuple[int, int, int, int]:
    """Detector box (x1, y1, x2, y2) -> dlib rectangle (left, top, right, bottom), inclusive integers."""
    from ..models.dlib.resample import lround

    b = np.asarray(box, np.float64).reshape(-1)
    if b.shape != (4,) or not np.isfinite(b).all():
        raise DataError(f"landmarker: a box must be 4 finite numbers (x1, y1, x2, y2), got {box!r}.")
    left, top, right, bottom = (int(v) for v in lround(b))
    return left, top, right - 1, bottom - 1


class DlibShapePredictor:
    """A converted dlib shape predictor (.npz of its arrays) as a landmarker; see the module docstring."""

    def __init__(self, path, subpixel: bool = False):
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: landmarker file missing. Run `facezoo models fetch dlib`.")
        stat = path.stat()
        self.predictor = _load(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        self.subpixel = bool(subpixel)
        self.num_points = self.predictor.num_parts

    def __call__(self, image, box) -> np.ndarray:
        return self.predictor(image, box_to_dlib_rect(box), subpixel=self.subpixel).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int, size: int):
    """The ShapePredictor in an .npz, read once per file version (the 68-point one is 68 MB)."""
    from ..models.dlib.shape_predictor import ShapePredictor

    try:
        with np.load(path, allow_pickle=False) as z:
            return ShapePredictor.from_arrays({k: z[k] for k in z.files}, path)
    except (OSError, ValueError) as e:
        raise ModelError(
            f"{path}: not a converted shape predictor ({e}); run `facezoo models fetch dlib --force`."
        ) from None


def _dlib_file(name: str) -> Path:
    from ..models.fetch import locate

    return locate("dlib") / f"{name}.npz"


@LANDMARKERS.register("dlib_sp68")
def dlib_sp68(path=None, subpixel: bool = False) -> DlibShapePredictor:
    """dlib's 68-point iBUG landmarker."""
    return DlibShapePredictor(path or _dlib_file("dlib_sp68"), subpixel)


@LANDMARKERS.register("dlib_sp5")
def dlib_sp5(path=None, subpixel: bool = False) -> DlibShapePredictor:
    """dlib's 5-point landmarker (eye corners and nose base)."""
    return DlibShapePredictor(path or _dlib_file("dlib_sp5"), subpixel)


def create_landmarker(name: str, **kwargs):
    """Build a registered landmarker, e.g. create_landmarker("dlib_sp68")."""
    return LANDMARKERS.create(name, **kwargs)

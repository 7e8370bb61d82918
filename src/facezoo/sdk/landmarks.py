"""Dense facial landmarks -> the 5 ArcFace points, by layout (registered under the point count).

The 5 points, in the ArcFace template's order, as seen in the image: eye on the image's left (the subject's right
eye), eye on the image's right, nose tip, mouth corner on the image's left, mouth corner on the image's right.
Each layout gives, for every one of the 5 points, the landmark indices (0-based) whose mean it is:
  "5"    identity (SCRFD, RetinaFace, MTCNN order).
  "68"   iBUG 300-W / Multi-PIE markup (dlib, face-alignment, 3DDFA): eye contours 36-41 and 42-47 (mean = eye
         centre), nose tip 30, outer mouth corners 48 and 54.
  "98"   WFLW markup: pupils 96 and 97, nose tip 54, mouth corners 76 and 82.
  "106"  insightface 2d106det markup: pupils 38 and 88, nose tip 86, mouth corners 52 and 61.
Add a layout with @LANDMARK_LAYOUTS.register("<count>") on a function (..., P, 2) -> (..., 5, 2).
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from ..registry import Registry

LANDMARK_LAYOUTS: Registry = Registry("landmark layout")


def _means(points: np.ndarray, groups) -> np.ndarray:
    """(..., 5, 2): point k is the mean of points[..., groups[k], :]."""
    return np.stack([points[..., list(g), :].mean(axis=-2) for g in groups], axis=-2)


@LANDMARK_LAYOUTS.register("5")
def five(points: np.ndarray) -> np.ndarray:
    """Already the 5 ArcFace points."""
    return points


@LANDMARK_LAYOUTS.register("68")
def ibug68(points: np.ndarray) -> np.ndarray:
    """iBUG 300-W 68 points: eye centres = means of 36-41 and 42-47, nose tip 30, mouth corners 48 and 54."""
    return _means(points, (range(36, 42), range(42, 48), (30,), (48,), (54,)))


@LANDMARK_LAYOUTS.register("98")
def wflw98(points: np.ndarray) -> np.ndarray:
    """WFLW 98 points: pupils 96 and 97, nose tip 54, mouth corners 76 and 82."""
    return _means(points, ((96,), (97,), (54,), (76,), (82,)))


@LANDMARK_LAYOUTS.register("106")
def insightface106(points: np.ndarray) -> np.ndarray:
    """insightface 2d106det points: pupils 38 and 88, nose tip 86, mouth corners 52 and 61."""
    return _means(points, ((38,), (88,), (86,), (52,), (61,)))


def to_five_points(points, where: str = "landmarks") -> np.ndarray:
    """(P, 2|3) or (N, P, 2|3) landmarks (x, y[, z]; z is dropped) -> float32 (5, 2) or (N, 5, 2) ArcFace points.

    The layout is chosen by P from LANDMARK_LAYOUTS; an unknown P or a bad shape is a DataError naming `where`.
    """
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim not in (2, 3) or arr.shape[-1] not in (2, 3):
        raise DataError(f"{where}: expected landmarks of shape (P, 2) or (N, P, 2), got {tuple(arr.shape)}.")
    count = str(arr.shape[-2])
    if count not in LANDMARK_LAYOUTS:
        raise DataError(
            f"{where}: no mapping from {count}-point landmarks to the 5 ArcFace points; known layouts have "
            f"{', '.join(sorted(LANDMARK_LAYOUTS.names(), key=int))} points. Register one with "
            '@facezoo.sdk.landmarks.LANDMARK_LAYOUTS.register("<count>").'
        )
    return LANDMARK_LAYOUTS.get(count)(arr[..., :2]).astype(np.float32)

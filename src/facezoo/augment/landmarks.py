"""The landmarks the renderers take: the 5 ArcFace points of any layout (sdk/landmarks.py), plus the face contour
of dense layouts (68 / 98 / 106 points), which lets the 2-D mask follow the jaw line.

CONTOURS maps a point count to the indices of its face contour (any order: the 2-D renderer pairs contour points
with the mean face's outline by their angle around the nose tip, so only the set matters): iBUG 68 jaw 0-16, WFLW
98 contour 0-32, insightface 2d106det contour 0-32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from ..geometry import Size, arcface_template, as_points
from ..sdk.landmarks import to_five_points

CONTOURS = {68: tuple(range(17)), 98: tuple(range(33)), 106: tuple(range(33))}


@dataclass(frozen=True)
class FaceLandmarks:
    """One face's points in image pixels: five (5, 2) ArcFace points; contour (K, 2) or None."""

    five: np.ndarray
    contour: np.ndarray | None = None

    @property
    def eye_distance(self) -> float:
        return float(np.linalg.norm(self.five[1] - self.five[0]))


def face_landmarks(points, where: str = "landmarks") -> FaceLandmarks:
    """FaceLandmarks from (P, 2) points of a registered layout (5, 68, 98, 106), or a FaceLandmarks itself."""
    if isinstance(points, FaceLandmarks):
        return points
    arr = as_points(np.asarray(points, float)[..., :2] if np.ndim(points) == 2 else points, where)
    five = to_five_points(arr, where).astype(np.float64)
    contour = arr[list(CONTOURS[len(arr)])] if len(arr) in CONTOURS else None
    if np.linalg.norm(five[1] - five[0]) < 1e-6:
        raise DataError(f"{where}: the two eye points coincide; these landmarks cannot place a mask.")
    return FaceLandmarks(five, contour)


def template_landmarks(size: Size) -> FaceLandmarks:
    """The ArcFace template points of an aligned (H, W) crop: the landmarks of every aligned face."""
    return FaceLandmarks(arcface_template(size))

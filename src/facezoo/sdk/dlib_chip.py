"""dlib's face chips (dlib/image_transforms/interpolation.h: get_face_chip_details, extract_image_chips), in numpy.

Geometry: a chip of size x size pixels shows the face with `padding` (fraction of the face size) around dlib's
mean face. A point p of the mean face (unit square) sits at chip pixel size * (padding + p) / (1 + 2 padding).
The chip transform is the least-squares similarity from those chip points to the landmarks (dlib's 5 points, or
the 68 points minus brows and lower lip, or facezoo's 5 points with FACEZOO_FIVE, below); as dlib stores it: angle
= atan2 of the transform's first column, scale its length, and a rectangle of (size * scale) centred on the image
point of the chip centre.

Extraction: when the chip is smaller than its image rectangle (area after a halving still above size^2), dlib
first builds a pyramid_down<2> pyramid of the bounding box of the rotated rectangle (grown by 2 * 2^d + ... px)
and samples the level where one more halving would be too small; then each chip pixel (c, r) takes the bilinear
value (truncated to uint8) at the affine image of (c, r) through three corners, 0 when a neighbour is outside.

facezoo's 5 points (eye centres, nose tip, mouth corners, as MTCNN and the ONNX detectors give them) are aligned
onto FACEZOO_FIVE: the same five points of dlib's 68-point mean face (means of 36-41 and 42-47, 30, 48, 54),
so a chip from MTCNN points frames the face as dlib's chips do.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import DataError
from ..models.dlib.mean_face import (
    CHIP_68_POINTS,
    DLIB_FIVE,
    MEAN_FACE_68,
    PADDING,
    SIZE,
    chip_points,
    facezoo_template,
)

__all__ = ["extract_chip", "face_chip", "face_chip_details", "facezoo_template"]


def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A 2x2, t) of the least-squares similarity dst ~ A src + t (Umeyama, rotation and scale)."""
    from ..geometry import umeyama

    t = umeyama(src, dst)
    return t[:2, :2], t[:2, 2]


def face_chip_details(landmarks, size: int = SIZE, padding: float = PADDING) -> dict:
    """dlib's get_face_chip_details: {"rect": (l, t, r, b) floats, "angle", "rows", "cols"} for 5 dlib points, 68
    iBUG points, or facezoo's 5 points passed as ("facezoo", points)."""
    if isinstance(landmarks, tuple) and len(landmarks) == 2 and landmarks[0] == "facezoo":
        pts, template = _check_points(landmarks[1], 5), facezoo_template(size, padding)
    else:
        pts = np.asarray(landmarks, np.float64)
        if pts.shape == (5, 2):
            template = chip_points(DLIB_FIVE, size, padding)
        elif pts.shape == (68, 2):
            template, pts = chip_points(MEAN_FACE_68[CHIP_68_POINTS], size, padding), pts[CHIP_68_POINTS]
        else:
            raise DataError(f"dlib chips need 5 or 68 landmarks of shape (P, 2), got {pts.shape}.")
        pts = _check_points(pts, len(pts))
    if not (size > 0 and padding >= 0):
        raise DataError(f"dlib chips need size > 0 and padding >= 0, got {size}, {padding}.")
    return details_from_similarity(*_similarity(template, pts), size)


def details_from_similarity(a: np.ndarray, t: np.ndarray, size: int) -> dict:
    """chip_details of a chip -> image similarity x_img = a x_chip + t (size x size chip)."""
    p = a @ np.array([1.0, 0.0])
    scale = math.hypot(p[0], p[1])
    centre = a @ np.array([size / 2.0, size / 2.0]) + t
    half = (size * scale - 1) / 2  # centered_drect: width - 1 between the edges
    rect = (centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half)
    return {"rect": rect, "angle": math.atan2(p[1], p[0]), "rows": size, "cols": size}


def _check_points(points, n: int) -> np.ndarray:
    pts = np.asarray(points, np.float64)
    if pts.shape != (n, 2) or not np.isfinite(pts).all():
        raise DataError(f"landmarks must be {n} finite (x, y) points, got shape {pts.shape}.")
    return pts


def _area(r) -> float:
    """drectangle area, dlib's inclusive widths (r - l + 1) (b - t + 1), 0 when empty."""
    w, h = r[2] - r[0] + 1, r[3] - r[1] + 1
    return 0.0 if r[0] > r[2] or r[1] > r[3] else w * h


def _down(r):
    """pyramid_down<2>::rect_down: each corner p -> p / 2 - (1.25, 0.75)."""
    return (r[0] / 2 - 1.25, r[1] / 2 - 0.75, r[2] / 2 - 1.25, r[3] / 2 - 0.75)


def _rotate(centre, p, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    d = np.asarray(p, np.float64) - centre
    return np.array([c * d[0] - s * d[1], s * d[0] + c * d[1]]) + centre


def extract_chip(image, details: dict) -> np.ndarray:
    """dlib's extract_image_chip (bilinear, with its image pyramid) of an uint8 (H, W, 3) image -> (rows, cols, 3)."""
    from ..models.dlib.resample import lround, pyramid_down2

    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise DataError(f"dlib chips need a uint8 (H, W, 3) RGB image, got {img.dtype} {img.shape}.")
    rect, angle, rows, cols = details["rect"], float(details["angle"]), int(details["rows"]), int(details["cols"])
    h, w = img.shape[:2]
    if angle == 0 and rows == rect[3] - rect[1] + 1 and cols == rect[2] - rect[0] + 1:
        return _copy_chip(img, [int(v) for v in lround(rect)])
    size = rows * cols
    depth, grow, down = 0, 2.0, _down(rect)
    while _area(down) > size:
        down, depth, grow = _down(down), depth + 1, grow * 2 + 2
    centre = np.array([(rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2])
    corners = [
        _rotate(centre, p, angle)
        for p in ((rect[0], rect[1]), (rect[2], rect[1]), (rect[0], rect[3]), (rect[2], rect[3]))
    ]
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    grown = (min(xs) - grow, min(ys) - grow, max(xs) + grow, max(ys) + grow)
    clipped = (max(grown[0], 0), max(grown[1], 0), min(grown[2], w - 1), min(grown[3], h - 1))
    if clipped[0] > clipped[2] or clipped[1] > clipped[3]:
        return np.zeros((rows, cols, 3), np.uint8)  # the chip lies wholly outside the image
    bl, bt, br, bb = (int(v) for v in lround(clipped))
    source = img[bt : bb + 1, bl : br + 1]
    local = (rect[0] - bl, rect[1] - bt, rect[2] - bl, rect[3] - bt)
    level = -1
    while _area(_down(local)) > size:
        level, local = level + 1, _down(local)
    for _ in range(level + 1):
        source = pyramid_down2(source)
    c = np.array([(local[0] + local[2]) / 2, (local[1] + local[3]) / 2])
    to = np.stack([_rotate(c, p, angle) for p in ((local[0], local[1]), (local[2], local[1]), (local[0], local[3]))])
    frm = np.array([[0, 0, 1], [cols - 1, 0, 1], [0, rows - 1, 1]], np.float64)
    m = np.linalg.solve(frm, to).T  # (2, 3): chip (c, r, 1) -> source (x, y)
    return _sample(source, m, rows, cols)


def _copy_chip(img: np.ndarray, rect) -> np.ndarray:
    """dlib's basic_extract_image_chip: the rectangle copied, zero outside the image."""
    left, top, right, bottom = rect
    out = np.zeros((bottom - top + 1, right - left + 1, 3), np.uint8)
    h, w = img.shape[:2]
    x0, y0, x1, y1 = max(left, 0), max(top, 0), min(right, w - 1), min(bottom, h - 1)
    if x0 <= x1 and y0 <= y1:
        out[y0 - top : y1 - top + 1, x0 - left : x1 - left + 1] = img[y0 : y1 + 1, x0 : x1 + 1]
    return out


def _sample(source: np.ndarray, m: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """dlib's transform_image with interpolate_bilinear: 0 unless all 4 neighbours are inside; truncated."""
    r, c = np.mgrid[0:rows, 0:cols].astype(np.float64)
    x = m[0, 0] * c + m[0, 1] * r + m[0, 2]
    y = m[1, 0] * c + m[1, 1] * r + m[1, 2]
    left, top = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    h, w = source.shape[:2]
    ok = (left >= 0) & (top >= 0) & (left + 1 < w) & (top + 1 < h)
    lc, tc = np.clip(left, 0, max(w - 2, 0)), np.clip(top, 0, max(h - 2, 0))
    fx, fy = (x - left)[..., None], (y - top)[..., None]
    s = source.astype(np.float64)
    if h < 2 or w < 2:
        return np.zeros((rows, cols, 3), np.uint8)
    tl, tr = s[tc, lc], s[tc, lc + 1]
    bl, br = s[tc + 1, lc], s[tc + 1, lc + 1]
    out = (1 - fy) * ((1 - fx) * tl + fx * tr) + fy * ((1 - fx) * bl + fx * br)
    out = np.where(ok[..., None], np.trunc(out), 0)
    return out.astype(np.uint8)


def face_chip(image, landmarks, size: int = SIZE, padding: float = PADDING) -> np.ndarray:
    """dlib.get_face_chip: the (size, size, 3) uint8 chip for 5 dlib / 68 iBUG landmarks (or ("facezoo", 5 points))."""
    return extract_chip(image, face_chip_details(landmarks, size, padding))

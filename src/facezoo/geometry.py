"""Face geometry shared by data/, models/ and sdk/: the ArcFace 5-point template and the least-squares similarity
(Umeyama) fit that maps landmarks onto it.

Points are (x, y) pixel coordinates, x to the right, y down; sizes are (H, W) (an int means a square).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .errors import ConfigError, DataError

#: ArcFace 5-point template on a 112x112 crop: left eye, right eye, nose tip, left / right mouth corner (x, y).
ARCFACE_TEMPLATE_112 = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)

Size = int | Sequence[int]


def size_hw(output_size: Size) -> tuple[int, int]:
    """Normalise an int or (H, W) size to a (H, W) tuple of positive ints (ConfigError otherwise)."""
    if isinstance(output_size, (int, np.integer)) and not isinstance(output_size, bool):
        hw = (int(output_size), int(output_size))
    elif isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        hw = tuple(output_size)
    else:
        raise ConfigError(f"output_size must be an int or (H, W), got {output_size!r}; e.g. output_size=(112, 112).")
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in hw):
        raise ConfigError(f"output_size {output_size!r} is invalid: both sides must be positive ints, e.g. (112, 112).")
    return int(hw[0]), int(hw[1])


def arcface_template(output_size: Size = (112, 112)) -> np.ndarray:
    """ArcFace 5-point template (left eye, right eye, nose, left/right mouth corner) for an (H, W) crop, (5, 2) x,y.

    The base points are defined on a 112x112 crop. InsightFace's rule (face_align.estimate_norm): if H is a multiple
    of 112, scale by ratio = H/112; else if H is a multiple of 128, scale by ratio = H/128 and shift x by +8*ratio
    (128x128: base + (8, 0)); any other H scales by ratio = H/112. In every case the x shift equals
    (W - 112*ratio) / 2, which centres the face horizontally, and gives the SphereFace-era 112x96 crop its -8 px shift.
    """
    h, w = size_hw(output_size)
    if h % 112 == 0 or h % 128 != 0:
        ratio = h / 112.0
    else:
        ratio = h / 128.0
    dst = np.asarray(ARCFACE_TEMPLATE_112, dtype=np.float64) * ratio
    dst[:, 0] += (w - 112.0 * ratio) / 2.0
    return dst


def as_points(points, name: str, n: int | None = None) -> np.ndarray:
    """Check an (N, 2) array of finite points (N == n when given) and return it as float64."""
    if hasattr(points, "detach"):  # a torch tensor, without importing torch here
        points = points.detach().cpu().numpy()
    arr = np.asarray(points, dtype=np.float64)
    want = f"({n}, 2)" if n is not None else "(N, 2)"
    if arr.ndim != 2 or arr.shape[1] != 2 or (n is not None and arr.shape[0] != n):
        raise DataError(f"{name} must be an array of shape {want} (x, y per point), got shape {tuple(arr.shape)}.")
    if not np.isfinite(arr).all():
        raise DataError(f"{name} contains NaN or infinite values; pass finite {want} pixel coordinates.")
    return arr


def umeyama(src, dst, scale: bool = True) -> np.ndarray:
    """Least-squares similarity transform T (3x3) of 2-D points with dst ~ c R src + t (Umeyama 1991, PAMI 13(4)).

    In 2-D the fit has a closed form. With centred points s_i = src_i - mean(src), d_i = dst_i - mean(dst):
    a = sum(s_i . d_i) / sum |s_i|^2, b = sum(s_i x d_i) / sum |s_i|^2 (x: the 2-D cross product), and
    c R = [[a, -b], [b, a]], which is Umeyama's c R with its reflection correction (a rotation by construction);
    scale=False keeps R = c R / sqrt(a^2 + b^2). t = mean(dst) - c R mean(src).
    """
    s = as_points(src, "src")
    d = as_points(dst, "dst")
    if s.shape != d.shape:
        raise DataError(f"src and dst must hold the same number of points, got {s.shape[0]} and {d.shape[0]}.")
    ms, md = s.mean(0), d.mean(0)
    sc, dc = s - ms, d - md
    n2 = (sc**2).sum()
    if n2 <= 1e-12 * len(s):
        raise DataError("src points all coincide: a similarity transform is undefined; check the landmarks.")
    a = (sc * dc).sum() / n2
    b = (sc[:, 0] * dc[:, 1] - sc[:, 1] * dc[:, 0]).sum() / n2
    if not scale:
        r = math.hypot(a, b)
        a, b = (a / r, b / r) if r > 0 else (1.0, 0.0)
    m = np.array([[a, -b], [b, a]])
    t = np.eye(3)
    t[:2, :2] = m
    t[:2, 2] = md - m @ ms
    return t

"""A small 3-D mean face and the mask surface on it, built from anthropometric means (no scans, no 3DMM files).

Face frame, millimetres: x to the image right (the subject's left), y down, z toward the camera; origin between
the pupils on the corneal plane. Facts used (adult means, sexes pooled, after Farkas, "Anthropometry of the Head and
Face", 1994, rounded): interpupillary distance 62; bizygomatic width 136 (zygion at 10 below the pupils); bigonial
width 100 (gonion about 85 below); face height nasion-gnathion 125, with the nasion 10 above the pupil line; the
nasal tip 30 in front of the corneas, the nasion 12, subnasale 16; lips 11-15; pogonion 10; the mouth corners
2 behind the corneal plane; cheeks 55 and the gonion 70 behind it.

The 5-point landmarks take their x, y from the ArcFace template itself (symmetrised, scaled so the eyes are 62 mm
apart: MM_PER_PX mm per template pixel), so the frontal view of the mean face *is* the template, and its depths from
the facts above. The surface is a height field z(x, y): a superellipse cross-section between a midline profile and
the face side, plus the nose. The mask is a (u, v) patch from the nose bridge (40% of the way from the pupils to
the nose tip) to JAW_MARGIN mm below the jaw line and the chin, and from cheek to cheek (SIDE_X); its surface is the
per-row upper concave envelope of what the cloth rests on (the face, and below the jaw line the cloth hanging
straight down from it): cloth stretched by the ear loops across the nose and cheeks, lifted MASK_OFFSET mm.
"""

from __future__ import annotations

import functools

import numpy as np

from ..geometry import ARCFACE_TEMPLATE_112
from .raster import grid_faces

_T = np.asarray(ARCFACE_TEMPLATE_112, dtype=np.float64)
EYE_MID_112 = (_T[0] + _T[1]) / 2.0  # template point of the face-frame origin
MM_PER_PX = 62.0 / float(_T[1, 0] - _T[0, 0])  # mm per 112-template pixel (the eyes 62 mm apart)
MASK_OFFSET = 2.5  # cloth above the skin, mm
JAW_MARGIN = 6.0  # the mask's lower edge beyond the jaw line and the chin, mm
SIDE_X = 66.0  # the mask's side edges (just in front of the ears), mm

# midline profile z(y) without the nose, side depth z(y) at the face outline, and the outline half width W(y)
_PROFILE = np.array(
    [
        (-70, -10),
        (-40, 6),
        (-15, 10),
        (-8, 10),
        (10, 8),
        (30, 11),
        (44, 16),
        (55, 15),
        (62, 15),
        (71.6, 11),
        (82, 13),
        (92, 5),
        (104, 10),
        (114, 2),
        (122, -22),
        (135, -60),
    ],
    float,
)
_SIDE = np.array([(-70, -75), (0, -60), (10, -55), (40, -60), (70, -68), (85, -70), (100, -45), (112, -15)], float)
_WIDTH = np.array(
    [
        (-70, 55),
        (-40, 64),
        (-10, 67),
        (10, 68),
        (40, 65),
        (70, 58),
        (85, 50),
        (95, 41),
        (105, 29),
        (112, 17),
        (116, 8),
        (118, 0.5),
    ],
    float,
)
_NOSE = {"root_y": -8.0, "tip_y": 35.4, "base_y": 44.0, "tip_z": 30.0, "root_z": 12.0, "wing": 17.0}


def _interp(table: np.ndarray, y):
    return np.interp(y, table[:, 0], table[:, 1])


def landmarks_3d() -> np.ndarray:
    """The 5 ArcFace landmarks of the mean face (5, 3) mm: eyes, nose tip, mouth corners (template order)."""
    t = (_T - EYE_MID_112) * MM_PER_PX
    ex = (t[1, 0] - t[0, 0]) / 2
    mx, my = (t[4, 0] - t[3, 0]) / 2, (t[3, 1] + t[4, 1]) / 2
    return np.array([[-ex, 0.0, 0.0], [ex, 0.0, 0.0], [0.0, t[2, 1], _NOSE["tip_z"]], [-mx, my, -2.0], [mx, my, -2.0]])


def face_depth(x, y) -> np.ndarray:
    """z (mm) of the mean face surface at face-frame (x, y) (any shapes, broadcast); defined everywhere: outside
    the outline the surface falls back steeply (the head's side), so envelopes and z-tests stay well defined."""
    x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
    front, side, half = _interp(_PROFILE, y), _interp(_SIDE, y), np.maximum(_interp(_WIDTH, y), 0.5)
    r = np.abs(x) / half
    p = 2.2  # flatter than an ellipse across the front
    inside = side + (front - side) * np.clip(1 - np.clip(r, 0, 1) ** p, 0, 1) ** (1 / p)
    z = np.where(r <= 1, inside, side - 3.0 * (np.abs(x) - half))
    return z + _nose(x, y)


def _nose(x, y) -> np.ndarray:
    """The nose added to the base surface: a ridge from the root to the tip, widening to the wings, with a rounded
    tip that falls back to the subnasale."""
    n = _NOSE
    t = np.clip((y - n["root_y"]) / (n["tip_y"] - n["root_y"]), 0, None)  # 0 at the root, 1 at the tip
    ridge = np.where(
        y <= n["tip_y"],
        n["root_z"] + (n["tip_z"] - n["root_z"]) * t**1.3,
        n["tip_z"] - (n["tip_z"] - 16.0) * np.clip((y - n["tip_y"]) / (n["base_y"] - n["tip_y"]), 0, 1) ** 1.5,
    )
    base = _interp(_PROFILE, y) + 0.0
    lift = np.clip(ridge - base, 0, None) * (y >= n["root_y"] - 4) * (y <= n["base_y"] + 3)
    half = 5.0 + (n["wing"] - 5.0) * np.clip(t, 0, 1) ** 1.5  # half width of the nose at this height
    return lift * np.exp(-((x / (0.55 * half)) ** 2))


# ----------------------------------------------------------------------------------------------------- meshes


@functools.lru_cache(maxsize=1)
def face_mesh() -> tuple[np.ndarray, np.ndarray]:
    """(vertices (V, 3) mm, triangles (F, 3)): the mean face inside its outline, eyebrows to chin (for z-tests)."""
    ys = np.linspace(-45.0, 118.0, 42)
    xs = np.linspace(-72.0, 72.0, 37)
    gx, gy = np.meshgrid(xs, ys)
    verts = np.stack([gx, gy, face_depth(gx, gy)], -1).reshape(-1, 3)
    faces = grid_faces(len(ys), len(xs))
    inside = np.abs(verts[:, 0]) <= _interp(_WIDTH, verts[:, 1]) + 1.0
    return verts, faces[inside[faces].all(1)]


def _top_edge(x) -> np.ndarray:
    """y of the mask's top edge: the nose bridge (40% of the way from the pupils to the tip), under the eyes at
    the cheeks, to the ear loops."""
    return 14.0 + 17.0 * (np.abs(x) / 62.0) ** 0.8


def _bottom_edge(n: int) -> np.ndarray:
    """(n, 2) points of the mask's lower boundary, left to right, evenly spaced by arc length: down the left side of
    the face (on the outline), along the jaw JAW_MARGIN mm beyond it, under the chin, and up the right side."""
    ys = np.linspace(32.0, 118.0 + JAW_MARGIN, 200)
    half = _interp(_WIDTH, np.minimum(ys, 117.5))
    grow = np.clip((ys - 55.0) / 30.0, 0, 1) * JAW_MARGIN  # beyond the jaw line, covering it
    left = np.stack([-(np.minimum(half, SIDE_X) + grow), ys], 1)
    left = left[left[:, 0] <= -0.5]
    chain = np.concatenate([left, [[0.0, 118.0 + JAW_MARGIN]], left[::-1] * [-1, 1]])
    seg = np.r_[0, np.cumsum(np.linalg.norm(np.diff(chain, axis=0), axis=1))]
    s = np.linspace(0, seg[-1], n)
    return np.stack([np.interp(s, seg, chain[:, 0]), np.interp(s, seg, chain[:, 1])], 1)


def _jaw_y(x) -> np.ndarray:
    """y of the lower face outline (jaw line) at |x| (below the cheekbones, where W(y) decreases)."""
    low = _WIDTH[_WIDTH[:, 0] >= 10]
    return np.interp(np.abs(x), low[::-1, 1], low[::-1, 0])


def _support(x, y) -> np.ndarray:
    """What the cloth rests on: the face, and below the jaw line the cloth hanging straight down from it."""
    return face_depth(x, np.minimum(y, _jaw_y(x)))


@functools.lru_cache(maxsize=4)
def mask_mesh(cols: int = 41, rows: int = 21) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices (V, 3) mm, uv (V, 2) in [0, 1], triangles (F, 3)) of the mask on the mean face.

    A ruled patch between the top edge and the lower boundary: vertex (i, j) = (1 - v) top(u) + v bottom(u), with u
    left to right and v top to bottom; depth = the per-row concave envelope of the face + MASK_OFFSET.
    """
    u = np.linspace(0.0, 1.0, cols)
    bottom = _bottom_edge(cols)
    tx = bottom[[0, -1], 0]
    top_x = tx[0] + (tx[1] - tx[0]) * u
    top = np.stack([top_x, _top_edge(top_x)], 1)
    v = np.linspace(0.0, 1.0, rows)[:, None, None]
    xy = (1 - v) * top[None] + v * bottom[None]  # (rows, cols, 2)
    z = _envelope_depth(xy[..., 0], xy[..., 1]) + MASK_OFFSET
    verts = np.concatenate([xy, z[..., None]], -1).reshape(-1, 3)
    uu, vv = np.meshgrid(u, v[:, 0, 0])
    uv = np.stack([uu, vv], -1).reshape(-1, 2)
    return verts, uv, grid_faces(rows, cols)


def _envelope_depth(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The support's upper concave envelope along x at each point's height (cloth stretched across a row), from a
    table of envelopes every 0.5 mm in y, interpolated bilinearly."""
    xs = np.linspace(-75.0, 75.0, 151)
    ys = np.arange(np.floor(y.min()) - 1.0, np.ceil(y.max()) + 1.5, 0.5)
    table = np.empty((len(ys), len(xs)))
    for i, level in enumerate(ys):
        zs = _support(xs, level)
        hull = _upper_hull(xs, zs)
        table[i] = np.interp(xs, xs[hull], zs[hull])
    fy = np.clip((y - ys[0]) / 0.5, 0, len(ys) - 1.001)
    fx = np.clip((x - xs[0]) / 1.0, 0, len(xs) - 1.001)
    iy, ix = fy.astype(int), fx.astype(int)
    ty, tx = fy - iy, fx - ix
    top = table[iy, ix] * (1 - tx) + table[iy, ix + 1] * tx
    bottom = table[iy + 1, ix] * (1 - tx) + table[iy + 1, ix + 1] * tx
    return top * (1 - ty) + bottom * ty


def _upper_hull(x: np.ndarray, z: np.ndarray) -> list[int]:
    """Indices of the upper convex hull of points (x ascending, z): Andrew's monotone chain, upper half."""
    hull: list[int] = []
    for i in range(len(x)):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            cross = (x[b] - x[a]) * (z[i] - z[a]) - (z[b] - z[a]) * (x[i] - x[a])
            if cross >= 0:  # b lies on or below the chord a-i: not on the upper hull
                hull.pop()
            else:
                break
        hull.append(i)
    return hull


def to_template(xy_mm: np.ndarray) -> np.ndarray:
    """Face-frame (x, y) mm -> 112x112 ArcFace-template pixels (the frontal view of the mean face)."""
    return np.asarray(xy_mm, float)[..., :2] / MM_PER_PX + EYE_MID_112

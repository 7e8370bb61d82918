"""2-D mask adding: the frontal mask (the mean face's mask seen head-on, in ArcFace-template pixels) warped onto
the face by a thin-plate spline through the landmarks.

Control points: the 5 template points -> the face's 5 points; with a dense layout's contour (landmarks.py) also
the mean face's outline -> the contour, each contour point paired with the outline point at the same angle around
the nose tip (after a similarity fit to the template). TPS (Bookstein 1989): f(p) = A p + b + sum_i w_i U(|p - c_i|),
U(r) = r^2 log r^2, with (K + lambda I) w + P a = y, P^T w = 0, in units of the template's eye distance; a small
lambda keeps the 5-point warp smooth. The shading is the mask's frontal Lambert shade: a 2-D method has no pose.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ..geometry import ARCFACE_TEMPLATE_112, umeyama
from . import meanface
from .landmarks import FaceLandmarks
from .layer import render_layer, vertex_normals

_UNIT = float(np.linalg.norm(np.subtract(ARCFACE_TEMPLATE_112[1], ARCFACE_TEMPLATE_112[0])))


def _kernel(d2: np.ndarray) -> np.ndarray:
    return np.where(d2 > 0, d2 * np.log(np.maximum(d2, 1e-300)), 0.0)


def fit_tps(src: np.ndarray, dst: np.ndarray, lam: float = 0.01):
    """The thin-plate spline mapping src (N, 2) onto dst (N, 2) (least bending, smoothed by `lam`) as a function
    of (M, 2) points."""
    c = np.asarray(src, float) / _UNIT
    y = np.asarray(dst, float)
    n = len(c)
    K = _kernel(((c[:, None] - c[None]) ** 2).sum(-1)) + lam * np.eye(n)
    P = np.concatenate([np.ones((n, 1)), c], 1)
    L = np.zeros((n + 3, n + 3))
    L[:n, :n], L[:n, n:], L[n:, :n] = K, P, P.T
    sol = np.linalg.solve(L, np.concatenate([y, np.zeros((3, 2))]))
    w, a = sol[:n], sol[n:]

    def warp(p: np.ndarray) -> np.ndarray:
        q = np.asarray(p, float) / _UNIT
        U = _kernel(((q[:, None] - c[None]) ** 2).sum(-1))
        return a[0] + q @ a[1:] + U @ w

    return warp


@functools.lru_cache(maxsize=1)
def _frontal():
    verts, uv, faces = meanface.mask_mesh()
    return meanface.to_template(verts[:, :2]), verts[:, 2], uv, faces, vertex_normals(verts, faces)


@functools.lru_cache(maxsize=1)
def _outline() -> tuple[np.ndarray, np.ndarray]:
    """The mean face's outline below the eyes in template pixels, and each point's angle around the nose tip."""
    ys = np.linspace(0.0, 118.0, 240)
    half = meanface._interp(meanface._WIDTH, ys)
    left = np.stack([-half, ys], 1)
    pts = meanface.to_template(np.concatenate([left, left[::-1] * [-1, 1]]))
    nose = np.asarray(ARCFACE_TEMPLATE_112[2])
    ang = np.arctan2(pts[:, 1] - nose[1], pts[:, 0] - nose[0])
    ang = np.where(ang < -math.pi / 2, ang + 2 * math.pi, ang)  # continuous from the right (0) via down to the left
    order = np.argsort(ang)
    return pts[order], ang[order]


def control_points(landmarks: FaceLandmarks) -> tuple[np.ndarray, np.ndarray]:
    """(template points, image points) the warp passes through: the 5 points, plus contour pairs when given."""
    src, dst = [np.asarray(ARCFACE_TEMPLATE_112, float)], [landmarks.five]
    if landmarks.contour is not None and len(landmarks.contour):
        to_t = umeyama(landmarks.five, ARCFACE_TEMPLATE_112)
        ct = landmarks.contour @ to_t[:2, :2].T + to_t[:2, 2]
        nose = np.asarray(ARCFACE_TEMPLATE_112[2])
        ang = np.arctan2(ct[:, 1] - nose[1], ct[:, 0] - nose[0])
        ang = np.where(ang < -math.pi / 2, ang + 2 * math.pi, ang)
        pts, ref = _outline()
        keep = (ct[:, 1] > ARCFACE_TEMPLATE_112[0][1]) & (ang >= ref[0]) & (ang <= ref[-1])
        ox = np.interp(ang[keep], ref, pts[:, 0])
        oy = np.interp(ang[keep], ref, pts[:, 1])
        src.append(np.stack([ox, oy], 1))
        dst.append(landmarks.contour[keep])
    return np.concatenate(src), np.concatenate(dst)


def render_mask_2d(shape: tuple[int, int], landmarks: FaceLandmarks, texture: np.ndarray) -> np.ndarray:
    """float32 RGBA (H, W, 4) layer of the frontal mask warped onto the face at `landmarks`."""
    xy_t, depth, uv, faces, normals = _frontal()
    src, dst = control_points(landmarks)
    xy = fit_tps(src, dst, lam=0.01 if len(src) == 5 else 0.05)(xy_t)
    scale = landmarks.eye_distance / _UNIT
    return render_layer(shape, xy, depth * scale, faces, uv, normals, texture)

"""Weak-perspective pose of a 3-D model from 2-D points: image = s * (R X)[:2] + t.

R is a rotation (3x3, det +1) acting on face-frame points (x right, y down, z toward the camera), s the scale
(pixels per model unit), t (2,) the image translation; the depth toward the viewer of a point is s * (R X)[2].

Fit (least squares over the points): first the affine camera M (2x3) = argmin sum |M (X_i - X̄) - (p_i - p̄)|^2,
whose nearest scaled rotation is s R12 with M = U S V^T, R12 = U V^T, s = mean(S); then Gauss-Newton on
(s, R, t) with R updated as exp([w]x) R, a few steps, which makes the rows of R exactly orthonormal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import DataError


@dataclass(frozen=True)
class Pose:
    """A weak-perspective view: image xy = s * (R @ X)[:2] + t; depth = s * (R @ X)[2] (larger = nearer)."""

    R: np.ndarray  # (3, 3)
    s: float
    t: np.ndarray  # (2,)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(image xy (N, 2), depth (N,)) of model points (N, 3)."""
        q = np.asarray(points, float) @ self.R.T * self.s
        return q[:, :2] + self.t, q[:, 2]

    @property
    def angles(self) -> tuple[float, float, float]:
        """(yaw, pitch, roll) radians of R = Rz(roll) Rx(pitch) Ry(yaw) (see `rotation`)."""
        r = (
            self.R
        )  # row 3 of Rz Rx Ry is (-cos p sin y, sin p, cos p cos y); column 2 is (-sin r cos p, cos r cos p, .)
        pitch = math.asin(float(np.clip(r[2, 1], -1, 1)))
        yaw = math.atan2(float(-r[2, 0]), float(r[2, 2]))
        roll = math.atan2(float(-r[0, 1]), float(r[1, 1]))
        return yaw, pitch, roll


def rotation(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """R = Rz(roll) @ Rx(pitch) @ Ry(yaw), radians. Yaw > 0 turns the face's +x side (the image right) away from
    the camera; pitch > 0 raises the face (the chin comes toward the camera, the nose tip moves up the image);
    roll > 0 turns clockwise in the image (y down)."""
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    cr, sr = math.cos(roll), math.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ rx @ ry


def _skew(w: np.ndarray) -> np.ndarray:
    return np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]])


def _expm(w: np.ndarray) -> np.ndarray:
    """Rodrigues: the rotation exp([w]x)."""
    th = float(np.linalg.norm(w))
    if th < 1e-12:
        return np.eye(3) + _skew(w)
    k = _skew(w / th)
    return np.eye(3) + math.sin(th) * k + (1 - math.cos(th)) * (k @ k)


def fit_pose(model: np.ndarray, image: np.ndarray, iterations: int = 10) -> Pose:
    """Weak-perspective pose mapping model points (N, 3) onto image points (N, 2), N >= 4 not all coplanar."""
    X = np.asarray(model, float)
    p = np.asarray(image, float)
    if X.ndim != 2 or X.shape[1] != 3 or p.shape != (len(X), 2) or len(X) < 4:
        raise DataError(f"fit_pose needs N >= 4 model (N, 3) and image (N, 2) points, got {X.shape} and {p.shape}.")
    if not np.isfinite(p).all():
        raise DataError("landmarks contain NaN or infinite values; pass finite pixel coordinates.")
    xm, pm = X.mean(0), p.mean(0)
    Xc, pc = X - xm, p - pm
    M = np.linalg.lstsq(Xc, pc, rcond=None)[0].T  # (2, 3)
    U, S, Vt = np.linalg.svd(M, full_matrices=False)
    r12 = U @ Vt
    s = float(S.mean())
    if s <= 0 or not np.isfinite(s):
        raise DataError("landmarks are degenerate (all at one point): no pose can be fitted; check the points.")
    R = np.vstack([r12, np.cross(r12[0], r12[1])])
    t = pm - s * (R @ xm)[:2]
    for _ in range(iterations):
        q = X @ R.T  # rotated model points (N, 3)
        res = (s * q[:, :2] + t - p).reshape(-1)
        # d(s q)/dw = -s [q]x (columns: w0, w1, w2), first two rows per point
        J = np.zeros((len(X) * 2, 6))
        for i, qi in enumerate(q):
            d = -s * _skew(qi)[:2]  # (2, 3)
            J[2 * i : 2 * i + 2, :3] = d
            J[2 * i : 2 * i + 2, 3] = qi[:2]
            J[2 * i : 2 * i + 2, 4:] = np.eye(2)
        step = np.linalg.lstsq(J.T @ J + 1e-6 * np.eye(6) * np.trace(J.T @ J) / 6, -J.T @ res, rcond=None)[0]
        R = _expm(step[:3]) @ R
        s = max(s + float(step[3]), 1e-9)
        t = t + step[4:]
        if np.abs(step).max() < 1e-9:
            break
    return Pose(R, s, t)

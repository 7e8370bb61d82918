"""Synthetic faces with known landmarks, pose and face regions, from facezoo's procedural renderer.

The renderer draws an identity's face-frame shapes through one projection (3-D rotation, then the similarity that
aligns the projected landmarks onto the ArcFace template); projecting our own shapes through that same
projection (its _Scene) gives pixel-exact ground truth: the 5 landmarks, the visible lower face (front-facing
ellipsoid points from the nostrils to the chin, inside the jaw outline), the eyes and the head outline.

`human=True` sets an identity's geometry to anthropometric proportions (scaled by its eye distance, +-8% random
variation): the generator's heads are ellipsoids about 20% wider at the mouth than human faces (face_w / eye_dx
~2.6 against bizygomatic / interpupillary 2.2), shallower (depth 0.8-1.05 x half width against ~1.4) and with
chins far lower relative to the mouth (mouth-chin ~1.4 x eye-mouth against 0.62), so a mean-face method can only
be held to tight figures on faces of human proportions. Appearance (skin, hair, eyes, lips) stays random.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import replace

import numpy as np
from PIL import Image, ImageDraw

from facezoo.data.synthetic.face import identity_rng, image_rng, sample_identity, sample_nuisance

R = importlib.import_module("facezoo.data.synthetic.render")  # the module (the package re-exports `render`)


def landmarks_3d(p, nz) -> np.ndarray:
    """The renderer's 5 landmarks in the face frame (x, y, extra depth), as render() builds them."""
    my, mw = R._mouth_geom(p, nz)
    cy = my - 2.5 * nz.smile
    return np.array(
        [
            [-p.eye_dx, p.eye_y, -2.0],
            [p.eye_dx, p.eye_y, -2.0],
            [0.0, p.eye_y + p.nose_len, p.nose_proj],
            [-mw, cy, 0.0],
            [mw, cy, 0.0],
        ]
    )


def project(p, nz, size: int, shapes) -> list[np.ndarray]:
    """Pixel positions (n, 2) in the size x size image of face-frame shapes [(points (n, 2), mode, depth)]."""
    sc = R._Scene()
    for pts, mode, z in shapes:
        sc.add("poly", pts, mode, (0, 0, 0), z=z)
    out = sc.project(p, nz, 2 * size / 112.0, landmarks_3d(p, nz))
    return [q / 2.0 for _, q, _, _ in out]  # the 2x canvas -> output pixels


def human(p, rng):
    """The identity with anthropometric geometry (module doc)."""
    j = lambda: float(rng.uniform(0.92, 1.08))
    e = p.eye_dx
    face_h = 2.97 * e * j()
    return replace(
        p,
        face_w=2.2 * e * j(),
        face_h=face_h,
        eye_y=face_h - 3.8 * e * j(),
        nose_len=1.14 * e * j(),
        mouth_gap=1.17 * e * j(),
        mouth_w=0.83 * e * j(),
        jaw=0.8 * j(),
        chin_p=3.0 * j(),
        depth=1.35 * j(),
        nose_proj=7.0 * j(),
    )


def face(seed: int, i: int, yaw: float = 0.0, pitch: float = 0.0, size: int = 112, human_shape: bool = True):
    """(identity, nuisance, uint8 image, 5 landmarks (5, 2) pixels) of identity i at yaw / pitch degrees, otherwise
    the canonical view (no lighting, noise or occlusion)."""
    p = sample_identity(identity_rng(seed, i))
    if human_shape:
        p = human(p, np.random.default_rng([seed, i, 99]))
    nz = replace(sample_nuisance(image_rng(seed, i, 0), 0.0), yaw=math.radians(yaw), pitch=math.radians(pitch))
    lm = landmarks_3d(p, nz)
    five = project(p, nz, size, [(lm[:, :2], 1, lm[:, 2])])[0]
    return p, nz, R.render(p, nz, size), five


def _fill(polygons, size: int) -> np.ndarray:
    """bool (size, size): pixel centres inside any polygon (4x supersampled, majority)."""
    im = Image.new("L", (size * 4, size * 4), 0)
    d = ImageDraw.Draw(im)
    for q in polygons:
        d.polygon([tuple(v) for v in ((q + 0.5) * 4).tolist()], fill=255)
    return np.asarray(im.reduce(4)) > 127


def regions(p, nz, size: int = 112, chin: float | None = None, grid: int = 48):
    """(lower face, eyes, head) bool (size, size) masks. Lower face: front-facing points of the head ellipsoid from
    1 unit below the nose tip to the chin (or to `chin` x the eye-mouth distance below the mouth), inside the
    tapered jaw outline; eyes: the eye ellipses (eye_w x eye_h); head: the silhouette outline."""
    my = p.eye_y + p.nose_len + p.mouth_gap
    bottom = p.face_h * 0.999 if chin is None else min(p.face_h * 0.999, my + chin * (my - p.eye_y))
    ys = np.linspace(p.eye_y + p.nose_len + 1.0, bottom, grid)
    xs = np.linspace(-p.face_w, p.face_w, grid)
    gx, gy = np.meshgrid(xs, ys)
    half = np.abs(R._outline(p, np.arcsin(np.clip(ys / p.face_h, -1, 1)))[:, 0])
    e = 1 - (gx / p.face_w) ** 2 - (gy / p.face_h) ** 2
    d = p.depth * p.face_w
    z = d * np.sqrt(np.clip(e, 0, None))
    nx, ny, nzz = gx / p.face_w**2, gy / p.face_h**2, z / d**2  # the ellipsoid's normal
    cy, sy, cp, sp = math.cos(nz.yaw), math.sin(nz.yaw), math.cos(nz.pitch), math.sin(nz.pitch)
    facing = ny * sp + (-nx * sy + nzz * cy) * cp  # its z after the renderer's yaw, then pitch
    keep = (np.abs(gx) <= half[:, None]) & (e > 0) & (facing > 0.02 * np.sqrt(nx**2 + ny**2 + nzz**2))
    pts = np.stack([gx, gy], -1).reshape(-1, 2)
    q = project(p, nz, size, [(pts, 1, np.zeros(len(pts)))])[0].reshape(grid, grid, 2)
    quads = [
        np.array([q[i, j], q[i, j + 1], q[i + 1, j + 1], q[i + 1, j]])
        for i in range(grid - 1)
        for j in range(grid - 1)
        if keep[i : i + 2, j : j + 2].all()
    ]
    lower = _fill(quads, size)
    t = np.linspace(0, 2 * math.pi, 24, endpoint=False)
    eyes = [np.stack([s * p.eye_dx + p.eye_w * np.cos(t), p.eye_y + p.eye_h * np.sin(t)], 1) for s in (-1, 1)]
    eye = _fill(project(p, nz, size, [(el, 1, np.full(24, -2.0)) for el in eyes]), size)
    outline = R._outline(p, np.linspace(0, 2 * math.pi, 64, endpoint=False))
    head = _fill(project(p, nz, size, [(outline, 0, np.zeros(64))]), size)
    return lower, eye, head


def jaw_contour(p, nz, size: int = 112, n: int = 17) -> np.ndarray:
    """(n, 2) pixels of the jaw outline (the iBUG 68 points 0-16 analogue): the tapered outline from ear level on
    one side, under the chin, to the other."""
    t = np.linspace(math.pi - 0.15, 0.15, n)  # y down: sin t > 0 is the lower face
    return project(p, nz, size, [(R._outline(p, t), 0, np.zeros(n))])[0]

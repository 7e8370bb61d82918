"""Procedural synthetic identities: facezoo's embedded, downloadable-nothing face data set.

An identity is a vector of face geometry and fine appearance (`IdentityParams`). An image is that identity
rendered under per-image nuisance (`Nuisance`): 3-D pose, imperfect 5-point alignment, expression, lighting,
colour cast, background clutter, blur, sensor noise, occlusion and JPEG quality. Faces are drawn as polygons on a
2x canvas (Pillow) and box-downsampled, then aligned like ArcFace crops: a least-squares similarity maps the
(noisy) projected eye, nose-tip and mouth-corner points onto the 112x112 template, so identity lives in the
relative geometry, not in where the eyes are.

Every random draw comes from `identity_rng(seed, i)` or `image_rng(seed, i, j)`, so any image can be regenerated
alone and generation can run in any order or number of processes with byte-identical output.
"""

from __future__ import annotations

import functools
import json
import math
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..errors import ConfigError
from ..io import atomic_write
from .image import encode_image

GENERATOR_VERSION = 1

#: ArcFace 5-point template at 112x112: left eye, right eye, nose tip, left / right mouth corner (x, y).
TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)

# Domain tags keep the seed streams apart: SeedSequence ignores trailing zeros, so [s, i] and [s, i, 0] collide.
_TAG_IDENTITY, _TAG_IMAGE, _TAG_FRONTAL, _TAG_HARD, _TAG_PAIRS = 0x1D, 0x1A, 0x1F, 0x1B, 0x1C

_SKIN_LIGHT, _SKIN_DARK = np.array([236.0, 201.0, 176.0]), np.array([86.0, 56.0, 40.0])
_HAIR = np.array(  # black, dark brown, brown, auburn, blond, ginger, grey, white
    [
        [22, 18, 18],
        [55, 38, 28],
        [105, 72, 45],
        [120, 55, 35],
        [205, 170, 110],
        [170, 85, 40],
        [140, 138, 135],
        [225, 222, 215],
    ],
    dtype=float,
)
_HAIR_P = np.array([0.28, 0.24, 0.16, 0.06, 0.1, 0.05, 0.07, 0.04])
_IRIS = np.array([[85, 52, 28], [40, 26, 16], [70, 110, 165], [80, 120, 78], [118, 128, 140], [120, 95, 50]], float)
_IRIS_P = np.array([0.35, 0.25, 0.15, 0.1, 0.08, 0.07])
_OCCLUSIONS = ("glasses", "sunglasses", "mask", "hand")


def identity_rng(seed: int, identity: int) -> np.random.Generator:
    """The generator of identity `identity`'s parameters (independent of how many identities exist)."""
    return np.random.default_rng([seed, _TAG_IDENTITY, identity])


def image_rng(seed: int, identity: int, index: int) -> np.random.Generator:
    """The generator of image `index` of identity `identity` (independent of generation order)."""
    return np.random.default_rng([seed, _TAG_IMAGE, identity, index])


@dataclass(frozen=True)
class IdentityParams:
    """Who a face is: geometry in face-frame pixels (origin = head-ellipse centre, y down, 112-px scale)."""

    face_w: float  # half width of the head ellipse
    face_h: float  # half height of the head ellipse
    jaw: float  # lower-face width factor at the chin (1 = round, 0.6 = pointed)
    chin_p: float  # exponent of the jaw taper (small = taper starts high, large = square jaw)
    temple: float  # forehead narrowing
    depth: float  # head depth / face_w (how much features shift under yaw)
    skin: tuple  # RGB
    eye_dx: float  # half inter-eye distance
    eye_y: float
    eye_w: float  # eye half width
    eye_h: float  # upper-lid arc height
    eye_low: float  # lower-lid arc / upper
    eye_tilt: float  # outer-corner lift (shear)
    iris_r: float
    iris: tuple  # RGB
    brow_gap: float  # eye centre to brow
    brow_len: float
    brow_thick: float
    brow_angle: float
    brow_arch: float
    brow_dx: float  # brow centre offset outward from the eye centre
    nose_len: float  # eye line to nose tip
    nose_w: float  # half width at the wings
    nose_proj: float  # tip protrusion (depth)
    nostril: float
    mouth_gap: float  # nose tip to mouth line
    mouth_w: float  # half width
    lip_up: float
    lip_low: float
    lip_bow: float
    lip: tuple  # RGB
    hair: tuple  # RGB
    hair_style: int  # 0 bald, 1 short, 2 long, 3 fringe, 4 side part, 5 voluminous
    hairline: float  # forehead hairline height as a fraction of face_h above the centre
    recede: float
    peak: float
    hair_vol: float
    part: float  # -1..1 side of the parting
    ear_w: float
    ear_h: float
    ear_y: float
    beard: int  # 0 none, 1 stubble, 2 moustache, 3 goatee, 4 full
    beard_alpha: float
    moles: tuple  # ((x, y, r), ...)
    blush: float
    wrinkles: int
    cheek: float  # cheekbone shadow strength


def sample_identity(rng: np.random.Generator) -> IdentityParams:
    """Draw an identity: ~45 independent continuous and categorical dimensions."""
    u = rng.uniform
    face_w, face_h = u(33.0, 43.0), u(48.0, 58.0)
    tone = rng.beta(1.6, 1.6)
    skin = _SKIN_LIGHT + tone * (_SKIN_DARK - _SKIN_LIGHT) + rng.normal(0.0, 7.0, 3)
    hair = _HAIR[rng.choice(len(_HAIR), p=_HAIR_P)] * u(0.8, 1.2) + rng.normal(0, 8, 3)
    eye_y = u(-14.0, -7.0)
    moles = tuple(
        (u(-0.7, 0.7) * face_w, u(-0.5, 0.75) * face_h, u(0.7, 1.5))
        for _ in range(rng.choice(5, p=[0.4, 0.3, 0.15, 0.1, 0.05]))
    )
    lip = np.array(skin) * np.array([0.9, 0.62, 0.62]) + np.array([25.0, 0.0, 5.0]) + rng.normal(0, 8, 3)
    return IdentityParams(
        face_w=face_w,
        face_h=face_h,
        jaw=u(0.55, 0.95),
        chin_p=u(1.2, 4.0),
        temple=u(0.0, 0.12),
        depth=u(0.8, 1.05),
        skin=_rgb(skin),
        eye_dx=u(15.5, 19.5),
        eye_y=eye_y,
        eye_w=u(4.8, 7.2),
        eye_h=u(2.2, 4.2),
        eye_low=u(0.35, 0.8),
        eye_tilt=u(-0.18, 0.22),
        iris_r=u(2.0, 3.0),
        iris=_rgb(_IRIS[rng.choice(len(_IRIS), p=_IRIS_P)] + rng.normal(0, 10, 3)),
        brow_gap=u(6.0, 11.0),
        brow_len=u(10.0, 17.0),
        brow_thick=u(1.3, 4.0),
        brow_angle=u(-0.25, 0.3),
        brow_arch=u(0.0, 2.5),
        brow_dx=u(-1.0, 2.5),
        nose_len=u(15.0, 24.0),
        nose_w=u(4.5, 9.0),
        nose_proj=u(5.0, 12.0),
        nostril=u(0.8, 2.0),
        mouth_gap=u(7.0, 13.0),
        mouth_w=u(10.0, 17.0),
        lip_up=u(1.0, 3.2),
        lip_low=u(1.5, 4.2),
        lip_bow=u(0.0, 1.2),
        lip=_rgb(lip),
        hair=_rgb(hair),
        hair_style=int(rng.choice(6, p=[0.08, 0.3, 0.22, 0.14, 0.16, 0.1])),
        hairline=u(0.5, 0.8),
        recede=u(0.0, 1.0) ** 2,
        peak=u(0.0, 1.0) ** 3,
        hair_vol=u(1.5, 9.0),
        part=u(-1.0, 1.0),
        ear_w=u(3.5, 7.0),
        ear_h=u(8.0, 13.0),
        ear_y=u(-2.0, 6.0),
        beard=int(rng.choice(5, p=[0.62, 0.1, 0.1, 0.08, 0.1])),
        beard_alpha=u(0.35, 0.95),
        moles=moles,
        blush=u(0.0, 0.35),
        wrinkles=int(rng.choice(4, p=[0.6, 0.2, 0.12, 0.08])),
        cheek=u(0.0, 0.3),
    )


@dataclass(frozen=True)
class Nuisance:
    """How one image of an identity was taken; `sample_nuisance(rng, 0)` is the canonical, nuisance-free view."""

    yaw: float  # radians; + turns the face's right (image +x side) away
    pitch: float
    roll: float
    lm_noise: tuple  # (5, 2) landmark-detector error, 112-px units
    scale: float
    shift: tuple  # (dx, dy) 112-px units
    smile: float
    mouth_open: float
    eye_open: float
    brow_raise: float
    gaze: tuple  # iris offset (dx, dy)
    light_angle: float
    light: float  # gradient strength: intensity varies by +-light across the image
    brightness: float
    contrast: float
    gains: tuple  # per-channel colour cast
    gray: bool
    background: tuple  # RGB
    clothes: tuple  # RGB
    clutter: int  # number of background shapes
    blur: float  # Gaussian radius at output size (0 = none)
    lowres: float  # downscale factor before upsampling back (1 = none)
    noise: float  # sensor noise std (0-255 scale)
    occlusion: str  # "" or one of _OCCLUSIONS
    jpeg_quality: int
    seed: int  # for clutter, occluder shapes and noise


def sample_nuisance(rng: np.random.Generator, scale: float = 1.0, mode: str = "normal") -> Nuisance:
    """Draw per-image nuisance; every perturbation is multiplied by `scale` (0 = canonical view).

    mode "frontal" keeps |yaw| <= 10 deg and no occlusion; "hard" forces 35-55 deg yaw and occlusion with
    probability 0.7 (the pose/occlusion-gap half of a CFP-FP-like pair).
    """
    k = float(scale)
    n, u = rng.normal, rng.uniform
    deg = math.pi / 180.0
    yaw = float(np.clip(n(0.0, 20.0), -50.0, 50.0)) * deg
    if mode == "frontal":
        yaw = float(np.clip(yaw, -10 * deg, 10 * deg))
    elif mode == "hard":
        yaw = float(rng.choice([-1.0, 1.0]) * u(35.0, 55.0) * deg)
    pitch = float(np.clip(n(0.0, 8.0), -22.0, 22.0)) * deg
    roll = float(np.clip(n(0.0, 10.0), -30.0, 30.0)) * deg
    lm_noise = n(0.0, 1.4, (5, 2))
    sc, shift = 1.0 + float(np.clip(n(0.0, 0.04), -0.1, 0.1)), n(0.0, 1.5, 2)
    smile = u(-0.3, 1.0) if rng.random() < 0.7 else 0.0
    mouth_open = u(0.2, 1.0) if rng.random() < 0.3 else 0.0
    eye_open = u(0.25, 0.6) if rng.random() < 0.12 else u(0.75, 1.15)
    brow_raise, gaze = u(-1.5, 3.0), n(0.0, 0.7, 2)
    light_angle, light = u(0.0, 2 * math.pi), u(0.0, 0.8)
    brightness, contrast = math.exp(n(0.0, 0.22)), math.exp(n(0.0, 0.2))
    temp = n(0.0, 0.12)
    gains = np.exp(n(0.0, 0.09, 3) + np.array([temp, 0.0, -temp]))
    gray = rng.random() < 0.06
    background, clothes = u(0, 255, 3), u(0, 255, 3)
    clutter = int(rng.integers(0, 9))
    blur = u(0.3, 1.3) if rng.random() < 0.35 else 0.0
    lowres = u(0.35, 0.7) if rng.random() < 0.15 else 1.0
    noise = u(0.0, 7.0)
    p_occ = {"normal": 0.3, "frontal": 0.0, "hard": 0.7}[mode]
    occlusion = str(rng.choice(_OCCLUSIONS, p=[0.35, 0.2, 0.2, 0.25])) if rng.random() < p_occ else ""
    quality = int(rng.integers(75, 96))
    seed = int(rng.integers(0, 2**63 - 1))
    on = k > 0

    def mix(a, canon) -> tuple:  # canon + k * (a - canon), elementwise
        return tuple(float(c + k * (x - c)) for x, c in zip(np.atleast_1d(a), np.atleast_1d(canon)))

    return Nuisance(
        yaw=k * yaw,
        pitch=k * pitch,
        roll=k * roll,
        lm_noise=tuple(map(tuple, k * lm_noise)),
        scale=1 + k * (sc - 1),
        shift=mix(shift, (0.0, 0.0)),
        smile=k * smile,
        mouth_open=k * mouth_open,
        eye_open=1 + k * (eye_open - 1),
        brow_raise=k * brow_raise,
        gaze=mix(gaze, (0.0, 0.0)),
        light_angle=light_angle if on else 0.0,
        light=k * light,
        brightness=1 + k * (brightness - 1),
        contrast=1 + k * (contrast - 1),
        gains=mix(gains, (1.0, 1.0, 1.0)),
        gray=on and gray,
        background=mix(background, (128.0,) * 3),
        clothes=mix(clothes, (70.0, 80.0, 100.0)),
        clutter=round(k * clutter),
        blur=k * blur,
        lowres=1 + k * (lowres - 1),
        noise=k * noise,
        occlusion=occlusion if on else "",
        jpeg_quality=quality if on else 95,
        seed=seed if on else 0,
    )


def render_face(
    identity: IdentityParams, rng: np.random.Generator, image_size: int = 112, nuisance: float = 1.0
) -> np.ndarray:
    """Render one uint8 (S, S, 3) RGB aligned face of `identity`, nuisance drawn from `rng` (scaled by `nuisance`)."""
    return render(identity, sample_nuisance(rng, nuisance), image_size)


def render_jpeg(identity: IdentityParams, nz: Nuisance, image_size: int = 112) -> bytes:
    """`render` encoded as JPEG at the image's own quality (drawn in [75, 95])."""
    return encode_image(render(identity, nz, image_size), "jpeg", quality=nz.jpeg_quality)


# --------------------------------------------------------------------------------------------- geometry
# A shape is (kind, points (n, 2) face frame, mode, z, fill, width): mode 0 = silhouette (scaled like the head
# outline), 1 = on the head ellipsoid (+ z extra depth), 2 = explicit depth z.  kind: "poly" | "line".


def _rgb(c) -> tuple:
    return tuple(int(v) for v in np.clip(np.round(c), 0, 255))


def _shade(c, f: float, alpha: int | None = None) -> tuple:
    out = _rgb(np.asarray(c, float) * f)
    return out if alpha is None else out + (int(alpha),)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 20) -> np.ndarray:
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def _outline(p: IdentityParams, t: np.ndarray, grow: float = 0.0) -> np.ndarray:
    """Head outline at angles t (y down: sin t > 0 is the lower face): an ellipse with a tapered jaw and temples."""
    s, c = np.sin(t), np.cos(t)
    low = np.clip(s, 0, None)
    width = (p.face_w + grow) * (1 - (1 - p.jaw) * low**p.chin_p) * (1 - p.temple * np.clip(-s, 0, None) ** 2)
    return np.stack([width * c, (p.face_h + grow) * s], 1)


class _Scene:
    """Collects face-frame shapes, projects them in one batch, then draws them in order."""

    def __init__(self):
        self.shapes: list = []

    def add(self, kind, pts, mode, fill, width=0, z=0.0):
        pts = np.asarray(pts, float)
        self.shapes.append(
            (kind, pts, np.full(len(pts), mode), np.broadcast_to(np.asarray(z, float), len(pts)), fill, width)
        )

    def project(self, p: IdentityParams, nz: Nuisance, px: float, landmarks: np.ndarray) -> list:
        """3-D rotate (orthographic), then align the noisy projected landmarks to the template (2x canvas units)."""
        pts = np.concatenate([s[1] for s in self.shapes] + [landmarks[:, :2]])
        mode = np.concatenate([s[2] for s in self.shapes] + [np.ones(5, int)])
        zx = np.concatenate([s[3] for s in self.shapes] + [landmarks[:, 2]])
        out = _rotate(p, nz, pts, mode, zx)
        lm = out[-5:] + np.asarray(nz.lm_noise)
        dst = TEMPLATE_112 * px  # template in canvas pixels
        m, t = _similarity(lm, dst)
        centre = np.array([56.0, 56.0]) * px
        m = m * nz.scale
        t = (t - centre) * nz.scale + centre + np.asarray(nz.shift) * px
        out = out[:-5] @ m.T + t
        shapes, i = [], 0
        for kind, q, _, _, fill, width in self.shapes:
            shapes.append((kind, out[i : i + len(q)], fill, width))
            i += len(q)
        return shapes


def _rotate(p: IdentityParams, nz: Nuisance, pts, mode, zx) -> np.ndarray:
    """Orthographic projection of face-frame points after yaw, pitch, roll (mode as in _Scene)."""
    x, y = pts[:, 0], pts[:, 1]
    d = p.depth * p.face_w
    z_surf = d * np.sqrt(np.clip(1 - (x / p.face_w) ** 2 - (y / p.face_h) ** 2, 0, None)) + zx
    z = np.where(mode == 1, z_surf, np.where(mode == 2, zx, 0.0))
    cy, sy, cp, sp = math.cos(nz.yaw), math.sin(nz.yaw), math.cos(nz.pitch), math.sin(nz.pitch)
    x1, z1 = x * cy + z * sy, -x * sy + z * cy
    y1 = y * cp - z1 * sp
    sil = mode == 0  # the silhouette of a rotated ellipsoid is an ellipse with these half axes
    x1 = np.where(sil, x * math.sqrt(cy**2 + (d / p.face_w) ** 2 * sy**2), x1)
    y1 = np.where(sil, y * math.sqrt(cp**2 + (d / p.face_h) ** 2 * sp**2), y1)
    cr, sr = math.cos(nz.roll), math.sin(nz.roll)
    return np.stack([x1 * cr - y1 * sr, x1 * sr + y1 * cr], 1)


def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares similarity dst ~ M src + t (2-D Umeyama, no reflection): M = [[a, -b], [b, a]]."""
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    n2 = (s**2).sum()
    a = (s * d).sum() / n2
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / n2
    m = np.array([[a, -b], [b, a]])
    return m, md - m @ ms


# --------------------------------------------------------------------------------------------- face parts


def _hair_back(sc: _Scene, p: IdentityParams):
    if p.hair_style == 2:  # long: a curtain behind the head down to the shoulders
        t = np.linspace(math.pi * 0.95, math.pi * 2.05, 18)
        top = _outline(p, t, grow=p.hair_vol + 2)
        low = p.face_h * 1.5
        pts = np.concatenate([top, [[p.face_w + p.hair_vol + 6, low], [-(p.face_w + p.hair_vol + 6), low]]])
        sc.add("poly", pts, 0, _shade(p.hair, 0.85))
    elif p.hair_style == 5:
        sc.add(
            "poly",
            _ellipse(0, -p.face_h * 0.35, p.face_w + 3 * p.hair_vol, p.face_h * 0.8 + p.hair_vol, 24),
            0,
            _shade(p.hair, 0.9),
        )


def _hair_front(sc: _Scene, p: IdentityParams):
    if p.hair_style == 0:
        return
    fw, fh = p.face_w, p.face_h
    grow = p.hair_vol * (0.4 if p.hair_style == 1 else 1.0)
    side_y = p.eye_y - (2.0 if p.hair_style != 1 else 6.0)  # where the side hair (sideburn) ends
    a0 = math.pi + math.asin(min(0.99, -side_y / fh))  # left-side angle of that height on the outline
    t = np.linspace(a0, 3 * math.pi - a0, 22)
    outer = _outline(p, t, grow=grow)
    outer[0, 1] = outer[-1, 1] = side_y
    xs = np.linspace(fw * 0.9, -fw * 0.9, 17)
    r = np.abs(xs) / fw
    line = -p.hairline * fh - p.recede * 0.22 * fh * r**2 + p.peak * 5 * np.exp(-((xs / 5) ** 2))
    if p.hair_style == 3:  # fringe: low, jagged
        line = np.minimum(p.eye_y - p.brow_gap - 3 + 2.0 * (np.arange(17) % 2), line + 0.35 * fh * (1 - r**2))
    elif p.hair_style == 4:  # side part: swept, higher on one side
        line = line + 6 * (1 - r) * (0.5 + 0.5 * np.tanh(3 * p.part * xs / fw))
    line = np.maximum(line, -fh * 0.98)
    ends = _outline(p, np.array([3 * math.pi - a0, a0]), grow=-1.5)
    ends[:, 1] = side_y
    inner = np.concatenate([ends[:1], np.stack([xs, line], 1), ends[1:]])
    sc.add("poly", np.concatenate([outer, inner]), 0, p.hair)
    sc.shapes[-1][2][len(outer) + 1 : -1] = 1  # the forehead hairline lies on the face surface


def _ears(sc: _Scene, p: IdentityParams):
    for s in (-1, 1):
        e = _ellipse(s * (p.face_w - 1), p.ear_y, p.ear_w, p.ear_h, 14)
        sc.add("poly", e, 2, _shade(p.skin, 0.93), z=-0.25 * p.depth * p.face_w)
        sc.add(
            "poly",
            _ellipse(s * (p.face_w - 0.5), p.ear_y, p.ear_w * 0.45, p.ear_h * 0.6, 10),
            2,
            _shade(p.skin, 0.78),
            z=-0.25 * p.depth * p.face_w,
        )


def _neck(sc: _Scene, p: IdentityParams, nz: Nuisance):
    fw, fh = p.face_w, p.face_h
    sc.add(
        "poly",
        [
            [-fw * 2.6, fh * 3],
            [-fw * 2.3, fh * 1.55],
            [-fw * 0.6, fh * 1.2],
            [fw * 0.6, fh * 1.2],
            [fw * 2.3, fh * 1.55],
            [fw * 2.6, fh * 3],
        ],
        0,
        _rgb(nz.clothes),
    )
    sc.add(
        "poly",
        [[-fw * 0.5, fh * 0.5], [fw * 0.5, fh * 0.5], [fw * 0.55, fh * 1.35], [-fw * 0.55, fh * 1.35]],
        0,
        _shade(p.skin, 0.8),
    )


def _eye(sc: _Scene, p: IdentityParams, nz: Nuisance, s: int, px_w: float):
    """Almond eye; u points outward from the nose so left/right eyes mirror. Iris clipped to the lids."""
    ew, up, lo = p.eye_w, p.eye_h * nz.eye_open, p.eye_h * p.eye_low * min(1.0, nz.eye_open + 0.3)
    cx, cy = s * p.eye_dx, p.eye_y

    def place(u, v):
        return np.stack([cx + s * u, cy + v - p.eye_tilt * u], 1)

    u = np.linspace(-ew, ew, 13)
    f = 1 - (u / ew) ** 2
    almond = np.concatenate([place(u, -up * f), place(u[::-1], lo * f[::-1])])
    sc.add("poly", almond, 1, (238, 236, 230), z=-2.0)
    for r, col in ((p.iris_r, p.iris), (p.iris_r * 0.42, (15, 10, 10))):
        c = _ellipse(s * nz.gaze[0], nz.gaze[1], r, r, 16)  # (u, v): gaze moves both irises the same image way
        cu = np.clip(c[:, 0], -ew, ew)
        ff = 1 - (cu / ew) ** 2
        cv = np.clip(c[:, 1], -up * ff, lo * ff)
        sc.add("poly", place(cu, cv), 1, col, z=-1.5)
    sc.add("line", place(u, -up * f), 1, (35, 25, 22), width=px_w * 1.1, z=-1.5)
    sc.add("line", place(u[3:], lo * f[3:] + 0.3), 1, _shade(p.skin, 0.72), width=px_w * 0.6, z=-1.5)


def _brow(sc: _Scene, p: IdentityParams, nz: Nuisance, s: int):
    n = 11
    u = np.linspace(-0.45, 0.55, n) * p.brow_len
    v = -p.brow_arch * (1 - (2 * (u - 0.1 * p.brow_len) / p.brow_len) ** 2) - p.brow_angle * u
    th = p.brow_thick * np.linspace(1.0, 0.45, n)
    cx, cy = s * (p.eye_dx + p.brow_dx), p.eye_y - p.brow_gap - nz.brow_raise
    top = np.stack([cx + s * u, cy + v - th / 2], 1)
    bot = np.stack([cx + s * u, cy + v + th / 2], 1)[::-1]
    sc.add("poly", np.concatenate([top, bot]), 1, _shade(p.hair, 0.8) if sum(p.hair) < 500 else _shade(p.hair, 0.6))


def _nose(sc: _Scene, p: IdentityParams, nz: Nuisance, px_w: float):
    tip = p.eye_y + p.nose_len
    nw, pr = p.nose_w, p.nose_proj
    ys = np.linspace(p.eye_y + 3, tip - 1, 6)
    zb = pr * np.linspace(0.1, 0.9, 6)
    side = -1.0 if math.cos(nz.light_angle) > 0 else 1.0  # shadowed flank faces away from the light
    flank = np.concatenate([np.stack([side * np.linspace(1.5, nw * 0.8, 6), ys], 1), [[0.0, tip + 1]]])
    sc.add(
        "poly",
        np.concatenate([[[0.0, p.eye_y + 3]], flank]),
        1,
        _shade(p.skin, 0.8, 60 + 60 * nz.light),
        z=np.concatenate([[0.0], zb, [pr * 0.6]]),
    )
    wings = np.array([[-nw, tip - 1], [-nw * 0.6, tip + 2], [nw * 0.6, tip + 2], [nw, tip - 1], [0.0, tip - 3]])
    sc.add("line", wings, 1, _shade(p.skin, 0.7), width=px_w * 0.7, z=pr * np.array([0.3, 0.5, 0.5, 0.3, 0.9]))
    for s in (-1, 1):
        sc.add(
            "poly",
            _ellipse(s * nw * 0.45, tip + 1.2, p.nostril, p.nostril * 0.6, 10),
            1,
            _shade(p.skin, 0.4),
            z=pr * 0.45,
        )


def _mouth_geom(p: IdentityParams, nz: Nuisance):
    my = p.eye_y + p.nose_len + p.mouth_gap
    mw = p.mouth_w + 1.5 * nz.smile
    return my, mw


def _mouth(sc: _Scene, p: IdentityParams, nz: Nuisance, px_w: float):
    my, mw = _mouth_geom(p, nz)
    x = np.linspace(-mw, mw, 15)
    f = 1 - (x / mw) ** 2
    mid = my - 2.5 * nz.smile * (1 - f)
    gap = 6.0 * nz.mouth_open * f
    bow = p.lip_bow * (np.exp(-(((x - 2.5) / 2.0) ** 2)) + np.exp(-(((x + 2.5) / 2.0) ** 2)))
    upper = mid - np.sqrt(f) * p.lip_up - bow
    lower = mid + gap + np.sqrt(f) * p.lip_low * (1 + 0.3 * nz.smile)
    sc.add("poly", np.concatenate([np.stack([x, upper], 1), np.stack([x, lower], 1)[::-1]]), 1, p.lip)
    if nz.mouth_open > 0.05:
        sc.add("poly", np.concatenate([np.stack([x, mid], 1), np.stack([x, mid + gap], 1)[::-1]]), 1, (70, 25, 28))
        teeth = np.stack([x[2:-2] * 0.8, mid[2:-2] + 0.4 * gap[2:-2]], 1)[::-1]
        sc.add("poly", np.concatenate([np.stack([x[2:-2] * 0.8, mid[2:-2]], 1), teeth]), 1, (232, 226, 214))
    else:
        sc.add("line", np.stack([x, mid], 1), 1, _shade(p.lip, 0.55), width=px_w * 0.8)


def _beard(sc: _Scene, p: IdentityParams, nz: Nuisance):
    if p.beard == 0:
        return
    my, mw = _mouth_geom(p, nz)
    col = _shade(p.hair, 0.9, 255 * p.beard_alpha * (0.35 if p.beard == 1 else 1.0))
    nose_y = p.eye_y + p.nose_len + 2
    if p.beard in (1, 4):  # jaw-line beard with moustache
        t = np.linspace(math.atan2(p.ear_y / p.face_h, 1.0), math.pi - math.atan2(p.ear_y / p.face_h, 1.0), 20)
        outer = _outline(p, t)
        inner = [[-p.face_w * 0.75, my - 6], [-mw - 2, nose_y], [mw + 2, nose_y], [p.face_w * 0.75, my - 6]]
        sc.add("poly", np.concatenate([outer, inner]), 0, col)
        sc.shapes[-1][2][len(outer) :] = 1
    if p.beard == 2:
        sc.add(
            "poly",
            [
                [-mw - 1, my + 1],
                [-mw * 0.6, nose_y],
                [mw * 0.6, nose_y],
                [mw + 1, my + 1],
                [mw * 0.5, my - 2],
                [-mw * 0.5, my - 2],
            ],
            1,
            col,
        )
    if p.beard == 3:
        chin = p.face_h * (1 - 0.02)
        sc.add("poly", [[-mw * 0.7, my + 3], [mw * 0.7, my + 3], [mw * 0.5, chin], [-mw * 0.5, chin]], 1, col)


def _marks(sc: _Scene, p: IdentityParams, px_w: float):
    fw = p.face_w
    for s in (-1, 1):
        sc.add(
            "poly",
            _ellipse(s * fw * 0.55, p.eye_y + p.nose_len, fw * 0.22, fw * 0.15, 12),
            1,
            (200, 60, 60, int(90 * p.blush)),
        )
        sc.add(
            "poly",
            _ellipse(s * fw * 0.7, p.eye_y + p.nose_len + 6, fw * 0.12, fw * 0.3, 12),
            1,
            (0, 0, 0, int(90 * p.cheek)),
        )
    for i in range(p.wrinkles):
        y = p.eye_y - p.brow_gap - 6 - 3.5 * i
        xs = np.linspace(-fw * 0.35, fw * 0.35, 9)
        sc.add(
            "line",
            np.stack([xs, y - 1.5 * (1 - (xs / fw / 0.35) ** 2)], 1),
            1,
            _shade(p.skin, 0.75, 120),
            width=px_w * 0.5,
        )
    for x, y, r in p.moles:
        sc.add("poly", _ellipse(x, y, r, r, 8), 1, (70, 45, 35))


def _side_shadow(sc: _Scene, p: IdentityParams, nz: Nuisance):
    """Darken the half of the face turned from the light: split along the (yaw-following) midline, soft edge."""
    side = -1.0 if math.cos(nz.light_angle) > 0 else 1.0
    ys = np.linspace(p.face_h, -p.face_h, 9)
    t = np.linspace(-math.pi / 2, math.pi / 2, 16) + (math.pi if side < 0 else 0.0)
    alpha = 55 * nz.light * abs(math.cos(nz.light_angle))
    for off in (0.0, 0.3):  # two overlapping layers: a soft step instead of a hard edge
        half = _outline(p, t)
        mid = np.stack([np.full(9, side * off * p.face_w), ys if side > 0 else ys[::-1]], 1)
        sc.add("poly", np.concatenate([half, mid]), 0, (0, 0, 0, int(alpha)))
        sc.shapes[-1][2][len(half) :] = 1


def _occluder(sc: _Scene, p: IdentityParams, nz: Nuisance, rng: np.random.Generator, px_w: float):
    kind = nz.occlusion
    if kind in ("glasses", "sunglasses"):
        col = _rgb(rng.uniform(0, 120, 3)) if kind == "glasses" else (20, 20, 20)
        rx, ry = p.eye_w + rng.uniform(2.5, 5), p.eye_h + rng.uniform(2.5, 5)
        for s in (-1, 1):
            lens = _ellipse(s * p.eye_dx, p.eye_y + 0.5, rx, ry, 20)
            if kind == "sunglasses":
                sc.add("poly", lens, 1, (12, 12, 18, int(rng.uniform(200, 250))), z=2.0)
            sc.add("line", np.concatenate([lens, lens[:1]]), 1, col, width=px_w * rng.uniform(0.8, 1.8), z=2.0)
        sc.add("line", [[-p.eye_dx + rx, p.eye_y], [p.eye_dx - rx, p.eye_y]], 1, col, width=px_w, z=3.0)
    elif kind == "mask":
        fw, top = p.face_w, p.eye_y + p.nose_len * rng.uniform(0.35, 0.6)
        t = np.linspace(0.05, math.pi - 0.05, 16)
        pts = np.concatenate(
            [[[-fw * 0.97, top + 4], [0.0, top - 1.0], [fw * 0.97, top + 4]], _outline(p, t, grow=1.0)]
        )
        sc.add(
            "poly",
            pts,
            1,
            _rgb(rng.choice([[150, 190, 215], [235, 235, 235], [40, 40, 45]]) + rng.normal(0, 10, 3)),
            z=2.0,
        )


# --------------------------------------------------------------------------------------------- render


def render(p: IdentityParams, nz: Nuisance, image_size: int = 112) -> np.ndarray:
    """Deterministic rendering of identity `p` under nuisance `nz` -> uint8 (S, S, 3) RGB."""
    size = int(image_size)
    canvas = 2 * size
    px = canvas / 112.0  # canvas pixels per template pixel
    rng = np.random.default_rng(nz.seed)
    im = Image.new("RGB", (canvas, canvas), _rgb(nz.background))
    draw = ImageDraw.Draw(im, "RGBA")
    _clutter(draw, rng, nz.clutter, canvas)

    sc = _Scene()
    _neck(sc, p, nz)
    _hair_back(sc, p)
    _ears(sc, p)
    sc.add("poly", _outline(p, np.linspace(0, 2 * math.pi, 48, endpoint=False)), 0, p.skin)
    _marks(sc, p, px)
    if nz.light > 0:
        _side_shadow(sc, p, nz)
    _beard(sc, p, nz)
    for s in (-1, 1):
        _eye(sc, p, nz, s, px)
        _brow(sc, p, nz, s)
    _nose(sc, p, nz, px)
    _mouth(sc, p, nz, px)
    _hair_front(sc, p)
    _occluder(sc, p, nz, rng, px)

    my, mw = _mouth_geom(p, nz)
    corner_y = my - 2.5 * nz.smile
    landmarks = np.array(
        [
            [-p.eye_dx, p.eye_y, -2.0],
            [p.eye_dx, p.eye_y, -2.0],
            [0.0, p.eye_y + p.nose_len, p.nose_proj],
            [-mw, corner_y, 0.0],
            [mw, corner_y, 0.0],
        ]
    )
    shapes = sc.project(p, nz, px, landmarks)
    for kind, pts, fill, width in shapes:
        xy = [tuple(q) for q in pts.tolist()]
        if kind == "poly":
            draw.polygon(xy, fill=fill)
        else:
            draw.line(xy, fill=fill, width=max(1, round(width)), joint="curve")
    if nz.occlusion == "hand":
        _hand(draw, rng, canvas)
    return _finish(im.reduce(2), nz, rng, size)


def _clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, n: int, canvas: int):
    for _ in range(n):
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * canvas
        w, h = rng.uniform(0.1, 0.6, 2) * canvas
        col = _rgb(rng.uniform(0, 255, 3))
        shape = rng.integers(3)
        box = [x0, y0, x0 + w, y0 + h]
        if shape == 0:
            draw.rectangle(box, fill=col)
        elif shape == 1:
            draw.ellipse(box, fill=col)
        else:
            draw.line([(x0, y0), (x0 + w, y0 + h)], fill=col, width=int(rng.integers(2, 12)))


def _hand(draw: ImageDraw.ImageDraw, rng: np.random.Generator, canvas: int):
    """A hand or object entering from an image edge, covering 15-35% of the face area."""
    skin = _SKIN_LIGHT + rng.uniform(0, 1) * (_SKIN_DARK - _SKIN_LIGHT)
    col = _rgb(skin if rng.random() < 0.6 else rng.uniform(0, 255, 3))
    side = int(rng.integers(4))
    depth, span, pos = rng.uniform(0.25, 0.45) * canvas, rng.uniform(0.35, 0.7) * canvas, rng.uniform(0.1, 0.9) * canvas
    a, b = pos - span / 2, pos + span / 2
    box = {
        0: [-canvas, a, depth, b],
        1: [canvas - depth, a, 2 * canvas, b],
        2: [a, canvas - depth, b, 2 * canvas],
        3: [a, -canvas, b, depth],
    }[side]
    draw.rounded_rectangle(box, radius=int(0.1 * canvas), fill=col)


@functools.lru_cache(maxsize=8)
def _gradient_axes(size: int) -> tuple[np.ndarray, np.ndarray]:
    g = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    return g[None, :, None], g[:, None, None]


def _finish(im: Image.Image, nz: Nuisance, rng: np.random.Generator, size: int) -> np.ndarray:
    """Camera: blur / low resolution, then light gradient, brightness, contrast, colour cast, noise, greyscale."""
    if nz.lowres < 0.99:
        small = max(8, round(size * nz.lowres))
        im = im.resize((small, small), Image.BILINEAR).resize((size, size), Image.BILINEAR)
    if nz.blur > 0.05:
        im = im.filter(ImageFilter.GaussianBlur(nz.blur))
    if nz.light == 0 and nz.brightness == 1 and nz.contrast == 1 and nz.noise == 0 and nz.gains == (1.0,) * 3:
        return np.asarray(im)
    a = np.asarray(im, dtype=np.float32)
    gx, gy = _gradient_axes(size)
    light = 1 + nz.light * 0.5 * (math.cos(nz.light_angle) * gx + math.sin(nz.light_angle) * gy)
    a = a * (light * (nz.brightness * np.asarray(nz.gains, np.float32)))
    m = a.mean()
    a = (a - m) * nz.contrast + m
    if nz.noise > 0:
        a += rng.standard_normal((size, size, 1), dtype=np.float32) * nz.noise
        a += rng.standard_normal((size, size, 3), dtype=np.float32) * (0.4 * nz.noise)
    if nz.gray:
        a = np.repeat(a @ np.array([0.299, 0.587, 0.114], np.float32), 3).reshape(size, size, 3)
    return np.clip(a + 0.5, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------- data set


@functools.lru_cache(maxsize=4096)
def _identity(seed: int, identity: int) -> IdentityParams:
    return sample_identity(identity_rng(seed, identity))


_MODES = {"normal": (_TAG_IMAGE, "normal"), "frontal": (_TAG_FRONTAL, "frontal"), "hard": (_TAG_HARD, "hard")}


def _job(job: tuple) -> bytes:
    """(seed, identity, index, image_size, kind) -> JPEG bytes; a pure function of its argument."""
    seed, ident, index, size, kind = job
    tag, mode = _MODES[kind]
    rng = np.random.default_rng([seed, tag, ident, index])
    return render_jpeg(_identity(seed, ident), sample_nuisance(rng, 1.0, mode), size)


def _render_all(jobs: list, workers: int):
    """Yield _job results in job order, rendering in `workers` processes (1 = in this process)."""
    if workers <= 1 or len(jobs) < 2:
        yield from map(_job, jobs)
        return
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    chunk = max(1, min(256, len(jobs) // (workers * 8)))
    with ctx.Pool(workers) as pool:
        yield from pool.imap(_job, jobs, chunksize=chunk)


def _pairs(
    rng: np.random.Generator,
    first: int,
    n_ids: int,
    per_id: int,
    n_pairs: int,
    hard: bool,
    looks: np.ndarray | None = None,
):
    """n_pairs (key_a, key_b, issame), alternating same/different so every contiguous tenth is balanced.

    Hard sets pair a frontal image with a hard one, and (given `looks`, one row per identity) take each impostor
    as the most similar-looking of 4 random candidates, so skin and hair colour do not give the answer away.
    """
    kinds = ("frontal", "hard") if hard else ("normal", "normal")
    out, seen = [], set()
    for i in range(n_pairs):
        same = i % 2 == 0
        for _ in range(20):  # avoid repeating a pair when the pool allows
            a = int(rng.integers(n_ids))
            cand = (a + rng.integers(1, n_ids, 4 if hard and looks is not None else 1)) % n_ids
            if len(cand) > 1:
                cand = cand[np.argmin(((looks[cand] - looks[a]) ** 2).sum(1))]
            b = a if same else int(np.atleast_1d(cand)[0])
            ia, ib = (int(v) for v in rng.choice(per_id, 2, replace=hard or not same))
            key = (a, ia, b, ib)
            if key not in seen:
                break
        seen.add(key)
        out.append(((first + a, ia, kinds[0]), (first + b, ib, kinds[1]), same))
    return out


def _write_pairs(path: Path, pairs: list, seed: int, size: int, workers: int) -> None:
    from .verification_bin import write_bin

    keys = sorted({k for a, b, _ in pairs for k in (a, b)})
    jobs = [(seed, ident, idx, size, kind) for ident, idx, kind in keys]
    encoded = dict(zip(keys, _render_all(jobs, workers)))
    images = [encoded[k] for a, b, _ in pairs for k in (a, b)]
    write_bin(path, images, [s for _, _, s in pairs])


def synthesize(
    out_dir,
    identities: int,
    images_per_identity: int,
    seed: int = 0,
    val_identities: int | None = None,
    image_size: int = 112,
    val_pairs: int = 3000,
    workers: int | None = None,
) -> dict:
    """Write a synthetic training set (RecordIO) and two verification sets of held-out identities.

    out_dir/train/: identities x images_per_identity images, labels 0..identities-1.
    out_dir/synth_ver.bin: pairs of held-out identities (indices identities.. identities+val_identities-1), half
    same, half different, val_pairs rounded down to a multiple of 20 and alternating so each tenth is balanced.
    out_dir/synth_hard.bin: as many pairs, each a near-frontal image against a 35-55 deg yaw one (occluded with
    probability 0.7), impostors chosen to look alike (skin, hair): the CFP-FP / CPLFW analogue.
    out_dir/synth.json: the parameters. Output bytes do not depend on `workers` (default os.cpu_count()).
    """
    from .pack import pack_encoded

    val_identities = max(20, identities // 5) if val_identities is None else val_identities
    _check(
        identities=identities,
        images_per_identity=images_per_identity,
        val_identities=val_identities,
        image_size=image_size,
    )
    n_pairs = (int(val_pairs) // 20) * 20
    if val_pairs < 0 or 0 < val_pairs < 20:
        raise ConfigError(f"synthesize: val_pairs={val_pairs} must be 0 (no verification sets) or >= 20.")
    if n_pairs and val_identities < 2:
        raise ConfigError(f"synthesize: val_identities={val_identities} must be >= 2 to form different pairs.")
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    out, size, t0 = Path(out_dir), int(image_size), time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)

    jobs = [(seed, i, j, size, "normal") for i in range(identities) for j in range(images_per_identity)]
    labels = (job[1] for job in jobs)
    pack_encoded(zip(labels, _render_all(jobs, workers)), out / "train", image_size=(size, size))
    t_train = time.perf_counter() - t0

    result = {
        "train": str(out / "train"),
        "identities": identities,
        "images_per_identity": images_per_identity,
        "train_images": len(jobs),
        "val_identities": val_identities,
        "val_pairs": n_pairs,
        "image_size": size,
        "seed": seed,
    }
    if n_pairs:
        per_val = max(images_per_identity, 2)
        looks = np.array([_looks(_identity(seed, identities + v)) for v in range(val_identities)])
        for name, hard, tag in (("synth_ver.bin", False, 0), ("synth_hard.bin", True, 1)):
            pairs = _pairs(
                np.random.default_rng([seed, _TAG_PAIRS, tag]),
                identities,
                val_identities,
                per_val,
                n_pairs,
                hard,
                looks,
            )
            _write_pairs(out / name, pairs, seed, size, workers)
            result["hard" if hard else "ver"] = str(out / name)
    meta = {
        "generator": "facezoo.synthetic",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "identities": identities,
        "images_per_identity": images_per_identity,
        "val_identities": val_identities,
        "val_identity_range": [identities, identities + val_identities],
        "image_size": size,
        "val_pairs": n_pairs,
    }
    with atomic_write(out / "synth.json", "w") as f:
        json.dump(meta, f, indent=2)
    result.update(
        meta=str(out / "synth.json"), seconds=round(time.perf_counter() - t0, 3), train_seconds=round(t_train, 3)
    )
    return result


def _looks(p: IdentityParams) -> np.ndarray:
    """Coarse appearance (skin and hair colour, hair style) for choosing look-alike impostors."""
    return np.concatenate([np.asarray(p.skin, float), np.asarray(p.hair, float), [40.0 * p.hair_style]])


def _check(**counts: int) -> None:
    for key, value in counts.items():
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"synthesize: {key}={value!r} must be a positive integer.")


def contact_sheet(seed: int = 0, identities: int = 8, images: int = 8, image_size: int = 112) -> np.ndarray:
    """uint8 grid: one row per identity; column 0 the canonical (nuisance-free) view, then training images."""
    rows = []
    for i in range(identities):
        p = _identity(seed, i)
        tiles = [render(p, sample_nuisance(image_rng(seed, i, 0), 0.0), image_size)]
        tiles += [render(p, sample_nuisance(image_rng(seed, i, j)), image_size) for j in range(images - 1)]
        rows.append(np.concatenate(tiles, 1))
    return np.concatenate(rows, 0)

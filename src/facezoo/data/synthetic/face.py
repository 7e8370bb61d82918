"""Who a synthetic face is and how one photo of it was taken: identity parameters (face geometry and fine
appearance) and per-image nuisance (pose, alignment error, expression, lighting, camera, occlusion), each drawn
from its own seeded generator so any image can be regenerated alone, in any order or process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Domain tags keep the seed streams apart: SeedSequence ignores trailing zeros, so [s, i] and [s, i, 0] collide.
TAG_IDENTITY, TAG_IMAGE, TAG_FRONTAL, TAG_HARD, TAG_PAIRS = 0x1D, 0x1A, 0x1F, 0x1B, 0x1C

SKIN_LIGHT, SKIN_DARK = np.array([236.0, 201.0, 176.0]), np.array([86.0, 56.0, 40.0])
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


def rgb(c) -> tuple:
    """An RGB triple of ints clipped to 0..255."""
    return tuple(int(v) for v in np.clip(np.round(c), 0, 255))


def identity_rng(seed: int, identity: int) -> np.random.Generator:
    """The generator of identity `identity`'s parameters (independent of how many identities exist)."""
    return np.random.default_rng([seed, TAG_IDENTITY, identity])


def image_rng(seed: int, identity: int, index: int) -> np.random.Generator:
    """The generator of image `index` of identity `identity` (independent of generation order)."""
    return np.random.default_rng([seed, TAG_IMAGE, identity, index])


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
    skin = SKIN_LIGHT + tone * (SKIN_DARK - SKIN_LIGHT) + rng.normal(0.0, 7.0, 3)
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
        skin=rgb(skin),
        eye_dx=u(15.5, 19.5),
        eye_y=eye_y,
        eye_w=u(4.8, 7.2),
        eye_h=u(2.2, 4.2),
        eye_low=u(0.35, 0.8),
        eye_tilt=u(-0.18, 0.22),
        iris_r=u(2.0, 3.0),
        iris=rgb(_IRIS[rng.choice(len(_IRIS), p=_IRIS_P)] + rng.normal(0, 10, 3)),
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
        lip=rgb(lip),
        hair=rgb(hair),
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

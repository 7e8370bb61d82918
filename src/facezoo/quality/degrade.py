"""Controlled degradations of aligned face crops, for checking that quality scores fall where recognition does.

Each takes a uint8 (H, W, 3) RGB crop and a severity s in [0, 1] (0 = unchanged) and returns a new crop of the same
size; lengths are in pixels of a 112-pixel crop, scaled to the crop's size:
  blur     Gaussian blur, radius 0.5 + 3.5 s;
  shrink   the face seen smaller: downscaled to (1 - 0.85 s) of its side (box filter), upscaled back (bilinear),
           as a detector's small face resampled to the crop size;
  occlude  a flat rectangle of a random colour over 15% + 35% s of the face area (eyes-to-chin box), at a random
           place in it (the seed decides colour and place).
`degrade(crop, kind, s, seed)` picks one by name; DEGRADATIONS lists them.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

FACE_BOX = (0.18, 0.82, 0.22, 0.95)  # x0, x1, y0, y1 of the face in an ArcFace-aligned crop, as fractions


def _check(crop: np.ndarray, severity: float) -> tuple[np.ndarray, float]:
    crop = np.asarray(crop)
    if crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3:
        raise ConfigError(f"degrade: expects a uint8 (H, W, 3) crop, got {crop.dtype} {crop.shape}")
    s = float(severity)
    if not 0.0 <= s <= 1.0:
        raise ConfigError(f"degrade: severity must be in [0, 1], got {severity!r}")
    return crop, s


def blur(crop, severity: float, seed: int = 0) -> np.ndarray:
    from PIL import Image, ImageFilter

    crop, s = _check(crop, severity)
    if s == 0:
        return crop.copy()
    radius = (0.5 + 3.5 * s) * crop.shape[0] / 112.0
    return np.asarray(Image.fromarray(crop).filter(ImageFilter.GaussianBlur(radius)))


def shrink(crop, severity: float, seed: int = 0) -> np.ndarray:
    from PIL import Image

    crop, s = _check(crop, severity)
    if s == 0:
        return crop.copy()
    h, w = crop.shape[:2]
    f = 1.0 - 0.85 * s
    small = Image.fromarray(crop).resize((max(4, round(w * f)), max(4, round(h * f))), Image.BOX)
    return np.asarray(small.resize((w, h), Image.BILINEAR))


def occlude(crop, severity: float, seed: int = 0) -> np.ndarray:
    crop, s = _check(crop, severity)
    out = crop.copy()
    if s == 0:
        return out
    rng = np.random.default_rng([int(seed), 0x0CC1])
    h, w = crop.shape[:2]
    x0, x1, y0, y1 = FACE_BOX
    bw, bh = (x1 - x0) * w, (y1 - y0) * h
    area = (0.15 + 0.35 * s) * bw * bh
    aspect = rng.uniform(0.5, 2.0)
    rw = max(1, int(min(bw, np.sqrt(area * aspect))))
    rh = max(1, int(min(bh, area / rw)))
    left = int(x0 * w + rng.uniform(0, bw - rw))
    top = int(y0 * h + rng.uniform(0, bh - rh))
    out[top : top + rh, left : left + rw] = rng.integers(0, 256, 3, dtype=np.uint8)
    return out


DEGRADATIONS = {"blur": blur, "shrink": shrink, "occlude": occlude}


def degrade(crop, kind: str, severity: float, seed: int = 0) -> np.ndarray:
    """DEGRADATIONS[kind](crop, severity, seed); ConfigError naming the kinds for an unknown one."""
    if kind not in DEGRADATIONS:
        from ..registry import did_you_mean

        raise ConfigError(
            f"unknown degradation '{kind}'.{did_you_mean(kind, DEGRADATIONS)} Available: {', '.join(DEGRADATIONS)}."
        )
    return DEGRADATIONS[kind](crop, severity, seed)

"""Geometric ops on the device (FaceX-Zoo's set): random crop and resize back, rotation; and the per-sample affine
warp they and RandAugment share.

FaceX-Zoo (data_processor/train_dataset.py): crop [y1, y2) x [x1, x2) with x1, y1 in [0, 9) and x2, y2 in
[S - 9, S), resized back to S; rotation by an integer angle in [-10, 10] degrees with cv2.warpAffine and a zero
border. FaceX-Zoo's rotation matrix has no translation, so it turns about the top-left corner; `about: center` (the
default here) turns about the image centre, `about: corner` reproduces FaceX-Zoo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import ConfigError
from .base import AUGMENTS, Augment, Draws
from .photometric import _sample


def affine(x: torch.Tensor, m: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """Warp (B, C, H, W) by per-sample 2x3 matrices m (B, 2, 3) mapping OUTPUT pixel coordinates to source ones
    (pixel centres at integers), bilinear."""
    _, _, h, w = x.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=x.device, dtype=x.dtype), torch.arange(w, device=x.device, dtype=x.dtype), indexing="ij"
    )
    m = m.to(x.dtype)
    sx = m[:, 0, 0, None, None] * xs + m[:, 0, 1, None, None] * ys + m[:, 0, 2, None, None]
    sy = m[:, 1, 0, None, None] * xs + m[:, 1, 1, None, None] * ys + m[:, 1, 2, None, None]
    return _sample(x, sx, sy, padding)


def rotation_about(theta: torch.Tensor, cx: float, cy: float) -> torch.Tensor:
    """(B, 2, 3) output -> source maps of a rotation by theta (B,) radians about (cx, cy):
    src = R(-theta) (p - c) + c."""
    c, s = torch.cos(theta), torch.sin(theta)
    m = torch.zeros(theta.shape[0], 2, 3, device=theta.device, dtype=theta.dtype)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, s, -s, c
    m[:, 0, 2] = cx - c * cx - s * cy
    m[:, 1, 2] = cy + s * cx - c * cy
    return m


@AUGMENTS.register("crop")
class Crop(Augment):
    """FaceX-Zoo's random crop: [y1, y2) x [x1, x2) with x1, y1 in [0, k) and x2, y2 in [112 - k, 112) px of a
    112 crop (k = max_px), resized back (pixel centres mapped as image resizers do)."""

    @dataclass
    class Options:
        name: str = "crop"
        p: float = 0.5
        max_px: int = 9

    @classmethod
    def check(cls, o, where):
        if not 1 <= o.max_px <= 56:
            raise ConfigError(f"{where}.max_px must be in [1, 56], got {o.max_px}")

    def apply(self, x: torch.Tensor, draw: Draws) -> torch.Tensor:
        b, _, h, w = x.shape
        k = self.options.max_px
        fy, fx = h / 112.0, w / 112.0
        x1, y1 = draw.integers(0, k).float() * fx, draw.integers(0, k).float() * fy
        x2 = (112 - k + draw.integers(0, k).float()) * fx  # exclusive ends in [S - k, S - 1], as FaceX-Zoo
        y2 = (112 - k + draw.integers(0, k).float()) * fy
        m = torch.zeros(b, 2, 3, device=x.device)
        m[:, 0, 0], m[:, 0, 2] = (x2 - x1) / w, x1 + 0.5 * (x2 - x1) / w - 0.5
        m[:, 1, 1], m[:, 1, 2] = (y2 - y1) / h, y1 + 0.5 * (y2 - y1) / h - 0.5
        return affine(x, m, padding="border")


@AUGMENTS.register("rotate")
class Rotate(Augment):
    """Rotation by an angle in [-degrees, degrees] (integer degrees, as FaceX-Zoo draws them, unless
    integer=false), zero border, about the centre or the top-left corner."""

    @dataclass
    class Options:
        name: str = "rotate"
        p: float = 0.5
        degrees: float = 10.0
        integer: bool = True
        about: Literal["center", "corner"] = "center"

    @classmethod
    def check(cls, o, where):
        if not 0 <= o.degrees <= 180:
            raise ConfigError(f"{where}.degrees must be in [0, 180], got {o.degrees}")

    def apply(self, x, draw):
        _, _, h, w = x.shape
        d = self.options.degrees
        if self.options.integer:
            deg = draw.integers(-int(d), int(d) + 1).float()
        else:
            deg = draw.uniform(-d, d)
        c = (0.0, 0.0) if self.options.about == "corner" else ((w - 1) / 2, (h - 1) / 2)
        return affine(x, rotation_about(deg * (math.pi / 180), *c))

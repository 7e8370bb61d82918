"""Photometric ops on the device (arcface_torch's set): downscale and back, Gaussian blur, HSV jitter, grayscale.

All take float (B, 3, H, W) 0-255 and per-sample parameters from `Draws`; sizes are pixels of a 112-row crop,
scaled by H / 112 for other crop sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .base import AUGMENTS, Augment, Draws
from .filters import gaussian_blur, luma


def _pair(values, where: str, lo: float, name: str) -> None:
    if len(values) != 2 or not lo <= values[0] <= values[1]:
        raise ConfigError(f"{where}.{name}: expected [low, high] with {lo} <= low <= high, got {values}")


@AUGMENTS.register("downscale")
class Downscale(Augment):
    """Down to a side drawn from `size` px (of a 112 crop) and back up: low-resolution faces. The downsampling is
    antialiased (a Gaussian of sigma 0.5 sqrt(f^2 - 1) for a factor f, then sampling at the small grid's pixel
    centres); the upsampling bilinear, as image resizers map pixel centres."""

    @dataclass
    class Options:
        name: str = "downscale"
        p: float = 0.1
        size: list[int] = field(default_factory=lambda: [56, 90])

    @classmethod
    def check(cls, o, where):
        _pair(o.size, where, 2, "size")

    def apply(self, x: torch.Tensor, draw: Draws) -> torch.Tensor:
        b, _, h, w = x.shape
        lo, hi = (v * h / 112.0 for v in self.options.size)
        sy = draw.integers(int(self.options.size[0]), int(self.options.size[1]) + 1).float() * (h / 112.0)
        sy = sy.clamp(2, h)
        sx = (sy * (w / h)).clamp(2, w)
        f = h / sy
        sigma = 0.5 * (f**2 - 1).clamp_min(0).sqrt()
        blurred = gaussian_blur(x, sigma, max_sigma=0.5 * math.sqrt(max((h / max(lo, 2.0)) ** 2 - 1, 0.0)) + 1e-3)
        n = math.ceil(max(hi, 2.0) * max(1.0, w / h))
        j = torch.arange(n, device=x.device, dtype=x.dtype)
        # stage 1: the small image (its first sy x sx cells of an n x n buffer), sampled at its pixel centres
        cy = (j[None] + 0.5) * (h / sy[:, None]) - 0.5  # (B, n) source rows
        cx = (j[None] + 0.5) * (w / sx[:, None]) - 0.5
        small = _sample(blurred, cx[:, None, :].expand(b, n, n), cy[:, :, None].expand(b, n, n))
        # stage 2: each output pixel centre mapped into the small image, clamped to its sy x sx cells
        oy = torch.arange(h, device=x.device, dtype=x.dtype)
        ox = torch.arange(w, device=x.device, dtype=x.dtype)
        ty = ((oy[None] + 0.5) * (sy[:, None] / h) - 0.5).clamp_min(0).minimum(sy[:, None] - 1)
        tx = ((ox[None] + 0.5) * (sx[:, None] / w) - 0.5).clamp_min(0).minimum(sx[:, None] - 1)
        return _sample(small, tx[:, None, :].expand(b, h, w), ty[:, :, None].expand(b, h, w))


def _sample(x: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor, padding: str = "border") -> torch.Tensor:
    """Bilinear samples of x (B, C, H, W) at pixel coordinates sx, sy (B, h, w) (pixel centres at integers)."""
    _, _, h, w = x.shape
    grid = torch.stack([sx * (2.0 / max(w - 1, 1)) - 1, sy * (2.0 / max(h - 1, 1)) - 1], -1)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode=padding, align_corners=True)


@AUGMENTS.register("blur")
class Blur(Augment):
    """Gaussian blur with sigma drawn from `sigma` px (torchvision GaussianBlur's default range)."""

    @dataclass
    class Options:
        name: str = "blur"
        p: float = 0.2
        sigma: list[float] = field(default_factory=lambda: [0.1, 2.0])

    @classmethod
    def check(cls, o, where):
        _pair(o.sigma, where, 0.0, "sigma")

    def apply(self, x, draw):
        lo, hi = self.options.sigma
        return gaussian_blur(x, draw.uniform(lo, hi), max_sigma=hi)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> HSV in [0, 1] (hue as a fraction of the circle)."""
    r, g, b = x.unbind(1)
    maxc, minc = x.max(1).values, x.min(1).values
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    d = delta.clamp_min(1e-12)
    h = torch.where(maxc == r, (g - b) / d, torch.where(maxc == g, 2.0 + (b - r) / d, 4.0 + (r - g) / d))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, maxc], 1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) HSV in [0, 1] -> RGB: c = v - v s clamp(min(k, 4 - k), 0, 1), k = (n + 6 h) mod 6, n = 5, 3, 1."""
    h, s, v = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = (n + 6.0 * h) % 6.0
    return v - v * s * torch.minimum(k, 4.0 - k).clamp(0, 1)


@AUGMENTS.register("hsv")
class HSV(Augment):
    """HSV jitter: hue shifted by up to +-`hue` of the circle, saturation and value scaled by 1 +- `saturation` /
    `value`."""

    @dataclass
    class Options:
        name: str = "hsv"
        p: float = 0.2
        hue: float = 0.05
        saturation: float = 0.3
        value: float = 0.3

    @classmethod
    def check(cls, o, where):
        if not (0 <= o.hue <= 0.5 and 0 <= o.saturation <= 1 and 0 <= o.value <= 1):
            raise ConfigError(f"{where}: hue must be in [0, 0.5], saturation and value in [0, 1]")

    def apply(self, x, draw):
        o = self.options
        dh = draw.uniform(-o.hue, o.hue).view(-1, 1, 1)
        ds = draw.uniform(1 - o.saturation, 1 + o.saturation).view(-1, 1, 1)
        dv = draw.uniform(1 - o.value, 1 + o.value).view(-1, 1, 1)
        hsv = rgb_to_hsv((x / 255.0).clamp(0, 1))
        hsv = torch.stack([(hsv[:, 0] + dh) % 1.0, (hsv[:, 1] * ds).clamp(0, 1), (hsv[:, 2] * dv).clamp(0, 1)], 1)
        return hsv_to_rgb(hsv) * 255.0


@AUGMENTS.register("grayscale")
class Grayscale(Augment):
    """Grayscale: every channel set to the luma 0.299 R + 0.587 G + 0.114 B."""

    @dataclass
    class Options:
        name: str = "grayscale"
        p: float = 0.1

    def apply(self, x, draw):
        return luma(x).repeat(1, 3, 1, 1)

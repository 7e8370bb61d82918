"""RandAugment (Cubuk et al., NeurIPS 2020) on the device: per sample, `num_ops` ops drawn uniformly from OPS, each
at `magnitude` of `bins` - 1, with a random sign where the op has one (torchvision's op list and magnitude tables).

At magnitude m of 30 (bins 31): shear 0.3 m/30; translate 150/331 of the side x m/30; rotate 30 m/30 degrees;
brightness, colour, contrast, sharpness factor 1 +- 0.9 m/30; posterize to 8 - round(m / 7.5) bits; solarize
above 255 (1 - m/30); autocontrast, equalize and identity take none. Enhancements follow Pillow's ImageEnhance:
blend with black (brightness), the grey image (colour), the mean grey (contrast), the 3x3 smoothed image
(sharpness); geometric ops turn and shear about the centre, zero border. Each sample's op is drawn on the CPU, so
each op runs on its own samples only (no device sync).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .base import AUGMENTS, Augment, Draws, apply_to, to_device
from .filters import luma
from .geometric import affine, rotation_about


def _centre(x: torch.Tensor) -> tuple[float, float]:
    return (x.shape[3] - 1) / 2, (x.shape[2] - 1) / 2


def _blend(a: torch.Tensor, b: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """b + f (a - b): f > 1 enhances a away from b (Pillow's ImageEnhance)."""
    return (b + f.view(-1, 1, 1, 1) * (a - b)).clamp(0, 255)


def _shear(x, mag, axis: int):
    b, _, h, w = x.shape
    m = torch.zeros(b, 2, 3, device=x.device)
    m[:, 0, 0] = m[:, 1, 1] = 1.0
    c = ((w - 1) / 2, (h - 1) / 2)
    if axis == 0:  # x' = x + k (y - cy): source x = x - k (y - cy)
        m[:, 0, 1], m[:, 0, 2] = -mag, mag * c[1]
    else:
        m[:, 1, 0], m[:, 1, 2] = -mag, mag * c[0]
    return affine(x, m)


def _translate(x, px, axis: int):
    b = x.shape[0]
    m = torch.zeros(b, 2, 3, device=x.device)
    m[:, 0, 0] = m[:, 1, 1] = 1.0
    m[:, axis, 2] = -px
    return affine(x, m)


def _sharpness(x, f):
    k = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], device=x.device, dtype=x.dtype) / 13.0
    c = x.shape[1]
    smooth = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k.view(1, 1, 3, 3).repeat(c, 1, 1, 1), groups=c)
    return _blend(x, smooth, f)


def _autocontrast(x, _f=None):
    lo = x.amin((2, 3), keepdim=True)
    hi = x.amax((2, 3), keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (x - lo) * (255.0 / span.clamp_min(1e-6)), x)


def _equalize(x, _f=None):
    """Pillow's ImageOps.equalize per channel: lut[i] = (cumsum before i + step // 2) // step, step = (n - count of
    the last non-empty bin) // 255; identity where step is 0."""
    b, c, h, w = x.shape
    v = x.round().clamp(0, 255).long().view(b * c, h * w)
    hist = torch.zeros(b * c, 256, device=x.device, dtype=torch.long).scatter_add_(1, v, torch.ones_like(v))
    idx = torch.arange(256, device=x.device)
    last = torch.where(hist > 0, idx, torch.zeros_like(idx)).amax(1, keepdim=True)
    step = (h * w - hist.gather(1, last)) // 255
    before = hist.cumsum(1) - hist
    lut = (before + step // 2) // step.clamp_min(1)
    lut = torch.where(step > 0, lut.clamp(0, 255), idx.expand_as(lut))
    return lut.gather(1, v).view(b, c, h, w).to(x.dtype)


def _posterize(x, bits):
    q = (2.0 ** (8 - bits)).view(-1, 1, 1, 1)
    return torch.floor(x.round().clamp(0, 255) / q) * q


def _solarize(x, threshold):
    return torch.where(x >= threshold.view(-1, 1, 1, 1), 255.0 - x, x)


# name -> (op(x, value), magnitude at m/(bins-1) = 1, signed)
OPS = {
    "identity": (lambda x, v: x, 0.0, False),
    "shear_x": (lambda x, v: _shear(x, v, 0), 0.3, True),
    "shear_y": (lambda x, v: _shear(x, v, 1), 0.3, True),
    "translate_x": (lambda x, v: _translate(x, v * x.shape[3], 0), 150.0 / 331.0, True),
    "translate_y": (lambda x, v: _translate(x, v * x.shape[2], 1), 150.0 / 331.0, True),
    "rotate": (lambda x, v: affine(x, rotation_about(v * math.pi / 180, *_centre(x))), 30.0, True),
    "brightness": (lambda x, v: _blend(x, torch.zeros_like(x), 1 + v), 0.9, True),
    "color": (lambda x, v: _blend(x, luma(x).expand_as(x), 1 + v), 0.9, True),
    "contrast": (lambda x, v: _blend(x, luma(x).mean((2, 3), keepdim=True).expand_as(x), 1 + v), 0.9, True),
    "sharpness": (lambda x, v: _sharpness(x, 1 + v), 0.9, True),
    "posterize": (_posterize, None, False),
    "solarize": (_solarize, None, False),
    "autocontrast": (_autocontrast, 0.0, False),
    "equalize": (_equalize, 0.0, False),
}


@AUGMENTS.register("randaugment")
class RandAugment(Augment):
    """`num_ops` random ops per sample at a fixed `magnitude` (of bins - 1), torchvision's list (module doc)."""

    @dataclass
    class Options:
        name: str = "randaugment"
        p: float = 1.0
        num_ops: int = 2
        magnitude: int = 9
        bins: int = 31

    @classmethod
    def check(cls, o, where):
        if o.num_ops < 1 or o.bins < 2 or not 0 <= o.magnitude < o.bins:
            raise ConfigError(f"{where}: need num_ops >= 1, bins >= 2 and 0 <= magnitude < bins")

    def apply(self, x: torch.Tensor, draw: Draws) -> torch.Tensor:
        o = self.options
        t = o.magnitude / (o.bins - 1)
        names = list(OPS)
        for _ in range(o.num_ops):
            choice = draw.integers(0, len(names), cpu=True)  # host-side: each op runs on its own samples
            sign = draw.sign()
            for k, name in enumerate(names):
                rows = (choice == k).nonzero().view(-1)
                if len(rows) == 0 or name == "identity":
                    continue
                fn, scale, signed = OPS[name]
                if name == "posterize":
                    value = torch.full((len(rows),), 8.0 - round(o.magnitude / ((o.bins - 1) / 4)), device=x.device)
                elif name == "solarize":
                    value = torch.full((len(rows),), 255.0 * (1 - t), device=x.device)
                else:
                    s = sign.index_select(0, to_device(rows, x.device)) if signed else 1.0
                    value = s * (scale * t) * torch.ones(len(rows), device=x.device)
                x = apply_to(x, rows, lambda sub, fn=fn, value=value: fn(sub, value))
        return x

"""Random erasing (Zhong et al., AAAI 2020) on the device: one rectangle per sample of area s H W, s in `scale`,
aspect ratio r = h / w log-uniform in `ratio` (h = sqrt(s H W r), w = sqrt(s H W / r), clamped to the image),
anywhere inside the image, filled with uniform noise ("random"), the image's mean colour ("mean") or 0 ("zero").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch

from ..errors import ConfigError
from .base import AUGMENTS, Augment, Draws


@AUGMENTS.register("erase")
class Erase(Augment):
    @dataclass
    class Options:
        name: str = "erase"
        p: float = 0.5
        scale: list[float] = field(default_factory=lambda: [0.02, 0.33])
        ratio: list[float] = field(default_factory=lambda: [0.3, 3.3])
        value: Literal["random", "mean", "zero"] = "random"

    @classmethod
    def check(cls, o, where):
        s, r = o.scale, o.ratio
        if len(s) != 2 or not 0 < s[0] <= s[1] <= 1 or len(r) != 2 or not 0 < r[0] <= r[1]:
            raise ConfigError(f"{where}: scale must be [a, b] with 0 < a <= b <= 1 and ratio [a, b] with 0 < a <= b")

    def apply(self, x: torch.Tensor, draw: Draws) -> torch.Tensor:
        _, _, h, w = x.shape
        o = self.options
        area = draw.uniform(o.scale[0], o.scale[1]) * (h * w)
        r = torch.exp(draw.uniform(math.log(o.ratio[0]), math.log(o.ratio[1])))
        eh = (area * r).sqrt().clamp(1, h)
        ew = (area / r).sqrt().clamp(1, w)
        top = draw.uniform(0, 1) * (h - eh)
        left = draw.uniform(0, 1) * (w - ew)
        ys = torch.arange(h, device=x.device, dtype=x.dtype).view(1, h, 1)
        xs = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, w)
        inside = (ys >= top.view(-1, 1, 1)) & (ys < (top + eh).view(-1, 1, 1))
        inside = (inside & (xs >= left.view(-1, 1, 1)) & (xs < (left + ew).view(-1, 1, 1))).unsqueeze(1)
        if o.value == "random":
            fill = torch.rand(x.shape, generator=draw.device_generator(), device=x.device, dtype=x.dtype) * 255.0
        elif o.value == "mean":
            fill = x.mean((2, 3), keepdim=True).expand_as(x)
        else:
            fill = torch.zeros_like(x)
        return torch.where(inside, fill, x)

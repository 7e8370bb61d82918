"""MobileFaceNet (Chen et al. 2018): depthwise-separable bottlenecks and a GDC (global depthwise conv) head.

Registered names:
- `mobilefacenet`: arcface_torch's "mbf" (blocks (1, 4, 6, 2), channel scale 2, 512-d, ~2.1M params); module
  names and shapes match arcface_torch's mobilefacenet.py, so its mbf state dicts load with strict=True.
- `mobilefacenet_original`: the paper's network (scale 1, 128-d, ~1.0M params).
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import ConfigError
from . import BACKBONES, as_hw, check_dropout, check_input, check_positive
from .iresnet import strided_size

# Inner (expanded) widths of the bottlenecks, fixed as in the paper / arcface_torch (not multiplied by scale).
STEM_DW_GROUPS = 64
EXPANSIONS = {"stage1": 128, "down2": 128, "stage2": 128, "down3": 256, "stage3": 256, "down4": 512, "stage4": 256}


class ConvBlock(nn.Module):
    """conv (no bias) -> BN -> PReLU; submodules layers.0/1/2."""

    def __init__(self, c_in: int, c_out: int, kernel=1, stride=1, padding=0, groups: int = 1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
            nn.PReLU(c_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class LinearBlock(nn.Module):
    """conv (no bias) -> BN, no activation (the "linear bottleneck" projection); submodules layers.0/1."""

    def __init__(self, c_in: int, c_out: int, kernel=1, stride=1, padding=0, groups: int = 1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DepthWise(nn.Module):
    """Inverted bottleneck: 1x1 expand to `inner` -> 3x3 depthwise (stride) -> 1x1 linear project; + x if residual."""

    def __init__(self, c_in: int, c_out: int, inner: int, stride: int = 1, residual: bool = False):
        super().__init__()
        if residual and (stride != 1 or c_in != c_out):
            raise ValueError("a residual DepthWise block needs stride 1 and c_in == c_out")
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBlock(c_in, inner),
            ConvBlock(inner, inner, kernel=3, stride=stride, padding=1, groups=inner),
            LinearBlock(inner, c_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        return out + x if self.residual else out


class Residual(nn.Module):
    """`n` stride-1 residual DepthWise blocks of width `channels`; submodules layers.0..n-1."""

    def __init__(self, channels: int, n: int, inner: int):
        super().__init__()
        self.layers = nn.Sequential(*[DepthWise(channels, channels, inner, residual=True) for _ in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class GDC(nn.Module):
    """Global depthwise conv over the whole (h, w) map -> flatten -> dropout -> Linear (no bias) -> BN1d.

    Submodules layers.0 (LinearBlock), layers.1 (Flatten), layers.2 (Linear), layers.3 (BatchNorm1d), as in
    arcface_torch; dropout sits outside `layers` so it does not shift those indices.
    """

    def __init__(self, channels: int, map_hw: tuple[int, int], embedding_size: int, dropout: float = 0.0):
        super().__init__()
        self.layers = nn.Sequential(
            LinearBlock(channels, channels, kernel=map_hw, groups=channels),
            nn.Flatten(1),
            nn.Linear(channels, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size),
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.layers[1](self.layers[0](x)))
        return self.layers[3](self.layers[2](x))


class MobileFaceNet(nn.Module):
    """Stem conv3x3 s2 -> dw conv (or residual stage) -> 3 x (stride-2 bottleneck, residual stage) -> conv1x1 512
    -> GDC head. Channels 64*scale (stages 1-2) and 128*scale (stages 3-4); four stride-2 steps, so the GDC kernel
    is the final map, 7x7 at 112x112. Input (B, 3, H, W) normalised; output (B, embedding_size).
    """

    def __init__(
        self,
        blocks=(1, 4, 6, 2),
        scale: int = 2,
        embedding_size: int = 512,
        input_size=112,
        dropout: float = 0.0,
        head_channels: int = 512,
    ):
        super().__init__()
        check_positive(embedding_size=embedding_size, scale=scale, head_channels=head_channels)
        if not (isinstance(blocks, (tuple, list)) and len(blocks) == 4 and all(int(n) >= 1 for n in blocks)):
            raise ConfigError(f"MobileFaceNet blocks must be 4 counts >= 1, got {blocks!r}.")
        self.embedding_size = embedding_size
        self.input_size = as_hw(input_size)
        c1, c2 = 64 * scale, 128 * scale
        e = EXPANSIONS
        if blocks[0] == 1:
            first = ConvBlock(c1, c1, kernel=3, padding=1, groups=STEM_DW_GROUPS)
        else:
            first = Residual(c1, blocks[0], e["stage1"])
        self.layers = nn.ModuleList(
            [
                ConvBlock(3, c1, kernel=3, stride=2, padding=1),
                first,
                DepthWise(c1, c1, e["down2"], stride=2),
                Residual(c1, blocks[1], e["stage2"]),
                DepthWise(c1, c2, e["down3"], stride=2),
                Residual(c2, blocks[2], e["stage3"]),
                DepthWise(c2, c2, e["down4"], stride=2),
                Residual(c2, blocks[3], e["stage4"]),
            ]
        )
        self.conv_sep = ConvBlock(c2, head_channels)
        h, w = self.input_size
        for _ in range(4):
            h, w = strided_size(h), strided_size(w)
        self.features = GDC(head_channels, (h, w), embedding_size, check_dropout(dropout))
        self._init_weights()

    def _init_weights(self) -> None:
        """As arcface_torch mbf: conv and Linear weights Kaiming-normal (fan_out, ReLU gain); BN2d scale 1, shift 0."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_size, "MobileFaceNet")
        for layer in self.layers:
            x = layer(x)
        return self.features(self.conv_sep(x))


BACKBONES.register("mobilefacenet", blocks=(1, 4, 6, 2), scale=2, embedding_size=512)(MobileFaceNet)
BACKBONES.register("mobilefacenet_original", blocks=(1, 4, 6, 2), scale=1, embedding_size=128)(MobileFaceNet)

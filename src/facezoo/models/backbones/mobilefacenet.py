"""MobileFaceNet (Chen et al. 2018): depthwise-separable bottlenecks and a GDC (global depthwise conv) head.

Registered names:
- `mobilefacenet`: arcface_torch's "mbf" (blocks (1, 4, 6, 2), channel scale 2, 512-d, ~2.1M params); module
  names and shapes match arcface_torch's mobilefacenet.py, so its mbf state dicts load with strict=True.
- `mobilefacenet_large`: arcface_torch's "mbf_large" (blocks (2, 8, 12, 4), channel scale 4, 512-d).
- `mobilefacenet_original`: the paper's network (scale 1, 128-d, ~1.0M params).
"""

from __future__ import annotations

import torch
from torch import nn

from . import BACKBONES, as_hw, check_dropout, check_input, check_layers, check_positive
from .layers import GDC, ConvBlock, LinearBlock, halved, init_kaiming

# Inner (expanded) widths of the bottlenecks, fixed as in the paper / arcface_torch (not multiplied by scale).
STEM_DW_GROUPS = 64
EXPANSIONS = {"stage1": 128, "down2": 128, "stage2": 128, "down3": 256, "stage3": 256, "down4": 512, "stage4": 256}


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
        blocks = check_layers("MobileFaceNet", blocks, key="blocks")
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
        self.features = GDC(head_channels, halved(self.input_size, 4), embedding_size, check_dropout(dropout))
        init_kaiming(self)  # as arcface_torch mbf: Kaiming-normal (fan_out) conv and Linear, BN 1 / 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_size, "MobileFaceNet")
        for layer in self.layers:
            x = layer(x)
        return self.features(self.conv_sep(x))


CHEN = "Chen et al., MobileFaceNets (CCBR 2018)"
ARCFACE = f"{CHEN}; arcface_torch backbones/mobilefacenet.py"
_TEST = {"input_size": 32, "scale": 1}

BACKBONES.register(
    "mobilefacenet",
    info={"reference": f"{ARCFACE} (mbf)", "test_kwargs": {**_TEST, "blocks": (1, 2, 2, 1)}},
    blocks=(1, 4, 6, 2),
    scale=2,
    embedding_size=512,
)(MobileFaceNet)
BACKBONES.register(
    "mobilefacenet_large",
    info={"reference": f"{ARCFACE} (mbf_large)", "test_kwargs": {**_TEST, "blocks": (2, 1, 1, 1)}},
    blocks=(2, 8, 12, 4),
    scale=4,
    embedding_size=512,
)(MobileFaceNet)
BACKBONES.register(
    "mobilefacenet_original",
    info={"reference": CHEN, "test_kwargs": {**_TEST, "blocks": (1, 1, 1, 1)}},
    blocks=(1, 4, 6, 2),
    scale=1,
    embedding_size=128,
)(MobileFaceNet)

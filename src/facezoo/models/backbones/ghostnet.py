"""GhostNet (Han et al., CVPR 2020) for 112x112 faces as TFace builds it (torchkit/backbone/model_ghostnet.py).

The paper's stage table at width 1.3, with the face changes: a stride-1 stem (four stride-2 stages give 7x7),
PReLU in the stem and in the ghost modules, a 1x1 conv to make_divisible(512 * width, 4) channels (664 at 1.3)
and the GDC head (BN1d without affine). Ghost module: a 1x1 conv makes ceil(c / 2) channels, a 3x3 depthwise conv
derives as many again from them, the two are concatenated and cut to c.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import BACKBONES, as_hw, check_dropout, check_input, check_multiplier, check_positive
from .layers import GDC, conv_bn, halved, init_kaiming, make_divisible

# (kernel, expansion channels, output channels, SE ratio, stride) per bottleneck; GhostNet paper table 1
STAGES = (
    (3, 16, 16, 0.0, 1),
    (3, 48, 24, 0.0, 2),
    (3, 72, 24, 0.0, 1),
    (5, 72, 40, 0.25, 2),
    (5, 120, 40, 0.25, 1),
    (3, 240, 80, 0.0, 2),
    (3, 200, 80, 0.0, 1),
    (3, 184, 80, 0.0, 1),
    (3, 184, 80, 0.0, 1),
    (3, 480, 112, 0.25, 1),
    (3, 672, 112, 0.25, 1),
    (5, 672, 160, 0.25, 2),
    (5, 960, 160, 0.0, 1),
    (5, 960, 160, 0.25, 1),
    (5, 960, 160, 0.0, 1),
    (5, 512, 160, 0.25, 1),  # TFace's last expansion is 512 (the paper's 960); it also sets the head width
)
STEM_CHANNELS = 16


def divisible4(v: float) -> int:
    return make_divisible(v, 4)


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """relu6(x + 3) / 6."""
    return F.relu6(x + 3.0) / 6.0


class GhostSE(nn.Module):
    """x * hard_sigmoid(W2 relu(W1 avgpool(x) + b1) + b2), hidden = make_divisible(C * ratio, 4)."""

    def __init__(self, channels: int, ratio: float):
        super().__init__()
        hidden = divisible4(channels * ratio)
        self.conv_reduce = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.conv_expand(self.act(self.conv_reduce(x.mean(dim=(2, 3), keepdim=True))))
        return x * hard_sigmoid(w)


class GhostModule(nn.Module):
    """cat(y, dw3x3(y))[:, :c_out] with y = 1x1 conv to ceil(c_out / 2) channels; BN (+ PReLU if act) after each."""

    def __init__(self, c_in: int, c_out: int, act: bool = True):
        super().__init__()
        self.c_out = c_out
        primary = math.ceil(c_out / 2)
        self.primary_conv = conv_bn(c_in, primary, 1, act="prelu" if act else None)
        self.cheap_operation = conv_bn(primary, primary, 3, groups=primary, act="prelu" if act else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.primary_conv(x)
        return torch.cat([y, self.cheap_operation(y)], dim=1)[:, : self.c_out]


class GhostBottleneck(nn.Module):
    """ghost(c_in -> mid, PReLU) -> [kxk depthwise stride 2 -> BN] -> [SE] -> ghost(mid -> c_out, linear) + shortcut.

    Shortcut: identity when shape is kept, else kxk depthwise (stride) -> BN -> 1x1 -> BN.
    """

    def __init__(self, c_in: int, mid: int, c_out: int, kernel: int, stride: int, se_ratio: float):
        super().__init__()
        self.ghost1 = GhostModule(c_in, mid, act=True)
        self.conv_dw = conv_bn(mid, mid, kernel, stride=stride, groups=mid) if stride > 1 else None
        self.se = GhostSE(mid, se_ratio) if se_ratio > 0 else None
        self.ghost2 = GhostModule(mid, c_out, act=False)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                *conv_bn(c_in, c_in, kernel, stride=stride, groups=c_in),
                *conv_bn(c_in, c_out, 1),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ghost1(x)
        if self.conv_dw is not None:
            out = self.conv_dw(out)
        if self.se is not None:
            out = self.se(out)
        out = self.ghost2(out)
        return out + (x if self.shortcut is None else self.shortcut(x))


class GhostNet(nn.Module):
    """Stem conv3x3 s1 -> BN -> PReLU -> 16 ghost bottlenecks -> 1x1 conv-BN-PReLU -> GDC; (B, 3, H, W) -> (B, D)."""

    def __init__(self, width: float = 1.3, embedding_size: int = 512, input_size=112, dropout: float = 0.0):
        super().__init__()
        check_positive(embedding_size=embedding_size)
        check_multiplier("GhostNet", width=width)
        self.embedding_size = embedding_size
        self.input_size = as_hw(input_size)
        c_in = divisible4(STEM_CHANNELS * width)
        self.stem = conv_bn(3, c_in, 3, act="prelu")
        blocks = []
        for kernel, expansion, channels, se_ratio, stride in STAGES:
            c_out = divisible4(channels * width)
            blocks.append(GhostBottleneck(c_in, divisible4(expansion * width), c_out, kernel, stride, se_ratio))
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        head = divisible4(STAGES[-1][1] * width)
        self.head = conv_bn(c_in, head, 1, act="prelu")
        self.features = GDC(head, halved(self.input_size, 4), embedding_size, check_dropout(dropout), affine=False)
        init_kaiming(self)  # TFace: Kaiming-normal (fan_out) convs and Linear, zero biases

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_size, "GhostNet")
        return self.features(self.head(self.blocks(self.stem(x))))


BACKBONES.register(
    "ghostnet",
    info={
        "reference": "Han et al., GhostNet (CVPR 2020); TFace torchkit/backbone/model_ghostnet.py (x1.3)",
        "test_kwargs": {"width": 0.25, "input_size": 32},
    },
    width=1.3,
)(GhostNet)

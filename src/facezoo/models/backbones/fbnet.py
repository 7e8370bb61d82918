"""FBNet-A/B/C (Wu et al., CVPR 2019) for 112x112 faces as TFace builds them (torchkit/backbone/fbnets).

22 searched blocks per model (the architectures of fbnet_modeldef.json), a stride-1 stem at 112 (four stride-2
blocks give 7x7), and TFace's builder choices: depthwise convs without BN or ReLU after them, widths rounded up to
multiples of 8, and the face output BN2d -> dropout -> flatten -> Linear -> BN1d (no affine).

Block codes: "skip" (identity, or conv1x1-BN-ReLU when the shape changes), "kKeE" (inverted residual, kernel K,
expansion E), "kKs2" (kernel K, expansion 1, 1x1 convs in 2 groups with a channel shuffle).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ...errors import ConfigError
from . import BACKBONES, as_hw, check_dropout, check_input, check_multiplier, check_positive
from .layers import FlatHead, conv_bn, halved, init_kaiming

CHANNELS = (16, 24, 24, 24, 24, 32, 32, 32, 32, 64, 64, 64, 64, 112, 112, 112, 112, 184, 184, 184, 184, 352)
STRIDES = (1, 2, 1, 1, 1, 2, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1)
ARCHS = {
    "fbnet_a": "skip k3e3 k3e1 skip skip k5e6 k3e3 k5e1 k3e3 k5e6 k5e3 k5s2 k5e6 k3e6 k5s2 k5e1 k3s2 k5e6 k5e6 k5e3 "
    "k5e6 k5e6",
    "fbnet_b": "k3e1 k3e6 k5e1 k3e1 k3e1 k5e6 k5e3 k3e6 k5e6 k5e6 k5e1 skip k5e3 k5e6 k3e1 k5e1 k5e3 k5e6 k5e1 k5e6 "
    "k5e6 k3e6",
    "fbnet_c": "k3e1 k3e6 skip k3e1 k3e1 k5e6 k5e3 k5e6 k3e6 k5e6 k5e3 k5e6 k5e6 k5e6 k5e6 k5e6 k5e3 k5e6 k5e6 k5e6 "
    "k5e6 k3e6",
}
STEM_CHANNELS = 16


def round_up8(c: float) -> int:
    """max(8, ceil(int(c) / 8) * 8): TFace's make_divisible for FBNet widths."""
    return max(8, math.ceil(int(c) / 8) * 8)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, g * n, H, W) -> view (B, g, n, H, W) -> swap g and n -> (B, n * g, H, W)."""
    b, c, h, w = x.shape
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class Skip(nn.Module):
    """Identity, or conv1x1 (stride) -> BN -> ReLU when the channels or the stride change."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv = conv_bn(c_in, c_out, stride=stride, act="relu") if stride != 1 or c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.conv is None else self.conv(x)


class IRFBlock(nn.Module):
    """[1x1 (groups) -> BN -> ReLU] -> [shuffle] -> kxk depthwise (stride; bare conv) -> 1x1 (groups) -> BN [+ x].

    Middle width round_up8(c_in * expansion); the expansion conv is left out when that equals c_in.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, expansion: int, stride: int, groups: int = 1):
        super().__init__()
        mid = round_up8(c_in * expansion)
        self.groups = groups
        self.pw = conv_bn(c_in, mid, groups=groups, act="relu") if mid != c_in else None
        self.dw = nn.Conv2d(mid, mid, kernel, stride=stride, padding=kernel // 2, groups=mid, bias=False)
        self.pwl = conv_bn(mid, c_out, groups=groups)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.pw is None else self.pw(x)
        if self.groups > 1:
            y = channel_shuffle(y, self.groups)
        y = self.pwl(self.dw(y))
        return y + x if self.residual else y


def make_block(code: str, c_in: int, c_out: int, stride: int) -> nn.Module:
    if code == "skip":
        return Skip(c_in, c_out, stride)
    kernel, kind, n = int(code[1]), code[2], int(code[3])
    if kind == "s":  # shuffle block: expansion 1, n groups
        return IRFBlock(c_in, c_out, kernel, 1, stride, groups=n)
    return IRFBlock(c_in, c_out, kernel, n, stride)


class FBNet(nn.Module):
    """Stem conv3x3 s1 -> BN -> ReLU -> 22 searched blocks -> FlatHead; (B, 3, H, W) -> (B, embedding_size).

    arch: one of ARCHS; width: channel multiplier (TFace uses 1.0).
    """

    def __init__(
        self, arch: str = "fbnet_a", width: float = 1.0, embedding_size: int = 512, input_size=112, dropout=0.0
    ):
        super().__init__()
        check_positive(embedding_size=embedding_size)
        if arch not in ARCHS:
            raise ConfigError(f"FBNet arch '{arch}' is unknown; use one of {', '.join(ARCHS)}.")
        check_multiplier("FBNet", width=width)
        self.embedding_size = embedding_size
        self.input_size = as_hw(input_size)
        c_in = round_up8(STEM_CHANNELS * width)
        self.first = conv_bn(3, c_in, 3, act="relu")
        blocks = []
        for code, channels, stride in zip(ARCHS[arch].split(), CHANNELS, STRIDES):
            c_out = round_up8(channels * width)
            blocks.append(make_block(code, c_in, c_out, stride))
            c_in = c_out
        self.stages = nn.Sequential(*blocks)
        self.output_layer = FlatHead(
            c_in, halved(self.input_size, 4), embedding_size, check_dropout(dropout), affine=False
        )
        init_kaiming(self)  # TFace: Kaiming-normal (fan_out) convs and Linear, zero biases, BN 1 / 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_size, "FBNet")
        return self.output_layer(self.stages(self.first(x)))


for _arch in ARCHS:
    BACKBONES.register(
        _arch,
        info={
            "reference": "Wu et al., FBNet (CVPR 2019); TFace torchkit/backbone/fbnets (fbnet_modeldef.json)",
            "test_kwargs": {"width": 0.25, "input_size": 32},
        },
        arch=_arch,
    )(FBNet)

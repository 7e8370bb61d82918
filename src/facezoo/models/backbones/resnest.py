"""ResNeSt-50 (Zhang et al., 2020) for 112x112 faces as FaceX-Zoo builds it (backbone/resnest).

Split-attention bottlenecks (radix 2, cardinality 1, bottleneck width 64) with ResNet-D tricks (average-pool
downsampling in the shortcut, the 3x3 average pool "avd" after the split-attention conv in strided blocks), no
ImageNet stem: a conv3x3 s1 -> BN -> PReLU face stem and a stride-2 first stage give four stride-2 steps (7x7 at
112), then BN2d -> dropout -> flatten -> Linear(2048 x 7 x 7 -> D) -> BN1d. FaceX-Zoo L2-normalises the output;
here it stays raw, as every facezoo backbone (the heads normalise).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import BACKBONES, as_hw, check_dropout, check_input, check_layers, check_multiplier, check_positive
from .layers import FlatHead, halved

EXPANSION = 4
PLANES = (64, 128, 256, 512)
DEPTHS = {50: (3, 4, 6, 3)}


class SplitAttention(nn.Module):
    """Split-attention conv: u = relu(BN(grouped kxk conv to radix x C)), split into radix parts u_r;
    a_r = softmax_r(fc2(relu(BN(fc1(avgpool(sum_r u_r)))))) per channel; out = sum_r a_r * u_r.

    fc1: C -> max(C * radix / 4, 32) and fc2: -> radix x C, 1x1 convs with bias.
    """

    def __init__(self, c_in: int, channels: int, radix: int = 2, stride: int = 1, reduction: int = 4):
        super().__init__()
        self.radix = radix
        inter = max(c_in * radix // reduction, 32)
        self.conv = nn.Conv2d(c_in, channels * radix, 3, stride=stride, padding=1, groups=radix, bias=False)
        self.bn0 = nn.BatchNorm2d(channels * radix)
        self.relu = nn.ReLU(inplace=True)
        self.fc1 = nn.Conv2d(channels, inter, 1)
        self.bn1 = nn.BatchNorm2d(inter)
        self.fc2 = nn.Conv2d(inter, channels * radix, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.relu(self.bn0(self.conv(x)))
        b, rc, h, w = u.shape
        splits = u.reshape(b, self.radix, rc // self.radix, h, w)
        gap = splits.sum(dim=1).mean(dim=(2, 3), keepdim=True)
        att = self.fc2(self.relu(self.bn1(self.fc1(gap))))  # (B, radix * C, 1, 1), radix-major
        att = F.softmax(att.reshape(b, self.radix, rc // self.radix), dim=1)
        return (splits * att[..., None, None]).sum(dim=1)


class Bottleneck(nn.Module):
    """relu(BN(conv1x1(avd(SplitAttention(relu(BN(conv1x1(x))))))) + shortcut(x)); 4 x planes channels out.

    Strided blocks put the stride in a 3x3 average pool after the split-attention conv (avd); the shortcut is
    avgpool(stride, ceil) -> conv1x1 -> BN (ResNet-D) when the shape changes.
    """

    def __init__(self, c_in: int, planes: int, stride: int = 1, radix: int = 2):
        super().__init__()
        c_out = planes * EXPANSION
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = SplitAttention(planes, planes, radix)
        self.avd_layer = nn.AvgPool2d(3, stride, padding=1) if stride > 1 else None
        self.conv3 = nn.Conv2d(planes, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            pool = [nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)] if stride > 1 else []
            self.downsample = nn.Sequential(*pool, nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.relu(self.bn1(self.conv1(x))))
        if self.avd_layer is not None:
            out = self.avd_layer(out)
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNeSt(nn.Module):
    """Face stem -> four split-attention stages, each starting with stride 2 -> FlatHead; (B, 3, H, W) -> (B, D).

    width: multiplier of every channel count (tests use 0.125); radix: splits per split-attention conv.
    """

    def __init__(
        self,
        layers=(3, 4, 6, 3),
        radix: int = 2,
        width: float = 1.0,
        embedding_size: int = 512,
        input_size=112,
        dropout: float = 0.0,
    ):
        super().__init__()
        check_positive(embedding_size=embedding_size, radix=radix)
        layers = check_layers("ResNeSt", layers)
        check_multiplier("ResNeSt", width=width)
        self.embedding_size = embedding_size
        self.input_size = as_hw(input_size)
        c_in = max(1, round(64 * width))
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, c_in, 3, padding=1, bias=False), nn.BatchNorm2d(c_in), nn.PReLU(c_in)
        )
        stages = []
        for planes, n in zip(PLANES, layers):
            planes = max(1, round(planes * width))
            blocks = [Bottleneck(c_in, planes, 2, radix)]
            blocks += [Bottleneck(planes * EXPANSION, planes, 1, radix) for _ in range(1, n)]
            stages.append(nn.Sequential(*blocks))
            c_in = planes * EXPANSION
        self.body = nn.Sequential(*stages)
        self.output_layer = FlatHead(c_in, halved(self.input_size, 4), embedding_size, check_dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_size, "ResNeSt")
        return self.output_layer(self.body(self.input_layer(x)))


BACKBONES.register(
    "resnest50",
    info={
        "reference": "Zhang et al., ResNeSt (CVPR-W 2022); FaceX-Zoo backbone/resnest",
        "test_kwargs": {"width": 0.125, "input_size": 32, "layers": (2, 1, 1, 1)},
    },
    layers=DEPTHS[50],
)(ResNeSt)

"""ReXNet-1.0 (Han et al., CVPR 2021) for 112x112 faces as FaceX-Zoo builds it (backbone/ReXNets.py).

16 inverted bottlenecks whose widths grow linearly from 16 by 180 / 16 per block (the "expand every layer"
channel plan), a stride-1 stem (four stride-2 blocks give 7x7), a 1x1 conv to 512 channels with Swish, then
BN2d -> dropout -> flatten -> Linear(512 x 7 x 7 -> D) -> BN1d. FaceX-Zoo's recipe trains it without SE
(use_se: 0), the default here; use_se=True adds the paper's SE (ratio 12) to blocks 3-16.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import BACKBONES, as_hw, check_dropout, check_input, check_multiplier, check_positive
from .layers import FlatHead, conv_bn, halved

LAYERS = (1, 2, 2, 3, 3, 5)
STRIDES = (1, 2, 2, 2, 1, 2)
USE_SE = (False, False, True, True, True, True)
STEM_CHANNELS = 32
HEAD_CHANNELS = 512


class ReXSE(nn.Module):
    """x * sigmoid(W2 relu(BN(W1 avgpool(x) + b1)) + b2), hidden = C // ratio."""

    def __init__(self, channels: int, ratio: int = 12):
        super().__init__()
        hidden = max(1, channels // ratio)
        self.fc = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc(x.mean(dim=(2, 3), keepdim=True)))


class LinearBottleneck(nn.Module):
    """[1x1 expand x t -> BN -> Swish] -> 3x3 depthwise (stride) -> BN -> [SE] -> ReLU6 -> 1x1 -> BN.

    Partial shortcut (stride 1, c_in <= c_out): the input is added to the first c_in output channels only.
    """

    def __init__(self, c_in: int, c_out: int, t: int, stride: int, use_se: bool, se_ratio: int):
        super().__init__()
        self.c_in = c_in
        self.shortcut = stride == 1 and c_in <= c_out
        layers: list[nn.Module] = []
        mid = c_in * t
        if t != 1:
            layers += conv_bn(c_in, mid, act="silu")
        layers += conv_bn(mid, mid, 3, stride=stride, groups=mid)
        if use_se:
            layers.append(ReXSE(mid, se_ratio))
        layers += [nn.ReLU6(), *conv_bn(mid, c_out)]
        self.out = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.out(x)
        if not self.shortcut:
            return out
        return torch.cat([out[:, : self.c_in] + x, out[:, self.c_in :]], dim=1)


class ReXNet(nn.Module):
    """Stem conv3x3 s1 -> BN -> Swish -> 16 LinearBottlenecks -> conv1x1 512 -> BN -> Swish -> FlatHead.

    Input (B, 3, H, W) -> (B, embedding_size). width / depth: the paper's multipliers (ReXNet-1.0: both 1.0);
    input_ch / final_ch: first block width and total growth (16, 180).
    """

    def __init__(
        self,
        width: float = 1.0,
        depth: float = 1.0,
        input_ch: int = 16,
        final_ch: int = 180,
        use_se: bool = False,
        se_ratio: int = 12,
        embedding_size: int = 512,
        input_size=112,
        dropout: float = 0.0,
    ):
        super().__init__()
        check_positive(embedding_size=embedding_size, input_ch=input_ch, final_ch=final_ch, se_ratio=se_ratio)
        check_multiplier("ReXNet", width=width, depth=depth)
        self.embedding_size = embedding_size
        self.input_size = as_hw(input_size)
        layers = [math.ceil(n * depth) for n in LAYERS]
        strides = [s if j == 0 else 1 for s, n in zip(STRIDES, layers) for j in range(n)]
        ses = [se and use_se for se, n in zip(USE_SE, layers) for _ in range(n)]
        n_blocks = sum(layers)
        # below width 1.0 the paper divides the stem and input widths by the multiplier before scaling them
        stem = STEM_CHANNELS / width if width < 1.0 else STEM_CHANNELS
        planes = input_ch / width if width < 1.0 else input_ch
        c_in = round(stem * width)
        features: list[nn.Module] = [*conv_bn(3, c_in, 3, act="silu")]
        for i in range(n_blocks):
            if i > 0:
                c_in = round(planes * width)
                planes += final_ch / n_blocks
            c_out = round(planes * width)
            features.append(LinearBottleneck(c_in, c_out, 1 if i < layers[0] else 6, strides[i], ses[i], se_ratio))
            c_in = c_out
        head = int(HEAD_CHANNELS * width)
        features += conv_bn(c_in, head, act="silu")
        self.features = nn.Sequential(*features)
        self.output_layer = FlatHead(head, halved(self.input_size, 4), embedding_size, check_dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_size, "ReXNet")
        return self.output_layer(self.features(x))


BACKBONES.register(
    "rexnet_1_0",
    info={
        "reference": "Han et al., ReXNet (CVPR 2021); FaceX-Zoo backbone/ReXNets.py (use_se 0)",
        "test_kwargs": {"width": 0.25, "input_size": 32},
    },
)(ReXNet)

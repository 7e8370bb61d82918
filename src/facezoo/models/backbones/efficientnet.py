"""EfficientNet-B0/B1 adapted to 112x112 faces as TFace does it (torchkit/backbone/model_efficientnet.py).

Tan & Le 2019's B0 stage table, with the face changes: a stride-1 stem (so four stride-2 steps give 7x7 at 112),
PReLU instead of Swish everywhere, plain "same" padding, a 1x1 conv to 512 channels and the GDC head (global
depthwise conv -> Linear -> BN1d without affine) instead of pooling. B1 scales the depth by 1.1 (repeats rounded
up); both keep width 1.0 (TFace's input-size scaling is not used at 112).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import BACKBONES, as_hw, check_dropout, check_input, check_multiplier, check_positive
from .layers import GDC, ConvBlock, SqueezeExcite, conv_bn, halved
from .layers import make_divisible as round_channels

# (output channels, repeats, kernel, expansion, stride of the first repeat): EfficientNet-B0, Tan & Le 2019 table 1
B0_STAGES = (
    (16, 1, 3, 1, 1),
    (24, 2, 3, 6, 2),
    (40, 2, 5, 6, 2),
    (80, 3, 3, 6, 2),
    (112, 3, 5, 6, 1),
    (192, 4, 5, 6, 2),
    (320, 1, 3, 6, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 512
SE_RATIO = 4  # SE hidden width = block input channels // 4


class MBConv(nn.Module):
    """[1x1 expand -> BN -> PReLU] -> kxk depthwise (stride) -> BN -> PReLU -> SE -> 1x1 project -> BN [+ x].

    The expansion conv exists only when expansion > 1 (B0's first stage); the residual when stride is 1 and the
    width is kept. SE: hidden = c_in * expansion // (4 * expansion), i.e. c_in // 4, no biases.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, expansion: int, stride: int):
        super().__init__()
        mid = c_in * expansion
        self.expand = ConvBlock(c_in, mid) if expansion != 1 else None
        self.depthwise = ConvBlock(mid, mid, kernel, stride=stride, padding=kernel // 2, groups=mid)
        self.se = SqueezeExcite(mid, reduction=SE_RATIO * expansion)
        self.project = conv_bn(mid, c_out)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.expand is None else self.expand(x)
        out = self.project(self.se(self.depthwise(out)))
        return out + x if self.residual else out


class EfficientNet(nn.Module):
    """Stem conv3x3 s1 -> MBConv stages -> conv1x1 to 512 -> GDC. Input (B, 3, H, W) -> (B, embedding_size).

    depth: repeats multiplier (B1: 1.1); width: channel multiplier (channels rounded to multiples of 8; the
    512-channel head is scaled too, which only matters below 1.0, e.g. in tests).
    """

    def __init__(
        self,
        depth: float = 1.0,
        width: float = 1.0,
        embedding_size: int = 512,
        input_size=112,
        dropout: float = 0.0,
    ):
        super().__init__()
        check_positive(embedding_size=embedding_size)
        check_multiplier("EfficientNet", depth=depth, width=width)
        self.embedding_size = embedding_size
        self.input_size = as_hw(input_size)
        c_in = round_channels(STEM_CHANNELS * width)
        self.stem = ConvBlock(3, c_in, 3, padding=1)
        blocks = []
        for channels, repeats, kernel, expansion, stride in B0_STAGES:
            c_out = round_channels(channels * width)
            for j in range(math.ceil(repeats * depth)):
                blocks.append(MBConv(c_in, c_out, kernel, expansion, stride if j == 0 else 1))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        head = HEAD_CHANNELS if width == 1.0 else round_channels(HEAD_CHANNELS * width)
        self.head = ConvBlock(c_in, head)
        self.features = GDC(head, halved(self.input_size, 4), embedding_size, check_dropout(dropout), affine=False)
        for m in self.modules():  # TFace: Kaiming-uniform (fan_in, ReLU gain) convs; BN and Linear keep defaults
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_size, "EfficientNet")
        return self.features(self.head(self.blocks(self.stem(x))))


_REF = "Tan & Le, EfficientNet (ICML 2019); TFace torchkit/backbone/model_efficientnet.py"
_TEST = {"width": 0.25, "depth": 0.5, "input_size": 32}  # 10 blocks, residual ones among them
BACKBONES.register("efficientnet_b0", info={"reference": _REF, "test_kwargs": _TEST}, depth=1.0)(EfficientNet)
BACKBONES.register("efficientnet_b1", info={"reference": _REF, "test_kwargs": _TEST}, depth=1.1)(EfficientNet)

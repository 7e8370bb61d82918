"""TF-NAS-A (Hu et al., ECCV 2020) for 112x112 faces as FaceX-Zoo builds it (backbone/TF_NAS.py).

The searched architecture (mid, SE and output widths, kernels, activations per block), a stride-1 stem (four
stride-2 blocks give 7x7), a 1x1 conv to 1280 channels with BN and no activation, then
dropout -> flatten -> Linear(1280 x 7 x 7 -> D) -> BN1d.
"""

from __future__ import annotations

import torch
from torch import nn

from . import BACKBONES, as_hw, check_dropout, check_input, check_multiplier, check_positive
from .layers import ACTIVATIONS, FlatHead, conv_bn, halved

# (c_in, mid, se, c_out, kernel, stride, activation) per block, stage by stage (TF-NAS-A as searched;
# the paper's swish(x) = x * sigmoid(x) is SiLU)
STAGES = (
    ((32, 32, 8, 16, 3, 1, "relu"),),  # second stem
    ((16, 83, 32, 24, 3, 2, "relu"), (24, 128, 0, 24, 5, 1, "relu")),
    ((24, 138, 48, 40, 3, 2, "silu"), (40, 297, 0, 40, 3, 1, "silu"), (40, 170, 80, 40, 5, 1, "silu")),
    (
        (40, 248, 80, 80, 5, 2, "silu"),
        (80, 500, 0, 80, 3, 1, "silu"),
        (80, 424, 0, 80, 3, 1, "silu"),
        (80, 477, 0, 80, 3, 1, "silu"),
    ),
    (
        (80, 504, 160, 112, 3, 1, "silu"),
        (112, 796, 0, 112, 3, 1, "silu"),
        (112, 723, 224, 112, 3, 1, "silu"),
        (112, 555, 224, 112, 3, 1, "silu"),
    ),
    (
        (112, 813, 0, 192, 3, 2, "silu"),
        (192, 1370, 0, 192, 3, 1, "silu"),
        (192, 1138, 384, 192, 3, 1, "silu"),
        (192, 1359, 384, 192, 3, 1, "silu"),
    ),
    ((192, 1203, 384, 320, 5, 1, "silu"),),
)
STEM_CHANNELS = 32
MIX_CHANNELS = 1280


class MBInvertedResBlock(nn.Module):
    """[1x1 expand -> BN -> act] -> kxk depthwise (stride) -> BN -> act -> [SE] -> 1x1 -> BN [+ x].

    The expansion exists only when mid > c_in (else mid = c_in); SE: x * sigmoid(W2 act(W1 avgpool(x) + b1) + b2)
    with `se` hidden channels, off when se = 0.
    """

    def __init__(self, c_in: int, mid: int, se: int, c_out: int, kernel: int, stride: int, act: str):
        super().__init__()
        self.inverted_bottleneck = None
        if mid > c_in:
            self.inverted_bottleneck = conv_bn(c_in, mid, act=act)
        else:
            mid = c_in
        self.depth_conv = conv_bn(mid, mid, kernel, stride=stride, groups=mid, act=act)
        self.squeeze_excite = None
        if se > 0:
            self.squeeze_excite = nn.Sequential(nn.Conv2d(mid, se, 1), ACTIVATIONS[act](se), nn.Conv2d(se, mid, 1))
        self.point_linear = conv_bn(mid, c_out)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.inverted_bottleneck is None else self.inverted_bottleneck(x)
        y = self.depth_conv(y)
        if self.squeeze_excite is not None:
            y = y * torch.sigmoid(self.squeeze_excite(y.mean(dim=(2, 3), keepdim=True)))
        y = self.point_linear(y)
        return y + x if self.residual else y


class TFNAS(nn.Module):
    """conv3x3 s1 -> BN -> ReLU -> the searched blocks -> conv1x1 1280 -> BN -> FlatHead (no BN2d).

    Input (B, 3, H, W) -> (B, embedding_size). width: multiplier of every channel count (tests use 0.125).
    """

    def __init__(self, width: float = 1.0, embedding_size: int = 512, input_size=112, dropout: float = 0.0):
        super().__init__()
        check_positive(embedding_size=embedding_size)
        check_multiplier("TF-NAS", width=width)
        self.embedding_size = embedding_size
        self.input_size = as_hw(input_size)

        def scale(c: int) -> int:
            return max(1, round(c * width)) if c else 0

        self.first_stem = conv_bn(3, scale(STEM_CHANNELS), 3, act="relu")
        self.stages = nn.Sequential(
            *[nn.Sequential(*[MBInvertedResBlock(*map(scale, b[:4]), *b[4:]) for b in stage]) for stage in STAGES]
        )
        mix = scale(MIX_CHANNELS)
        self.feature_mix_layer = conv_bn(scale(320), mix)
        self.output_layer = FlatHead(
            mix, halved(self.input_size, 4), embedding_size, check_dropout(dropout), bn2d=False
        )
        for m in self.modules():  # FaceX-Zoo: PyTorch's default weights, zero biases, BN 1 / 0
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_size, "TF-NAS")
        return self.output_layer(self.feature_mix_layer(self.stages(self.first_stem(x))))


BACKBONES.register(
    "tf_nas_a",
    info={
        "reference": "Hu et al., TF-NAS (ECCV 2020); FaceX-Zoo backbone/TF_NAS.py",
        "test_kwargs": {"width": 0.125, "input_size": 32},
    },
)(TFNAS)

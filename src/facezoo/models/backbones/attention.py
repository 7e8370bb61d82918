"""Residual Attention Networks as FaceX-Zoo trains them: `attention56 attention92`.

Reference: Wang et al., "Residual Attention Network for Image Classification" (CVPR 2017); the face variant
follows FaceX-Zoo (JDAI-CV/FaceX-Zoo, backbone/AttentionNets.py): a 7x7 stride-2 stem (no max-pool, so 112x112
gives 56x56), pre-activation bottleneck units (BN-ReLU-1x1, BN-ReLU-3x3(stride), BN-ReLU-1x1, width/4 inside), three
stages of attention modules at 256 / 512 / 1024 channels (56, 28, 14 a side), three final units to 2048 channels
(7x7), and the head flatten -> Linear (no bias) -> BN1d. Attention-56 has (1, 1, 1) modules per stage,
Attention-92 (1, 2, 3).

An attention module: trunk T(x) (two units) and a soft mask from an hourglass over x: `depth` max-pools (3, 2, 1
in stages 1-3) with a unit after each (two at the bottom) and a skip unit at every level but the bottom; going up,
bilinear upsampling (align_corners) + the level's input + its skip, then a unit; finally M = sigmoid(conv1x1(
BN-ReLU(conv1x1(BN-ReLU(.))))); output = unit((1 + M) * T). Names follow FaceX-Zoo (first_residual_blocks,
trunk_branches, softmax{k}_blocks, skip{k}_connection_residual_block, last_blocks; units bn1..3, conv1..4).

| name        | params (ours) | FaceX-Zoo (THOP) | GFLOPs at 112 |
| attention56 | 81.14M        | 98.96M           | 12.46         |
| attention92 | 101.79M       | 134.56M          | 20.99         |
FaceX-Zoo's unit always creates the 1x1 projection shortcut `conv4` but uses it only when the shape changes; those
never-used convs (one per constant-width unit: 17.83M / 32.77M parameters) are left out here: they get no gradient,
which DistributedDataParallel rejects (without find_unused_parameters). Its state dicts load once the unused
`conv4` keys are dropped. FaceX-Zoo reports 6.34 / 10.62 GMACs.

Small sizes for tests: width (channel multiplier), stage_modules and input_size are keywords.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from . import BACKBONES, as_hw, check_dropout, check_input, check_positive
from .iresnet import strided_size

STEM, STAGES, FINAL = 64, (256, 512, 1024), 2048
HOURGLASS_DEPTHS = (3, 2, 1)  # max-pools in the soft-mask branch of the stage-1/2/3 modules


class ResidualUnit(nn.Module):
    """Pre-activation bottleneck: a = ReLU(BN(x)); out = 1x1(ReLU(BN(3x3_s(ReLU(BN(1x1(a))))))) + shortcut,
    shortcut = conv4(a) (1x1, stride) when the shape changes, else x."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        mid = max(1, c_out // 4)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(c_in, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, c_out, 1, bias=False)
        self.conv4 = nn.Conv2d(c_in, c_out, 1, stride, bias=False) if (c_in != c_out or stride != 1) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu(self.bn1(x))
        out = self.conv1(a)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + (x if self.conv4 is None else self.conv4(a))


def _units(c: int, n: int) -> nn.Module:
    return ResidualUnit(c, c) if n == 1 else nn.Sequential(*[ResidualUnit(c, c) for _ in range(n)])


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=True)


class AttentionModule(nn.Module):
    """unit((1 + M(x)) * T(x)) after a first unit; M is the hourglass soft mask with `depth` max-pools."""

    def __init__(self, channels: int, depth: int):
        super().__init__()
        self.depth = depth
        self.first_residual_blocks = ResidualUnit(channels, channels)
        self.trunk_branches = _units(channels, 2)
        for k in range(1, depth + 1):  # down: softmax1..depth (two units at the bottom), skips at all but it
            setattr(self, f"softmax{k}_blocks", _units(channels, 2 if k == depth else 1))
            if k < depth:
                setattr(self, f"skip{k}_connection_residual_block", ResidualUnit(channels, channels))
        for k in range(depth + 1, 2 * depth):  # up: one unit per level above the bottom
            setattr(self, f"softmax{k}_blocks", ResidualUnit(channels, channels))
        mask = nn.Sequential(
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.Sigmoid(),
        )
        setattr(self, f"softmax{2 * depth}_blocks", mask)
        self.last_blocks = ResidualUnit(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_residual_blocks(x)
        trunk = self.trunk_branches(x)
        levels, skips, y = [], [], x
        for k in range(1, self.depth + 1):
            y = getattr(self, f"softmax{k}_blocks")(F.max_pool2d(y, 3, 2, 1))
            if k < self.depth:
                levels.append(y)
                skips.append(getattr(self, f"skip{k}_connection_residual_block")(y))
        for k, (level, skip) in enumerate(zip(reversed(levels), reversed(skips)), start=self.depth + 1):
            y = getattr(self, f"softmax{k}_blocks")(_up(y, level) + level + skip)
        mask = getattr(self, f"softmax{2 * self.depth}_blocks")(_up(y, trunk) + trunk)
        return self.last_blocks((1 + mask) * trunk)


class ResidualAttentionNet(nn.Module):
    """Stem conv7x7 s2-BN-ReLU, unit -> stage-1 modules, unit s2 -> stage 2, unit s2 -> stage 3, three final units
    (the first s2), flatten -> dropout -> Linear (no bias) -> BN1d.

    Input (B, 3, H, W) normalised; output (B, embedding_size); the final map is H / 16 (ceil), 7x7 at 112x112.
    """

    def __init__(
        self,
        stage_modules=(1, 1, 1),
        width: float = 1.0,
        embedding_size: int = 512,
        input_size=112,
        dropout: float = 0.0,
    ):
        super().__init__()
        check_positive(embedding_size=embedding_size)
        if not (isinstance(stage_modules, (tuple, list)) and len(stage_modules) == 3):
            raise ConfigError(f"AttentionNet stage_modules must be 3 module counts, got {stage_modules!r}.")
        if not all(isinstance(n, int) and n >= 0 for n in stage_modules):
            raise ConfigError(f"AttentionNet stage_modules must be ints >= 0, got {stage_modules!r}.")
        if not isinstance(width, (int, float)) or width <= 0:
            raise ConfigError(f"AttentionNet width must be a positive multiplier (e.g. 1.0 or 0.25), got {width!r}.")
        self.embedding_size = embedding_size
        self.input_size = as_hw(input_size)
        stem, final = max(1, round(STEM * width)), max(4, round(FINAL * width))
        stages = [max(4, round(c * width)) for c in STAGES]
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True)
        )
        body, c_in = [], stem
        for i, (c, n, depth) in enumerate(zip(stages, stage_modules, HOURGLASS_DEPTHS)):
            body.append(ResidualUnit(c_in, c, 1 if i == 0 else 2))
            body += [AttentionModule(c, depth) for _ in range(n)]
            c_in = c
        body += [ResidualUnit(c_in, final, 2), ResidualUnit(final, final), ResidualUnit(final, final)]
        self.attention_body = nn.Sequential(*body)
        h, w = self.input_size
        for _ in range(4):  # stem and three stride-2 units
            h, w = strided_size(h), strided_size(w)
        self.dropout = nn.Dropout(check_dropout(dropout))
        self.output_layer = nn.Sequential(
            nn.Flatten(1), nn.Linear(final * h * w, embedding_size, bias=False), nn.BatchNorm1d(embedding_size)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_size, "ResidualAttentionNet")
        x = self.attention_body(self.conv1(x))
        head = self.output_layer
        return head[2](head[1](self.dropout(head[0](x))))


_INFO = {
    "reference": "Wang et al., Residual Attention Network (CVPR 2017); FaceX-Zoo backbone/AttentionNets.py",
    "test_kwargs": {"width": 0.125, "stage_modules": (0, 1, 0), "input_size": 32},
}
BACKBONES.register("attention56", info=_INFO, stage_modules=(1, 1, 1))(ResidualAttentionNet)
BACKBONES.register("attention92", info=_INFO, stage_modules=(1, 2, 3))(ResidualAttentionNet)

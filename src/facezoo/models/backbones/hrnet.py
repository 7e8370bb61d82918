"""HRNet-W18 for faces as FaceX-Zoo trains it: `hrnet_w18`.

Reference: Wang et al., "Deep High-Resolution Representation Learning for Visual Recognition" (TPAMI 2020), the
classification HRNet; the face variant follows FaceX-Zoo (JDAI-CV/FaceX-Zoo, backbone/HRNet.py and its
training_mode/backbone_conf.yaml, width 18): a stem of two 3x3 convs (the second stride 1, so 112x112 gives four
branches at 56, 28, 14, 7), stage 1 = four bottlenecks (64 -> 256), stages 2-4 = 1 / 4 / 3 multi-resolution modules
of four basic blocks per branch (W, 2W, 4W, 8W channels) with full fusion (stride-2 3x3 convs down, 1x1 conv + nearest
upsampling up); the classification head (bottlenecks to 128 / 256 / 512 / 1024 channels, stride-2 3x3 convs merging
high to low resolution, 1x1 conv to 2048), then flatten (2048 x 7 x 7) -> Linear (no bias) -> BN1d. Parameter
names and shapes are FaceX-Zoo's (conv1/bn1/conv2/bn2, layer1, transitionN, stageN.m.branches / fuse_layers,
incre_modules, downsamp_modules, final_layer, output_layer.1/.2).

Parameters: 70.63M (ours = FaceX-Zoo's published 70.63M, 51.4M of them in the final Linear); 8.63 GFLOPs at
112x112 (FaceX-Zoo: 4.35 GMACs).

Small sizes for tests: width, modules (per stage 2-4), blocks (per branch), head_width (a multiplier of the head's
channels) and input_size are keywords.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from . import BACKBONES, as_hw, check_dropout, check_input, check_positive
from .iresnet import strided_size

HEAD_CHANNELS = (32, 64, 128, 256)  # bottleneck widths of the classification head (x4 out)
FINAL_CHANNELS = 2048


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """conv (no bias, padding k // 2) -> BN [-> ReLU] as submodules 0, 1 [, 2]."""
    layers = [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(c_out)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


def projection(c_in: int, c_out: int, stride: int) -> nn.Sequential | None:
    """The 1x1 conv-BN shortcut when shape changes, else None."""
    return conv_bn(c_in, c_out, 1, stride, relu=False) if stride != 1 or c_in != c_out else None


class BasicBlock(nn.Module):
    """ReLU(BN(conv3x3(ReLU(BN(conv3x3_s(x))))) + shortcut(x))."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = projection(c_in, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    """ReLU(BN(1x1 up to 4P)(ReLU(BN(3x3_s(ReLU(BN(1x1 to P (x)))))))) + shortcut(x))."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = projection(c_in, planes * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def make_layer(block, c_in: int, planes: int, n: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        *[block(c_in if i == 0 else planes * block.expansion, planes, stride if i == 0 else 1) for i in range(n)]
    )


class HighResolutionModule(nn.Module):
    """Each branch runs `blocks` basic blocks; then output i = ReLU(sum_j f_ij(x_j)), f_ii = identity, f_ij for
    j > i = 1x1 conv-BN then nearest upsampling to x_i's size, f_ij for j < i = (i - j) stride-2 3x3 conv-BNs
    (ReLU between them), the last one to x_i's channels."""

    def __init__(self, channels: list[int], blocks: int):
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList(make_layer(BasicBlock, c, c, blocks) for c in channels)
        self.fuse_layers = None
        if n > 1:
            self.fuse_layers = nn.ModuleList()
            for i in range(n):
                row = []
                for j in range(n):
                    if j > i:
                        row.append(conv_bn(channels[j], channels[i], 1, relu=False))
                    elif j == i:
                        row.append(None)
                    else:
                        steps = [conv_bn(channels[j], channels[j], 3, 2) for _ in range(i - j - 1)]
                        row.append(nn.Sequential(*steps, conv_bn(channels[j], channels[i], 3, 2, relu=False)))
                self.fuse_layers.append(nn.ModuleList(row))
        self.relu = nn.ReLU()

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return xs
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[i]
            for j, f in enumerate(row):
                if j > i:
                    y = y + F.interpolate(f(xs[j]), size=xs[i].shape[-2:], mode="nearest")
                elif j < i:
                    y = y + f(xs[j])
            out.append(self.relu(y))
        return out


def transition(pre: list[int], cur: list[int]) -> nn.ModuleList:
    """Per new-stage branch: a 3x3 conv-BN-ReLU where the width changes (None where not); a new branch is a
    stride-2 3x3 conv-BN-ReLU chain from the lowest-resolution branch."""
    layers = []
    for i, c in enumerate(cur):
        if i < len(pre):
            layers.append(conv_bn(pre[i], c, 3) if pre[i] != c else None)
        else:
            steps = [conv_bn(pre[-1], c if k == i - len(pre) else pre[-1], 3, 2) for k in range(i + 1 - len(pre))]
            layers.append(nn.Sequential(*steps))
    return nn.ModuleList(layers)


class HighResolutionNet(nn.Module):
    """Input (B, 3, H, W) normalised -> (B, embedding_size); branch k runs at ceil(H / 2^(k+1)) (56..7 at 112)."""

    def __init__(
        self,
        width: int = 18,
        modules=(1, 4, 3),
        blocks: int = 4,
        head_width: float = 1.0,
        embedding_size: int = 512,
        input_size=112,
        dropout: float = 0.0,
    ):
        super().__init__()
        check_positive(width=width, blocks=blocks, embedding_size=embedding_size)
        if not (isinstance(modules, (tuple, list)) and len(modules) == 3 and all(int(n) >= 1 for n in modules)):
            raise ConfigError(f"HRNet modules must be 3 counts >= 1 (stages 2-4), got {modules!r}.")
        if not isinstance(head_width, (int, float)) or head_width <= 0:
            raise ConfigError(f"HRNet head_width must be a positive multiplier (e.g. 1.0 or 0.25), got {head_width!r}.")
        self.embedding_size = embedding_size
        self.input_size = as_hw(input_size)
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_layer(Bottleneck, 64, 64, blocks)
        pre = [64 * Bottleneck.expansion]
        for s, n in enumerate(modules, start=2):
            cur = [width * 2**k for k in range(s)]
            setattr(self, f"transition{s - 1}", transition(pre, cur))
            setattr(self, f"stage{s}", nn.Sequential(*[HighResolutionModule(cur, blocks) for _ in range(int(n))]))
            pre = cur
        head = [max(1, round(c * head_width)) for c in HEAD_CHANNELS]
        final = max(1, round(FINAL_CHANNELS * head_width))
        out = [c * Bottleneck.expansion for c in head]
        self.incre_modules = nn.ModuleList(make_layer(Bottleneck, c, h, 1) for c, h in zip(pre, head))
        self.downsamp_modules = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a, b, 3, 2, 1), nn.BatchNorm2d(b), nn.ReLU(inplace=True))
            for a, b in itertools.pairwise(out)
        )
        self.final_layer = nn.Sequential(nn.Conv2d(out[-1], final, 1), nn.BatchNorm2d(final), nn.ReLU(inplace=True))
        h, w = self.input_size
        for _ in range(4):
            h, w = strided_size(h), strided_size(w)
        self.dropout = nn.Dropout(check_dropout(dropout))
        self.output_layer = nn.Sequential(
            nn.Flatten(1), nn.Linear(final * h * w, embedding_size, bias=False), nn.BatchNorm1d(embedding_size)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_size, "HighResolutionNet")
        x = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
        xs = [self.layer1(x)]
        for s in (2, 3, 4):
            trans = getattr(self, f"transition{s - 1}")
            # existing branches pass through (or change width); a new branch grows from the lowest resolution
            xs = [xs[i] if t is None else t(xs[min(i, len(xs) - 1)]) for i, t in enumerate(trans)]
            xs = getattr(self, f"stage{s}")(xs)
        y = self.incre_modules[0](xs[0])
        for i, down in enumerate(self.downsamp_modules):
            y = self.incre_modules[i + 1](xs[i + 1]) + down(y)
        y = self.final_layer(y)
        head = self.output_layer
        return head[2](head[1](self.dropout(head[0](y))))


BACKBONES.register(
    "hrnet_w18",
    info={
        "reference": "Wang et al., HRNet (TPAMI 2020); FaceX-Zoo backbone/HRNet.py",
        "test_kwargs": {"width": 4, "modules": (1, 1, 1), "blocks": 1, "head_width": 0.125, "input_size": 32},
    },
    width=18,
)(HighResolutionNet)

"""Bottleneck ResNet-50/101/152 for 112x112 faces: the face.evoLVe / TFace model_resnet.py layout.

ImageNet stem (conv7x7 s2 -> BN -> ReLU -> maxpool 3x3 s2), four stages of bottlenecks (1x1 -> 3x3 with the
stride -> 1x1 to 4x planes, ReLU after the sum; conv1x1 + BN shortcut when the shape changes), then the face output
BN2d -> dropout -> flatten -> Linear -> BN1d. Five stride-2 steps, so the Linear sees 2048 x 4 x 4 at 112x112.
Module names follow face.evoLVe (conv1, bn1, layer1..4, bn_o1, dropout, fc, bn_o2).
"""

from __future__ import annotations

import torch
from torch import nn

from . import BACKBONES, as_hw, check_dropout, check_input, check_layers, check_multiplier, check_positive
from .layers import halved, init_kaiming

EXPANSION = 4
PLANES = (64, 128, 256, 512)
DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


class Bottleneck(nn.Module):
    """relu(BN(conv1x1(relu(BN(conv3x3_s(relu(BN(conv1x1(x))))))) + shortcut(x)); output 4 * planes channels."""

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        c_out = planes * EXPANSION
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNet(nn.Module):
    """Input (B, 3, H, W) normalised -> (B, embedding_size). `width` scales every channel count (tests use 0.125).

    zero_init_residual: start each block's last BN scale at 0, so every block begins as the identity
    (Goyal et al. 2017); TFace turns it on, face.evoLVe leaves it off (the default here).
    """

    def __init__(
        self,
        layers=(3, 4, 6, 3),
        embedding_size: int = 512,
        input_size=112,
        dropout: float = 0.0,
        width: float = 1.0,
        zero_init_residual: bool = False,
    ):
        super().__init__()
        check_positive(embedding_size=embedding_size)
        layers = check_layers("ResNet", layers)
        check_multiplier("ResNet", width=width)
        self.embedding_size = embedding_size
        self.input_size = as_hw(input_size)
        stem = max(1, round(64 * width))
        self.conv1 = nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        c_in = stem
        for i, (planes, n) in enumerate(zip(PLANES, layers), start=1):
            planes = max(1, round(planes * width))
            blocks = [Bottleneck(c_in, planes, 2 if i > 1 else 1)]  # the maxpool already halved before layer1
            blocks += [Bottleneck(planes * EXPANSION, planes) for _ in range(1, n)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            c_in = planes * EXPANSION
        h, w = halved(self.input_size, 5)
        self.bn_o1 = nn.BatchNorm2d(c_in)
        self.dropout = nn.Dropout(check_dropout(dropout))
        self.fc = nn.Linear(c_in * h * w, embedding_size)
        self.bn_o2 = nn.BatchNorm1d(embedding_size)
        init_kaiming(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_size, "ResNet")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn_o1(x))
        return self.bn_o2(self.fc(torch.flatten(x, 1)))


for _depth, _layers in DEPTHS.items():
    BACKBONES.register(
        f"resnet{_depth}",
        info={
            "reference": "He et al., ResNet (CVPR 2016); face.evoLVe / TFace backbone/model_resnet.py",
            "test_kwargs": {"width": 0.125, "input_size": 32, "layers": (2, 1, 1, 1)},
        },
        layers=_layers,
    )(ResNet)

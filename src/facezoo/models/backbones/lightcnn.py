"""LightCNN-29 v2 with Max-Feature-Map activations, as FaceX-Zoo trains it: `lightcnn29`.

Reference: Wu et al., "A Light CNN for Deep Face Representation with Noisy Labels" (IEEE TIFS 2018); the face
variant follows FaceX-Zoo (JDAI-CV/FaceX-Zoo, backbone/LightCNN.py, network_29layers_v2): 3-channel 112x112
input, MFM convolutions (a conv with 2C outputs, then the element-wise max of its two halves), residual blocks
(1, 2, 3, 4) at 48 / 96 / 192 / 128 channels, downsampling by max-pool + avg-pool (2x2), and the head
BN2d -> dropout -> flatten -> Linear -> BN1d over the 7x7 map. Parameter names and shapes are FaceX-Zoo's
(conv1.filter, blockN.i.conv1/conv2, groupN.conv_a/conv, output_layer.0/.3/.4).

Parameters: 11.60M (ours = FaceX-Zoo's published 11.60M); 5.66 GFLOPs at 112x112 (FaceX-Zoo: 2.84 GMACs, THOP;
1 MAC = 2 FLOPs). FaceX-Zoo's recipe uses dropout 0.2.

Small sizes for tests: blocks (residual blocks per stage), width (channel multiplier) and input_size are keywords.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from . import BACKBONES, as_hw, check_dropout, check_input, check_positive

CHANNELS = (48, 96, 192, 128)  # blocks 1-4; the groups map 48 -> 96 -> 192 -> 128 -> 128
BLOCKS = (1, 2, 3, 4)


class MFM(nn.Module):
    """Max-Feature-Map: max(z[:C], z[C:]) of a conv (or Linear when linear=True) with 2C outputs."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, padding: int = 1, linear=False):
        super().__init__()
        self.out_channels = c_out
        if linear:
            self.filter = nn.Linear(c_in, 2 * c_out)
        else:
            self.filter = nn.Conv2d(c_in, 2 * c_out, kernel, stride=stride, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z, c = self.filter(x), self.out_channels
        return torch.maximum(z[:, :c], z[:, c:])  # slices, not torch.split: its ONNX Split breaks at opset < 18


class Group(nn.Module):
    """MFM 1x1 (C_in -> C_in) then MFM 3x3 (C_in -> C_out)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = MFM(c_in, c_in, 1, 1, 0)
        self.conv = MFM(c_in, c_out, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.conv_a(x))


class ResBlock(nn.Module):
    """x + MFM3x3(MFM3x3(x)) at constant width."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = MFM(channels, channels)
        self.conv2 = MFM(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


def mix_pool(x: torch.Tensor) -> torch.Tensor:
    """max_pool2d(x, 2) + avg_pool2d(x, 2): halves H and W (floor)."""
    return F.max_pool2d(x, 2) + F.avg_pool2d(x, 2)


class LightCNN(nn.Module):
    """conv1 MFM 5x5 -> pool -> [blocks, group] x 2 with pools -> blocks3, group3, blocks4, group4 -> pool -> head.

    Input (B, 3, H, W) normalised; output (B, embedding_size); four 2x2 pools (floor): 112 -> 7.
    """

    def __init__(
        self, blocks=BLOCKS, width: float = 1.0, embedding_size: int = 512, input_size=112, dropout: float = 0.0
    ):
        super().__init__()
        check_positive(embedding_size=embedding_size)
        if not (isinstance(blocks, (tuple, list)) and len(blocks) == 4 and all(int(n) >= 0 for n in blocks)):
            raise ConfigError(f"LightCNN blocks must be 4 residual-block counts >= 0, got {blocks!r}.")
        if not isinstance(width, (int, float)) or width <= 0:
            raise ConfigError(f"LightCNN width must be a positive multiplier (e.g. 1.0 or 0.25), got {width!r}.")
        self.embedding_size = embedding_size
        self.input_size = as_hw(input_size)
        c1, c2, c3, c4 = (max(1, round(c * width)) for c in CHANNELS)
        self.conv1 = MFM(3, c1, 5, 1, 2)
        self.block1 = nn.Sequential(*[ResBlock(c1) for _ in range(int(blocks[0]))])
        self.group1 = Group(c1, c2)
        self.block2 = nn.Sequential(*[ResBlock(c2) for _ in range(int(blocks[1]))])
        self.group2 = Group(c2, c3)
        self.block3 = nn.Sequential(*[ResBlock(c3) for _ in range(int(blocks[2]))])
        self.group3 = Group(c3, c4)
        self.block4 = nn.Sequential(*[ResBlock(c4) for _ in range(int(blocks[3]))])
        self.group4 = Group(c4, c4)
        h, w = (s // 16 for s in self.input_size)  # as_hw guarantees sides >= 16
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(c4),
            nn.Dropout(check_dropout(dropout)),
            nn.Flatten(1),
            nn.Linear(c4 * h * w, embedding_size),
            nn.BatchNorm1d(embedding_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_size, "LightCNN")
        x = mix_pool(self.conv1(x))
        x = mix_pool(self.group1(self.block1(x)))
        x = mix_pool(self.group2(self.block2(x)))
        x = self.group4(self.block4(self.group3(self.block3(x))))
        return self.output_layer(mix_pool(x))


BACKBONES.register(
    "lightcnn29",
    info={
        "reference": "Wu et al., Light CNN (TIFS 2018), LightCNN-29 v2; FaceX-Zoo backbone/LightCNN.py",
        "test_kwargs": {"width": 0.25, "blocks": (1, 1, 0, 1), "input_size": 32},
    },
    blocks=BLOCKS,
)(LightCNN)

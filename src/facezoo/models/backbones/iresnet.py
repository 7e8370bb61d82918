"""IResNet ("improved" pre-activation ResNet of ArcFace) and IR-SE: ir18..ir200, ir152, ir2060, ir_se50..ir_se200.

Layout and parameter names follow arcface_torch's iresnet.py, so its published r18/r34/r50/r100/r200 state dicts
load with strict=True: conv1, bn1, prelu, layer1..layer4 (blocks: bn1, conv1, bn2, prelu, conv2, bn3,
downsample.0/.1), bn2, dropout, fc, features. ir2060 is arcface_torch's iresnet2060.py (same blocks, depths
(3, 128, 896, 3), activation checkpointing in training). ir152 / ir_se152 take face.evoLVe's and FaceX-Zoo's IR-152
depths (3, 8, 36, 3); ir_se200 is ir200 with SE (TFace's IR_152/IR_200 are other networks: bottleneck blocks up
to 2048 channels).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint_sequential

from . import BACKBONES, as_hw, check_dropout, check_input, check_layers, check_multiplier, check_positive
from .layers import SqueezeExcite, halved, strided_size

__all__ = ["DEPTHS", "IBasicBlock", "IResNet", "SqueezeExcite", "strided_size"]

STAGE_CHANNELS = (64, 128, 256, 512)
DEPTHS = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
    152: (3, 8, 36, 3),
    200: (6, 26, 60, 6),
    2060: (3, 128, 896, 3),
}


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """out = BN(conv3x3_s(PReLU(BN(conv3x3(BN(x)))))) [* SE] + shortcut(x); shortcut = conv1x1_s + BN on change."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, se_reduction: int | None = None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in, eps=1e-5)
        self.conv1 = conv3x3(c_in, c_out)
        self.bn2 = nn.BatchNorm2d(c_out, eps=1e-5)
        self.prelu = nn.PReLU(c_out)
        self.conv2 = conv3x3(c_out, c_out, stride)
        self.bn3 = nn.BatchNorm2d(c_out, eps=1e-5)
        self.se = SqueezeExcite(c_out, se_reduction) if se_reduction else None
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(c_out, eps=1e-5),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        if self.se is not None:
            out = self.se(out)
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


class IResNet(nn.Module):
    """Stem conv3x3-BN-PReLU, four stride-2 stages, then BN2d -> dropout -> flatten -> Linear -> BN1d.

    Input (B, 3, H, W) normalised; output (B, embedding_size). The Linear sees C4 * ceil^4(H/2) * ceil^4(W/2)
    features (512 * 7 * 7 at 112x112). `features` is BatchNorm1d with its scale frozen at 1.0, as in ArcFace.
    grad_checkpoint: in training, run each stage in ceil(sqrt(blocks)) checkpointed segments (activation memory
    O(sqrt(n)) for one extra forward; how ir2060 fits on a GPU). The recomputation also runs BN's running-stat
    update a second time, as in arcface_torch.
    """

    def __init__(
        self,
        layers=(3, 4, 14, 3),
        embedding_size: int = 512,
        input_size=112,
        dropout: float = 0.0,
        width: float = 1.0,
        se_reduction: int | None = None,
        grad_checkpoint: bool = False,
    ):
        super().__init__()
        check_positive(embedding_size=embedding_size)
        layers = check_layers("IResNet", layers)
        check_multiplier("IResNet", width=width)
        self.embedding_size = embedding_size
        self.input_size = as_hw(input_size)
        self.layers_per_stage = layers
        self.grad_checkpoint = bool(grad_checkpoint)
        channels = [max(1, round(c * width)) for c in STAGE_CHANNELS]

        self.conv1 = conv3x3(3, channels[0])
        self.bn1 = nn.BatchNorm2d(channels[0], eps=1e-5)
        self.prelu = nn.PReLU(channels[0])
        c_in = channels[0]
        for i, (c_out, n) in enumerate(zip(channels, self.layers_per_stage), start=1):
            blocks = [IBasicBlock(c_in if j == 0 else c_out, c_out, 2 if j == 0 else 1, se_reduction) for j in range(n)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            c_in = c_out
        h, w = halved(self.input_size, 4)
        self.bn2 = nn.BatchNorm2d(c_in, eps=1e-5)
        self.dropout = nn.Dropout(p=check_dropout(dropout))
        self.fc = nn.Linear(c_in * h * w, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-5)
        self._init_weights()

    def _init_weights(self) -> None:
        """As arcface_torch: conv weights N(0, 0.1), BN scale 1 / shift 0, Linear default; features scale frozen."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.1)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.features.weight.requires_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_size, "IResNet")
        x = self.prelu(self.bn1(self.conv1(x)))
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            if self.grad_checkpoint and self.training and torch.is_grad_enabled():
                x = checkpoint_sequential(stage, math.isqrt(len(stage) - 1) + 1, x, use_reentrant=False)
            else:
                x = stage(x)
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


ARCFACE = "Deng et al., ArcFace (CVPR 2019); arcface_torch backbones/iresnet.py"
REFERENCES = {
    152: f"{ARCFACE}; face.evoLVe / FaceX-Zoo IR-152 depths",
    2060: "arcface_torch backbones/iresnet2060.py",
}
SE_REFERENCE = "Hu et al., SENet (CVPR 2018) units on arcface_torch blocks; face.evoLVe / FaceX-Zoo IR-SE"


def _register(name: str, depth: int, se: bool) -> None:
    defaults = {"layers": DEPTHS[depth], "se_reduction": 16 if se else None}
    if depth == 2060:
        defaults["grad_checkpoint"] = True
    # the same code at 5 blocks (strided and plain); the full depth is checked by the parameter count
    test = {"width": 0.125, "input_size": 32, "layers": (1, 2, 1, 1)}
    info = {"reference": SE_REFERENCE if se else REFERENCES.get(depth, ARCFACE), "test_kwargs": test}
    BACKBONES.register(name, info=info, **defaults)(IResNet)


for _depth in DEPTHS:
    _register(f"ir{_depth}", _depth, se=False)
for _depth in (50, 100, 152, 200):
    _register(f"ir_se{_depth}", _depth, se=True)

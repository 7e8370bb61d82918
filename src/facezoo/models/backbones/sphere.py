"""SphereNet, the residual CNN of SphereFace and CosFace: `sphere20 sphere64`.

Reference: Liu et al., "SphereFace: Deep Hypersphere Embedding for Face Recognition" (CVPR 2017), Table 2: four
stages of a stride-2 3x3 conv (64 / 128 / 256 / 512 channels, PReLU) followed by residual units of two 3x3 convs,
(1, 2, 4, 1) units for the 20-layer net and (3, 8, 16, 3) for the 64-layer one (4 + 2 x units conv layers), then a
512-d fully connected layer. With batch_norm=True (default) every conv is followed by BN and the embedding by BN1d,
as in Face_Pytorch (wujiyang/Face_Pytorch, backbone/spherenet.py; its names and shapes: layerN.0 conv,
.1 BN, .2 PReLU, .3.. units with conv1/bn1/prelu1/conv2/bn2/prelu2, fc, last_bn), which trains far more easily
with today's margin heads; batch_norm=False is the paper's BN-free net. Face_Pytorch's "sphere64" has
(3, 7, 16, 3) units: pass layers=(3, 7, 16, 3) to load its weights.

SphereFace used 112x96 crops (the ArcFace template shifted by -8 px in x; input_size=(112, 96), a 7x6 final map);
the default here is 112x112 like the rest of the zoo. Parameters at 112x112 with BN: sphere20 24.51M, sphere64
50.05M (at 112x96: 22.68M, 48.22M); 4.08 / 14.26 GFLOPs at 112x112. Neither paper nor Face_Pytorch publishes
counts.

Small sizes for tests: layers, width (channel multiplier) and input_size are keywords.
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import ConfigError
from . import BACKBONES, as_hw, check_dropout, check_input, check_positive
from .iresnet import strided_size

STAGE_CHANNELS = (64, 128, 256, 512)


def _bn(channels: int, enabled: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if enabled else nn.Identity()


class Unit(nn.Module):
    """x + PReLU(BN(conv3x3(PReLU(BN(conv3x3(x)))))) at constant width (convs without bias)."""

    def __init__(self, channels: int, batch_norm: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn1 = _bn(channels, batch_norm)
        self.prelu1 = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = _bn(channels, batch_norm)
        self.prelu2 = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.prelu1(self.bn1(self.conv1(x)))
        return x + self.prelu2(self.bn2(self.conv2(y)))


class SphereNet(nn.Module):
    """Four [conv3x3 s2 (bias) -> BN -> PReLU -> units] stages -> flatten -> dropout -> Linear -> BN1d.

    Input (B, 3, H, W) normalised; output (B, embedding_size); the map after four stride-2 convs is
    ceil^4(H/2) x ceil^4(W/2) (7x7 at 112x112, 7x6 at 112x96).
    """

    def __init__(
        self,
        layers=(1, 2, 4, 1),
        width: float = 1.0,
        batch_norm: bool = True,
        embedding_size: int = 512,
        input_size=112,
        dropout: float = 0.0,
    ):
        super().__init__()
        check_positive(embedding_size=embedding_size)
        if not (isinstance(layers, (tuple, list)) and len(layers) == 4 and all(int(n) >= 0 for n in layers)):
            raise ConfigError(f"SphereNet layers must be 4 unit counts >= 0, got {layers!r}.")
        if not isinstance(width, (int, float)) or width <= 0:
            raise ConfigError(f"SphereNet width must be a positive multiplier (e.g. 1.0 or 0.25), got {width!r}.")
        self.embedding_size = embedding_size
        self.input_size = as_hw(input_size)
        c_in = 3
        for i, (base, n) in enumerate(zip(STAGE_CHANNELS, layers), start=1):
            c = max(1, round(base * width))
            stage = [nn.Conv2d(c_in, c, 3, 2, 1), _bn(c, batch_norm), nn.PReLU(c)]
            stage += [Unit(c, batch_norm) for _ in range(int(n))]
            setattr(self, f"layer{i}", nn.Sequential(*stage))
            c_in = c
        h, w = self.input_size
        for _ in range(4):
            h, w = strided_size(h), strided_size(w)
        self.dropout = nn.Dropout(check_dropout(dropout))
        self.fc = nn.Linear(c_in * h * w, embedding_size)
        self.last_bn = nn.BatchNorm1d(embedding_size) if batch_norm else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        """As Face_Pytorch (after the SphereFace prototxt): biased layers Xavier-uniform with zero bias, the
        bias-free unit convs N(0, 0.01)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                if m.bias is not None:
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)
                else:
                    nn.init.normal_(m.weight, 0.0, 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_size, "SphereNet")
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.last_bn(self.fc(self.dropout(torch.flatten(x, 1))))


_INFO = {
    "reference": "Liu et al., SphereFace (CVPR 2017); Face_Pytorch backbone/spherenet.py",
    "test_kwargs": {"width": 0.125, "input_size": 32},
}
BACKBONES.register("sphere20", info=_INFO, layers=(1, 2, 4, 1))(SphereNet)
BACKBONES.register("sphere64", info=_INFO, layers=(3, 8, 16, 3))(SphereNet)

"""IR-50 with CBAM attention in every residual unit, as Face_Pytorch builds it: `cbam_ir50`.

Reference: Woo et al., "CBAM: Convolutional Block Attention Module" (ECCV 2018) on the ArcFace IR-50 (Deng et al.,
CVPR 2019); the face variant follows Face_Pytorch (wujiyang/Face_Pytorch, backbone/cbam.py, mode "ir_cbam"): the
IResNet unit BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN, then channel attention
x * sigmoid(MLP(avgpool x) + MLP(maxpool x)) (shared MLP C -> C/16 -> C, ReLU, 1x1 convs without bias) and
spatial attention x * sigmoid(conv3x3([mean_c x, max_c x])), plus the shortcut; head BN2d -> dropout -> flatten
-> Linear -> BN1d. Parameter names and shapes are Face_Pytorch's (input_layer, layerN.i.res_layer.0-7,
shortcut_layer, output_layer.0/.3/.4), so its CBAMResNet(50, mode="ir_cbam") weights load with strict=True.

Parameters: 43.81M = IR-50's 43.59M + 2 C^2 / 16 + 18 per unit; 12.62 GFLOPs at 112x112. Face_Pytorch publishes
no count for it. Its training used dropout 0.4 (model.kwargs: {dropout: 0.4}).

Small sizes for tests: layers, width (channel multiplier) and input_size are keywords.
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import ConfigError
from . import BACKBONES, as_hw, check_dropout, check_input, check_positive
from .iresnet import strided_size

STAGE_CHANNELS = (64, 128, 256, 512)
IR50_LAYERS = (3, 4, 14, 3)


class ChannelAttention(nn.Module):
    """x * sigmoid(M(avgpool x) + M(maxpool x)), M = 1x1 conv C -> C/r -> ReLU -> 1x1 conv C/r -> C (no bias)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.shared_mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = x.mean(dim=(2, 3), keepdim=True)
        peak = x.amax(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.shared_mlp(avg) + self.shared_mlp(peak))


class SpatialAttention(nn.Module):
    """x * sigmoid(conv3x3([mean over channels, max over channels])), one 2 -> 1 conv without bias."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class CBAMUnit(nn.Module):
    """res_layer(x) + shortcut(x); res_layer = BN, conv3x3, BN, PReLU, conv3x3(stride), BN, channel, spatial."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(c_in),
            nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.PReLU(c_out),
            nn.Conv2d(c_out, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out),
            ChannelAttention(c_out, 16),
            SpatialAttention(),
        )
        self.shortcut_layer = None
        if stride != 1 or c_in != c_out:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.shortcut_layer is None else self.shortcut_layer(x)
        return self.res_layer(x) + shortcut


class CBAMResNet(nn.Module):
    """Stem conv3x3-BN-PReLU (64), four stages (64/128/256/512, the first unit of each stride 2), then the head.

    Input (B, 3, H, W) normalised; output (B, embedding_size); 7x7 final map at 112x112.
    """

    def __init__(
        self,
        layers=IR50_LAYERS,
        width: float = 1.0,
        embedding_size: int = 512,
        input_size=112,
        dropout: float = 0.0,
    ):
        super().__init__()
        check_positive(embedding_size=embedding_size)
        if not (isinstance(layers, (tuple, list)) and len(layers) == 4 and all(int(n) >= 1 for n in layers)):
            raise ConfigError(f"CBAM-ResNet layers must be 4 unit counts >= 1, got {layers!r}.")
        if not isinstance(width, (int, float)) or width <= 0:
            raise ConfigError(f"CBAM-ResNet width must be a positive multiplier (e.g. 1.0 or 0.25), got {width!r}.")
        self.embedding_size = embedding_size
        self.input_size = as_hw(input_size)
        channels = [max(1, round(c * width)) for c in STAGE_CHANNELS]
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, channels[0], 3, 1, 1, bias=False), nn.BatchNorm2d(channels[0]), nn.PReLU(channels[0])
        )
        c_in = channels[0]
        for i, (c, n) in enumerate(zip(channels, layers), start=1):
            units = [CBAMUnit(c_in if j == 0 else c, c, 2 if j == 0 else 1) for j in range(int(n))]
            setattr(self, f"layer{i}", nn.Sequential(*units))
            c_in = c
        h, w = self.input_size
        for _ in range(4):
            h, w = strided_size(h), strided_size(w)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(c_in),
            nn.Dropout(check_dropout(dropout)),
            nn.Flatten(1),
            nn.Linear(c_in * h * w, embedding_size),
            nn.BatchNorm1d(embedding_size),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        """As Face_Pytorch: conv and Linear weights Xavier-uniform, biases 0; BN scale 1, shift 0."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_size, "CBAMResNet")
        x = self.input_layer(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.output_layer(x)


BACKBONES.register(
    "cbam_ir50",
    info={
        "reference": "Woo et al., CBAM (ECCV 2018); Face_Pytorch backbone/cbam.py",
        "test_kwargs": {"width": 0.125, "layers": (1, 1, 1, 1), "input_size": 32},
    },
    layers=IR50_LAYERS,
)(CBAMResNet)

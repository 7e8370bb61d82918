"""Building blocks shared by several backbone families; tensors are (B, C, H, W) unless noted."""

from __future__ import annotations

import torch
from torch import nn


def strided_size(n: int) -> int:
    """Output length of a k=3, p=1, s=2 conv (and of a k=1, s=2 shortcut): floor((n - 1) / 2) + 1 = ceil(n / 2)."""
    return (n - 1) // 2 + 1


def halved(hw: tuple[int, int], times: int) -> tuple[int, int]:
    """(H, W) after `times` stride-2 steps of `strided_size`; 112 -> 7 after four."""
    h, w = hw
    for _ in range(times):
        h, w = strided_size(h), strided_size(w)
    return h, w


def make_divisible(v: float, divisor: int = 8) -> int:
    """Nearest multiple of `divisor` (at least `divisor`), one step up if that loses over 10% (TF MobileNet rule)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


ACTIVATIONS = {
    "relu": lambda c: nn.ReLU(inplace=True),
    "relu6": lambda c: nn.ReLU6(inplace=True),
    "prelu": lambda c: nn.PReLU(c),
    "silu": lambda c: nn.SiLU(inplace=True),  # swish(x) = x * sigmoid(x)
}


def conv_bn(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: str | None = None):
    """nn.Sequential(conv kxk (padding k // 2, no bias), BN[, activation]): indices 0, 1[, 2]."""
    layers = [
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    return nn.Sequential(*layers, ACTIVATIONS[act](c_out)) if act else nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """x * sigmoid(W2 relu(W1 avgpool(x))), W1: C -> C/r, W2: C/r -> C (1x1 convs, no bias), r = reduction."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean(dim=(2, 3), keepdim=True)
        w = torch.sigmoid(self.fc2(self.relu(self.fc1(w))))
        return x * w


class ConvBlock(nn.Module):
    """conv (no bias) -> BN -> PReLU; submodules layers.0/1/2 (arcface_torch's MobileFaceNet naming)."""

    def __init__(self, c_in: int, c_out: int, kernel=1, stride=1, padding=0, groups: int = 1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
            nn.PReLU(c_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class LinearBlock(nn.Module):
    """conv (no bias) -> BN, no activation (the "linear bottleneck" projection); submodules layers.0/1."""

    def __init__(self, c_in: int, c_out: int, kernel=1, stride=1, padding=0, groups: int = 1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class GDC(nn.Module):
    """Global depthwise conv over the whole (h, w) map -> flatten -> dropout -> Linear (no bias) -> BN1d.

    Submodules layers.0 (LinearBlock), layers.1 (Flatten), layers.2 (Linear), layers.3 (BatchNorm1d), as in
    arcface_torch; dropout sits outside `layers` so it does not shift those indices. `affine=False` gives the
    BN1d without scale and shift that TFace's GDC uses.
    """

    def __init__(
        self, channels: int, map_hw: tuple[int, int], embedding_size: int, dropout: float = 0.0, affine: bool = True
    ):
        super().__init__()
        self.layers = nn.Sequential(
            LinearBlock(channels, channels, kernel=map_hw, groups=channels),
            nn.Flatten(1),
            nn.Linear(channels, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size, affine=affine),
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.layers[1](self.layers[0](x)))
        return self.layers[3](self.layers[2](x))


class FlatHead(nn.Sequential):
    """[BN2d] -> dropout -> flatten -> Linear(C*h*w -> D) -> BN1d: the face.evoLVe / FaceX-Zoo output layer.

    Indices 0..4 as in their `output_layer` (0..3 without the BN2d). Input (B, C, h, w), output (B, D).
    """

    def __init__(
        self,
        channels: int,
        map_hw: tuple[int, int],
        embedding_size: int,
        dropout: float = 0.0,
        bn2d: bool = True,
        affine: bool = True,
    ):
        h, w = map_hw
        layers = [nn.BatchNorm2d(channels)] if bn2d else []
        layers += [
            nn.Dropout(dropout),
            nn.Flatten(1),
            nn.Linear(channels * h * w, embedding_size),
            nn.BatchNorm1d(embedding_size, affine=affine),
        ]
        super().__init__(*layers)


def init_kaiming(model: nn.Module) -> None:
    """TFace / face.evoLVe init: conv and Linear weights Kaiming-normal (fan_out, ReLU gain), biases 0; BN 1 and 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

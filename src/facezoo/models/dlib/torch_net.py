"""A dlib layer list as a torch module, with dlib's layer semantics (dlib/dnn/layers.h, cpu_dlib.cpp):

con       cross-correlation, padding from the layer (dlib's default: 0 for strided layers, size // 2 otherwise)
affine    y = gamma_c * x + beta_c (per channel)          relu   max(x, 0)
max_pool  / avg_pool   windows of nr x nc at the stride, no padding here; nr = nc = 0: the mean over H x W
tag N     remember the current output under N              skip N   continue from the output remembered as N
add_prev N  current + remembered N, each zero-padded to the larger of the two in channels, rows and columns
          (dlib's tt::add on tensors of different shapes; the ResNet's down-sampling blocks rely on it)
fc        y = x W (+ b) on the flattened (k, nr, nc) input
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .net import Layer


def default_padding(nr: int, nc: int, sy: int, sx: int) -> tuple[int, int]:
    """dlib's con/pool template default: 0 when strided, else half the window."""
    return (0 if sy != 1 else nr // 2), (0 if sx != 1 else nc // 2)


class Affine(nn.Module):
    """Per-channel y = weight * x + bias on (B, C, H, W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def _zero_pad_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + b with the smaller zero-padded (channels, bottom rows, right columns) to the larger shape."""
    if a.shape[1:] == b.shape[1:]:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t):
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)


class DlibLayers(nn.Module):
    """forward((B, in_channels, H, W) float) -> the last layer's output, following `layers` (bottom-up, no input
    layer). Parameters live in `ops` under the index of their layer, e.g. ops.0.weight."""

    def __init__(self, layers: list[Layer], in_channels: int = 3):
        super().__init__()
        self.plan: list[tuple[str, tuple]] = []
        ops, channels, tagged = {}, in_channels, {}
        for i, layer in enumerate(layers):
            kind, a = layer.kind, layer.args
            if kind == "con":
                n, nr, nc, sy, sx = a
                ops[str(i)] = nn.Conv2d(channels, n, (nr, nc), (sy, sx), default_padding(nr, nc, sy, sx))
                channels = n
            elif kind == "affine":
                ops[str(i)] = Affine(channels)
            elif kind == "fc":
                raise ValueError("fc layers need the flattened input size: use DlibLayers(..., fc_inputs=)")
            elif kind == "tag":
                tagged[a[0]] = channels
            elif kind == "skip":
                channels = tagged[a[0]]
            elif kind == "add_prev":
                channels = max(channels, tagged[a[0]])
            elif kind not in ("relu", "max_pool", "avg_pool", "identity"):
                raise ValueError(f"layer kind '{kind}' is not supported")
            self.plan.append((kind, a))
        self.ops = nn.ModuleDict(ops)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tags: dict = {}
        for i, (kind, a) in enumerate(self.plan):
            if kind in ("con", "affine"):
                x = self.ops[str(i)](x)
            elif kind == "relu":
                x = F.relu(x)
            elif kind == "max_pool":
                x = F.max_pool2d(x, a[:2], a[2:])
            elif kind == "avg_pool":
                x = x.mean((2, 3), keepdim=True) if a[0] == 0 else F.avg_pool2d(x, a[:2], a[2:])
            elif kind == "tag":
                tags[a[0]] = x
            elif kind == "skip":
                x = tags[a[0]]
            elif kind == "add_prev":
                x = _zero_pad_add(x, tags[a[0]])
        return x


def load_layers(module: DlibLayers, parsed: list[dict], where: str) -> None:
    """Copy the parameters of a read network (net.read_network(...).layers, same list) into `module`."""
    from ...errors import ModelError

    if len(parsed) != len(module.plan):
        raise ModelError(f"{where}: {len(parsed)} layers read for a network of {len(module.plan)}")
    with torch.no_grad():
        for i, ((kind, _), p) in enumerate(zip(module.plan, parsed)):
            if kind == "con":
                conv = module.ops[str(i)]
                if tuple(p["padding"]) != tuple(conv.padding) or tuple(p["weight"].shape) != tuple(conv.weight.shape):
                    raise ModelError(f"{where}: layer {i} (con) has shape {p['weight'].shape}, padding {p['padding']}")
                conv.weight.copy_(torch.from_numpy(p["weight"]))
                conv.bias.copy_(torch.from_numpy(p["bias"]))
            elif kind == "affine":
                aff = module.ops[str(i)]
                if p["kind"] == "identity":  # a disabled affine layer
                    aff.weight.fill_(1), aff.bias.zero_()
                else:
                    aff.weight.copy_(torch.from_numpy(p["gamma"])), aff.bias.copy_(torch.from_numpy(p["beta"]))
            elif kind in ("max_pool", "avg_pool") and any(p["padding"]):
                raise ModelError(f"{where}: layer {i} ({kind}) has padding {p['padding']}, not supported")

"""RepVGG for faces as FaceX-Zoo trains it: `repvgg_a0 repvgg_b0 repvgg_b1`, with structural re-parameterisation.

Reference: Ding et al., "RepVGG: Making VGG-style ConvNets Great Again" (CVPR 2021); the face variant follows
FaceX-Zoo (JDAI-CV/FaceX-Zoo, backbone/RepVGG.py): a stride-1 stem block (so four stride-2 stages give 7x7 at
112x112) and the head BN2d -> flatten -> Linear -> BN1d. Parameter names and shapes are FaceX-Zoo's (stage0..4,
rbr_dense / rbr_1x1 / rbr_identity, rbr_reparam once fused, output_layer.0/.2/.3).

Train-time block: y = ReLU(BN(conv3x3(x)) + BN(conv1x1(x)) + BN(x)), the identity branch only when shapes
match. `reparameterize()` folds each branch's BN into its kernel (W * gamma / sqrt(var + eps), bias
beta - mean * gamma / sqrt(var + eps)), pads the 1x1 kernel to 3x3, writes the identity as a 3x3 kernel with a
1 at the centre of its own channel, and sums the three into one biased 3x3 conv: the same function in eval mode,
VGG-like plain convs at inference. It returns {"deploy": True}, the constructor keyword that builds the fused
layout, for the checkpoint metadata (facezoo.models.deploy.reparameterize records it; `facezoo export --deploy`).

| name      | blocks        | widths                  | params train (FaceX-Zoo) / fused | GFLOPs train / fused |
| repvgg_a0 | (2, 4, 14, 1) | (0.75, 0.75, 0.75, 2.5) | 39.94M (39.94M) / 39.15M         | 3.09 / 2.78          |
| repvgg_b0 | (4, 6, 16, 1) | (1, 1, 1, 2.5)          | 46.65M (46.65M) / 45.17M         | 6.86 / 6.18          |
| repvgg_b1 | (4, 6, 16, 1) | (2, 2, 2, 4)            | 106.75M (106.75M) / 101.17M      | 26.35 / 23.73        |
GFLOPs at 112x112; FaceX-Zoo reports 1.55 / 3.44 / 13.21 GMACs (1 MAC = 2 FLOPs) for the training-time model.

Small sizes for tests: blocks, widths and input_size are keywords.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from . import BACKBONES, as_hw, check_dropout, check_input, check_positive
from .iresnet import strided_size


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Sequential:
    """conv (k x k, padding k // 2, no bias) -> BN, as submodules `conv` and `bn`."""
    seq = nn.Sequential()
    seq.add_module("conv", nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False))
    seq.add_module("bn", nn.BatchNorm2d(c_out))
    return seq


def fold_bn(kernel: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(kernel * t, beta - mean * t) with t = gamma / sqrt(running_var + eps): conv then BN (eval) as one conv."""
    t = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return kernel * t.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * t


class RepVGGBlock(nn.Module):
    """ReLU(3x3 conv-BN + 1x1 conv-BN [+ BN identity]) in training; ReLU(one biased 3x3 conv) once fused."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, deploy: bool = False):
        super().__init__()
        self.nonlinearity = nn.ReLU()
        if deploy:
            self.rbr_reparam = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=True)
        else:
            self.rbr_identity = nn.BatchNorm2d(c_in) if c_in == c_out and stride == 1 else None
            self.rbr_dense = conv_bn(c_in, c_out, 3, stride)
            self.rbr_1x1 = conv_bn(c_in, c_out, 1, stride)

    @property
    def fused(self) -> bool:
        return hasattr(self, "rbr_reparam")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:
            return self.nonlinearity(self.rbr_reparam(x))
        out = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            out = out + self.rbr_identity(x)
        return self.nonlinearity(out)

    def equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The 3x3 kernel (C_out, C_in, 3, 3) and bias (C_out,) of the fused conv (BN in eval form)."""
        kernel, bias = fold_bn(self.rbr_dense.conv.weight, self.rbr_dense.bn)
        k1, b1 = fold_bn(self.rbr_1x1.conv.weight, self.rbr_1x1.bn)
        kernel, bias = kernel + F.pad(k1, [1, 1, 1, 1]), bias + b1
        if self.rbr_identity is not None:
            c = kernel.shape[0]
            eye = torch.zeros_like(kernel)
            eye[torch.arange(c), torch.arange(c), 1, 1] = 1.0
            ki, bi = fold_bn(eye, self.rbr_identity)
            kernel, bias = kernel + ki, bias + bi
        return kernel, bias

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Replace the branches by one 3x3 conv computing the same function as the eval-mode block."""
        if self.fused:
            return
        kernel, bias = self.equivalent_kernel_bias()
        dense = self.rbr_dense.conv
        conv = nn.Conv2d(dense.in_channels, dense.out_channels, 3, stride=dense.stride, padding=1, bias=True)
        conv = conv.to(device=kernel.device, dtype=kernel.dtype)
        conv.weight.copy_(kernel)
        conv.bias.copy_(bias)
        del self.rbr_dense, self.rbr_1x1, self.rbr_identity
        self.rbr_reparam = conv


class RepVGG(nn.Module):
    """Stem block (3 -> min(64, 64 w1), stride 1), four stages of RepVGG blocks (the first of each stride 2) with
    64 w1, 128 w2, 256 w3, 512 w4 channels, then BN2d -> flatten -> dropout -> Linear -> BN1d.

    Input (B, 3, H, W) normalised; output (B, embedding_size). deploy=True builds the fused layout.
    """

    def __init__(
        self,
        blocks=(2, 4, 14, 1),
        widths=(0.75, 0.75, 0.75, 2.5),
        embedding_size: int = 512,
        input_size=112,
        dropout: float = 0.0,
        deploy: bool = False,
    ):
        super().__init__()
        check_positive(embedding_size=embedding_size)
        if not (isinstance(blocks, (tuple, list)) and len(blocks) == 4 and all(int(n) >= 1 for n in blocks)):
            raise ConfigError(f"RepVGG blocks must be 4 counts >= 1, got {blocks!r}.")
        if not (isinstance(widths, (tuple, list)) and len(widths) == 4 and all(w > 0 for w in widths)):
            raise ConfigError(f"RepVGG widths must be 4 positive multipliers, got {widths!r}.")
        self.embedding_size = embedding_size
        self.input_size = as_hw(input_size)
        self.deploy = bool(deploy)
        channels = [max(1, int(base * w)) for base, w in zip((64, 128, 256, 512), widths)]
        c_in = min(64, channels[0])
        self.stage0 = RepVGGBlock(3, c_in, 1, self.deploy)
        for i, (c_out, n) in enumerate(zip(channels, blocks), start=1):
            stage = [RepVGGBlock(c_in if j == 0 else c_out, c_out, 2 if j == 0 else 1, self.deploy) for j in range(n)]
            setattr(self, f"stage{i}", nn.Sequential(*stage))
            c_in = c_out
        h, w = self.input_size
        for _ in range(4):
            h, w = strided_size(h), strided_size(w)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(c_in), nn.Flatten(1), nn.Linear(c_in * h * w, embedding_size), nn.BatchNorm1d(embedding_size)
        )
        self.dropout = nn.Dropout(check_dropout(dropout))

    def reparameterize(self) -> dict:
        """Fuse every block in place (see the module docstring); returns the kwargs that build the fused layout."""
        for m in self.modules():
            if isinstance(m, RepVGGBlock):
                m.reparameterize()
        self.deploy = True
        return {"deploy": True}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_size, "RepVGG")
        x = self.stage0(x)
        x = self.stage4(self.stage3(self.stage2(self.stage1(x))))
        head = self.output_layer
        x = self.dropout(head[1](head[0](x)))
        return head[3](head[2](x))


_INFO = {
    "reference": "Ding et al., RepVGG (CVPR 2021); FaceX-Zoo backbone/RepVGG.py",
    "test_kwargs": {"blocks": (1, 2, 1, 1), "widths": (0.125, 0.125, 0.125, 0.125), "input_size": 32},
}
BACKBONES.register("repvgg_a0", info=_INFO, blocks=(2, 4, 14, 1), widths=(0.75, 0.75, 0.75, 2.5))(RepVGG)
BACKBONES.register("repvgg_b0", info=_INFO, blocks=(4, 6, 16, 1), widths=(1, 1, 1, 2.5))(RepVGG)
BACKBONES.register("repvgg_b1", info=_INFO, blocks=(4, 6, 16, 1), widths=(2, 2, 2, 4))(RepVGG)

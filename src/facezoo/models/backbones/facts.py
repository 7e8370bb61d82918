"""Per-backbone facts for `facezoo list backbones --details` and the README table, computed on the meta device.

Parameters and FLOPs come from a model built on torch.device("meta") (shapes only: no memory, no init time), so
ir2060 or ViT-H cost nothing. GFLOPs are torch.utils.flop_counter.FlopCounterMode's count for one image at the
native input size: 2 x multiply-accumulates of convolutions, matmuls and attention; elementwise ops, pooling and
normalisation are not counted (papers' "MACs" are half these figures).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from . import BACKBONES


@dataclass(frozen=True)
class BackboneFacts:
    name: str
    params: int  # every parameter, trainable or frozen (buffers such as BN running statistics excluded)
    gflops: float  # forward FLOPs of one image at input_size, in 1e9
    input_size: tuple[int, int]  # (H, W) the registration builds by default
    embedding_size: int
    reference: str


def build_meta(name: str, **kwargs) -> torch.nn.Module:
    """The registered backbone with parameters on the meta device (shapes only), in eval mode."""
    with torch.device("meta"):
        return BACKBONES.create(name, **kwargs).eval()


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_flops(model: torch.nn.Module, input_size: tuple[int, int]) -> int:
    """FLOPs of model(x) for one (1, 3, H, W) image, on the device of the model's parameters (meta is fine)."""
    device = next(model.parameters()).device
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, *input_size, device=device))
    return counter.get_total_flops()


def describe(name: str, **kwargs) -> BackboneFacts:
    """Facts of backbone `name` built with its defaults (or `kwargs`), counted on the meta device."""
    model = build_meta(name, **kwargs)
    hw = tuple(model.input_size)
    return BackboneFacts(
        name=name,
        params=count_parameters(model),
        gflops=forward_flops(model, hw) / 1e9,
        input_size=hw,
        embedding_size=int(model.embedding_size),
        reference=BACKBONES.info(name).get("reference", ""),
    )

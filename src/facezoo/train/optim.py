"""Optimiser construction with optional weight-decay exclusion of BN/PReLU/bias parameters (ndim <= 1)."""

from __future__ import annotations

import torch
from torch import nn

from ..registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")


@OPTIMIZERS.register("sgd")
def _sgd(groups, cfg):
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


@OPTIMIZERS.register("adamw")
def _adamw(groups, cfg):
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


def param_groups(modules: list[nn.Module], weight_decay: float, no_decay_bn_bias: bool) -> list[dict]:
    decay, no_decay = [], []
    for module in modules:
        for p in module.parameters():
            if p.requires_grad:
                (no_decay if no_decay_bn_bias and p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(cfg, modules: list[nn.Module]) -> torch.optim.Optimizer:
    """OptimConfig -> optimiser over the trainable parameters of `modules` (backbone, head)."""
    return OPTIMIZERS.create(cfg.name, groups=param_groups(modules, cfg.weight_decay, cfg.no_decay_bn_bias), cfg=cfg)

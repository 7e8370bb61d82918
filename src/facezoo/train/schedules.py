"""Learning-rate schedules, stepped per optimiser step: linear warm-up, then a registered decay.

lr(step) = base * (step + 1) / W                          for step < W (warm-up steps)
         = decay(t, step), t = (step - W) / (T - W)        afterwards, T = total steps
"""

from __future__ import annotations

import math

from ..registry import Registry

SCHEDULES: Registry = Registry("schedule")


@SCHEDULES.register("constant")
def constant(base: float, t: float, epoch: float, cfg) -> float:
    return base


@SCHEDULES.register("poly")
def poly(base: float, t: float, epoch: float, cfg) -> float:
    """base * (1 - t)^power (arcface_torch's default, power 2)."""
    return base * (1.0 - t) ** cfg.power


@SCHEDULES.register("step")
def multistep(base: float, t: float, epoch: float, cfg) -> float:
    """base * gamma^(number of milestones, in epochs, already passed)."""
    return base * cfg.gamma ** sum(epoch >= m for m in cfg.milestones)


@SCHEDULES.register("cosine")
def cosine(base: float, t: float, epoch: float, cfg) -> float:
    """min_lr + (base - min_lr) * (1 + cos(pi t)) / 2."""
    return cfg.min_lr + (base - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


def lr_at(step: int, base: float, total_steps: int, steps_per_epoch: int, cfg) -> float:
    """The learning rate of optimiser step `step` (0-based) under ScheduleConfig `cfg`."""
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return SCHEDULES.get(cfg.name)(base, t, step / steps_per_epoch, cfg)

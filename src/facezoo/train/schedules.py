"""Learning-rate schedules, stepped per optimiser step: linear warm-up, then a registered decay.

lr(step) = base * (step + 1) / W                          for step < W (warm-up steps)
         = decay(base, t, epoch, cfg)                     afterwards, t = (step - W) / (T - W), T = total steps

A decay is registered by name (`@SCHEDULES.register("name")`) and maps t in [0, 1] to a learning rate: base at
t = 0, never below the floor cfg.min_lr, and (for a decaying schedule) the floor at t = 1.
"""

from __future__ import annotations

import math

from ..registry import Registry

SCHEDULES: Registry = Registry("schedule")


@SCHEDULES.register("constant")
def constant(base: float, t: float, epoch: float, cfg) -> float:
    """base throughout."""
    return base


@SCHEDULES.register("poly")
def poly(base: float, t: float, epoch: float, cfg) -> float:
    """min_lr + (base - min_lr) * (1 - t)^power (arcface_torch's default: power 2, min_lr 0)."""
    return cfg.min_lr + (base - cfg.min_lr) * (1.0 - t) ** cfg.power


@SCHEDULES.register("step")
def multistep(base: float, t: float, epoch: float, cfg) -> float:
    """max(min_lr, base * gamma^(number of milestones, in epochs, already passed))."""
    return max(cfg.min_lr, base * cfg.gamma ** sum(epoch >= m for m in cfg.milestones))


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

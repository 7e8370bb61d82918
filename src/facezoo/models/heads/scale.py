"""Adaptive-scale head: adacos (the scale s follows the batch; no margin)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import HEADS
from .base import CosineHead
from .context import StepInputs

ACOS_EPS = 1e-7  # target cosines clamped to +-(1 - eps) before acos, as the reference code


def fixed_scale(classes: int) -> float:
    """AdaCos's fixed scale sqrt(2) * ln(C - 1) (C - 1 floored at 2 so that s > 0)."""
    return math.sqrt(2.0) * math.log(max(classes - 1, 2))


def lower_median(values: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """(lower median of values[valid], number of valid entries): torch.median's convention, no host sync."""
    count = valid.sum()
    ordered = torch.where(valid, values, torch.full_like(values, float("inf"))).sort().values
    return ordered.gather(0, ((count - 1) // 2).clamp(min=0).view(1)).squeeze(0), count  # gather: no sync


@HEADS.register("adacos")
class AdaCos(CosineHead):
    """AdaCos (Zhang et al., CVPR 2019): logits s * cos(theta) for every class, no margin, s adapted per step.

    dynamic=False: s = sqrt(2) * ln(C - 1) throughout. dynamic=True (default), in training mode and before use
    (as the reference code): B_avg = (1/B) sum_i sum_{j != y_i} exp(s_old cos_ij), theta_med = the (lower, as
    torch.median) median of the batch's target angles, s <- ln(B_avg) / cos(min(pi/4, theta_med)), with s_old
    the previous step's s (the fixed value on the first step). C counts the classes of every rank; the sums and the
    median run over the global batch and every class column (Partial FC: the sampled ones) through the reducer, so
    sharded, chunked and single-process training agree. Buffer `s` (and `steps`) is checkpointed; eval mode and
    dynamic=False use s unchanged.
    """

    name = "adacos"
    needs_target_cos = True

    def __init__(self, embedding_size: int, num_classes: int, dynamic: bool = True):
        super().__init__(embedding_size, num_classes)
        self.dynamic = bool(dynamic)
        self.register_buffer("s", torch.zeros((), dtype=torch.float64))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def hparams(self) -> dict:
        return {"dynamic": self.dynamic}

    def current_scale(self) -> Tensor:
        """The scale in use: the adapted s after the first dynamic step, sqrt(2) ln(C - 1) before."""
        return torch.where(self.steps > 0, self.s, torch.full_like(self.s, fixed_scale(self.total_classes)))

    @torch.no_grad()
    def step_state(self, inputs: StepInputs) -> dict:
        """Adapts s from the whole batch (training, dynamic), then {"s": the scale of this step}."""
        s_old = self.current_scale()
        if not (self.training and self.dynamic):
            return {"s": s_old}
        total = torch.zeros((), dtype=torch.float64, device=s_old.device)
        for cos, labels in inputs.columns():
            columns = torch.arange(cos.shape[1], device=cos.device)
            other = columns.unsqueeze(0) != labels.unsqueeze(1)
            total = total + torch.where(other, (s_old.to(cos.dtype) * cos).exp(), 0.0).sum().to(torch.float64)
        b_avg = inputs.reduce.sum(total) / max(len(inputs.norms), 1)
        theta = inputs.target_cos.to(torch.float64).clamp(-1 + ACOS_EPS, 1 - ACOS_EPS).acos()
        theta_med, count = lower_median(theta, inputs.valid)
        s_new = b_avg.log() / theta_med.clamp(max=math.pi / 4).cos()
        s_new = torch.where(count > 0, s_new, s_old)
        self.s.copy_(s_new)
        self.steps += 1
        return {"s": s_new}

    def margin(self, cos: Tensor, labels: Tensor, norms: Tensor, state: dict | None = None) -> Tensor:
        state = self.resolve_state(cos, labels, norms, state)
        return cos * state["s"].to(cos.dtype)

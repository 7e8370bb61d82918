"""Soft targets (Hinton et al., 2015) on the class logits, sharded over ranks like the classifier.

  loss = T^2 mean_i KL(softmax(z_t,i / T) || softmax(z_s,i / T))
       = T^2 mean_i sum_j p_t,ij (log p_t,ij - log p_s,ij)
z = s cos(x, w_j): the scaled cosine logits of the student's head (its class centres) and of the teacher's (its
checkpoint's head over the same classes), without margin. Under sharding each rank holds columns j of its shard:
the log-sum-exps are all-reduced (MAX, then SUM), and backward is local, d loss / d z_s,ij = T (p_s,ij - p_t,ij) / B.
"""

from __future__ import annotations

import torch

from ..distributed import all_reduce
from . import DISTILL_LOSSES
from .base import DistillLoss, positive, wide


def _log_softmax(z: torch.Tensor) -> torch.Tensor:
    """log softmax over the columns of every rank (z: this rank's columns)."""
    row_max = all_reduce(z.amax(dim=1), torch.distributed.ReduceOp.MAX)
    shifted = z - row_max.unsqueeze(1)
    return shifted - all_reduce(shifted.exp().sum(dim=1)).log().unsqueeze(1)


class _ShardedKL(torch.autograd.Function):
    """T^2 mean_i KL(p_t || p_s) with p = softmax(z / T) over the columns of all ranks; grad only for z_s."""

    @staticmethod
    def forward(ctx, z_s, z_t, temperature):
        log_s, log_t = _log_softmax(z_s / temperature), _log_softmax(z_t / temperature)
        p_t = log_t.exp()
        kl = all_reduce((p_t * (log_t - log_s)).sum(dim=1))  # (B,), each rank's columns summed
        ctx.save_for_backward(log_s.exp(), p_t)
        ctx.temperature = temperature
        return kl.mean() * temperature**2

    @staticmethod
    def backward(ctx, grad):
        p_s, p_t = ctx.saved_tensors
        return grad * ctx.temperature * (p_s - p_t) / p_s.shape[0], None, None


@DISTILL_LOSSES.register("kd")
class SoftTargets(DistillLoss):
    name = "kd"
    reads = "cosines"

    def __init__(self, student_shape, teacher_shape, T: float = 4.0, s: float = 64.0):
        super().__init__(student_shape, teacher_shape)
        positive("kd", T=T, s=s)
        self.temperature, self.scale = float(T), float(s)

    def forward(self, student, teacher, labels):
        """student, teacher: cosines (B, C') of this rank's columns; labels unused."""
        return _ShardedKL.apply(self.scale * wide(student), self.scale * wide(teacher), self.temperature)

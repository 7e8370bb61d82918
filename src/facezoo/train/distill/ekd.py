"""EKD, evaluation-oriented distillation (Huang et al., CVPR 2022; TFace): close the teacher-student gap in the
TPR/FPR sense, on the pairs of the (global) batch that decide it, with a rank loss instead of matching values.

On unit embeddings, S_ij = s_i . s_j and T_ij = t_i . t_j over pairs i < j (positives: same label). Thresholds
a_k at the false positive rates fprs (0.1 ... 1e-6): the negative similarity of rank floor(n_neg * fpr_k) in
descending order, as a running mean a <- momentum * a_batch + (1 - momentum) * a (one for the student, one for
the teacher, buffers). A pair's rank position r(v) = sum_k sigmoid((v - a_k) / tau) counts the thresholds it
passes; the loss matches the student's positions to the teacher's on the critical pairs, all positive pairs and
the topk hardest negatives by the student's similarity:
  loss = pos_weight * mean_pos (r_s(S) - r_t(T))^2 + neg_weight * mean_topk-neg (r_s(S) - r_t(T))^2
(defaults as TFace's: tau 0.01, momentum 0.01, topk 2000, weights 0.02 / 0.01). Dense masks: no host syncs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import ConfigError
from . import DISTILL_LOSSES
from .base import DistillLoss, positive, wide


def rank_position(v: torch.Tensor, anchors: torch.Tensor, tau: float) -> torch.Tensor:
    """r(v) = sum_k sigmoid((v - a_k) / tau), for any shape of v."""
    return torch.sigmoid((v.unsqueeze(-1) - anchors) / tau).sum(dim=-1)


@DISTILL_LOSSES.register("ekd")
class EKD(DistillLoss):
    name = "ekd"
    batch_wide = True

    def __init__(
        self,
        student_shape,
        teacher_shape,
        fprs: tuple = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6),
        tau: float = 0.01,
        momentum: float = 0.01,
        topk: int = 2000,
        pos_weight: float = 0.02,
        neg_weight: float = 0.01,
    ):
        super().__init__(student_shape, teacher_shape)
        positive("ekd", tau=tau, topk=topk)
        if not fprs or not all(0 < f < 1 for f in fprs) or not 0 < momentum <= 1:
            raise ConfigError(f"ekd: fprs must be in (0, 1) and momentum in (0, 1], got {list(fprs)}, {momentum}")
        self.register_buffer("fprs", torch.tensor([float(f) for f in fprs], dtype=torch.float64), persistent=False)
        self.tau, self.momentum, self.topk = float(tau), float(momentum), int(topk)
        self.pos_weight, self.neg_weight = float(pos_weight), float(neg_weight)
        self.register_buffer("student_anchors", torch.zeros(len(fprs)))
        self.register_buffer("teacher_anchors", torch.zeros(len(fprs)))

    def _thresholds(self, sims: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        """Negative similarities at the rates fprs: rank floor(n_neg * fpr) of the descending order."""
        ordered = torch.where(negative, sims, torch.full_like(sims, float("-inf"))).flatten().sort(descending=True)[0]
        n_neg = negative.sum()
        index = (n_neg.double() * self.fprs).floor().long().clamp(min=0)
        index = torch.minimum(index, (n_neg - 1).clamp(min=0).expand_as(index))
        return ordered[index]

    def forward(self, student, teacher, labels):
        s, t = F.normalize(wide(student), dim=1), F.normalize(wide(teacher), dim=1).detach()
        n = len(s)
        sim_s, sim_t = s @ s.t(), t @ t.t()
        upper = torch.ones(n, n, dtype=torch.bool, device=s.device).triu(1)
        same = labels.unsqueeze(0) == labels.unsqueeze(1)
        positive_pairs, negative_pairs = same & upper, ~same & upper
        if self.training:
            with torch.no_grad():
                has = negative_pairs.any()
                for anchors, sims in ((self.student_anchors, sim_s.detach()), (self.teacher_anchors, sim_t)):
                    new = self.momentum * self._thresholds(sims, negative_pairs) + (1 - self.momentum) * anchors
                    anchors.copy_(torch.where(has, new, anchors))
        gap = rank_position(sim_s, self.student_anchors, self.tau) - rank_position(
            sim_t, self.teacher_anchors, self.tau
        )
        gap2 = gap.pow(2)
        pos = (gap2 * positive_pairs).sum() / positive_pairs.sum().clamp(min=1)
        k = min(self.topk, n * (n - 1) // 2) if n > 1 else 0
        if k == 0:
            return self.pos_weight * pos
        scores = torch.where(negative_pairs, sim_s.detach(), torch.full_like(sim_s, float("-inf"))).flatten()
        hardest = scores.topk(k).indices
        chosen = negative_pairs.flatten()[hardest]
        neg = (gap2.flatten()[hardest] * chosen).sum() / chosen.sum().clamp(min=1)
        return self.pos_weight * pos + self.neg_weight * neg

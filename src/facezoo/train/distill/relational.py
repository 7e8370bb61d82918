"""Relational distillation: the student keeps the teacher's structure among the samples of the (global) batch,
so student and teacher embeddings may differ in size.

rkd_distance (Park et al., CVPR 2019): psi(x_i, x_j) = ||x_i - x_j|| / mu, mu = the mean distance over pairs
  i != j; loss = mean over pairs i != j of huber(psi_s - psi_t) (delta 1, smooth L1).
rkd_angle: for distinct i, j, k, cos angle_ijk = <e_ij, e_kj>, e_ij = (x_i - x_j) / ||x_i - x_j||; loss = mean
  over those triplets of huber(cos_s - cos_t). O(n^3) memory: computed on the first max_samples of the batch.
pkt (Passalis & Tefas, ECCV 2018): K_ij = (cos(x_i, x_j) + 1) / 2, rows normalised to conditional probabilities
  P_ij = K_ij / sum_j K_ij (Q for the teacher); loss = mean over i, j of Q_ij log((Q_ij + eps) / (P_ij + eps)).
sp (Tung & Mori, ICCV 2019): G = X X^T of the flattened features, each row divided by its L2 norm;
  loss = ||G_s - G_t||_F^2 / b^2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import DISTILL_LOSSES
from .base import DistillLoss, positive, wide

EPS = 1e-12


def _pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    """(n, n) Euclidean distances, 0 on the diagonal (gradient-safe square root)."""
    sq = x.pow(2).sum(dim=1)
    d2 = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2.0 * (x @ x.t())).clamp(min=EPS)
    eye = torch.eye(len(x), dtype=torch.bool, device=x.device)
    return torch.where(eye, torch.zeros_like(d2), d2.sqrt())


@DISTILL_LOSSES.register("rkd_distance")
class RKDDistance(DistillLoss):
    name = "rkd_distance"
    batch_wide = True

    def forward(self, student, teacher, labels):
        s, t = wide(student).flatten(1), wide(teacher).flatten(1)
        off = ~torch.eye(len(s), dtype=torch.bool, device=s.device)
        d_s, d_t = _pairwise_distances(s), _pairwise_distances(t.detach())
        psi_s = d_s / d_s[off].mean().clamp(min=EPS)
        psi_t = d_t / d_t[off].mean().clamp(min=EPS)
        return F.smooth_l1_loss(psi_s[off], psi_t[off])


def _angles(x: torch.Tensor) -> torch.Tensor:
    """(n, n, n) cos angle_ijk = <x_i - x_j, x_k - x_j> / (||x_i - x_j|| ||x_k - x_j||) via the Gram matrix."""
    g = x @ x.t()
    diag = g.diagonal()
    # <x_i - x_j, x_k - x_j> = g_ik - g_ij - g_jk + g_jj, indexed [i, j, k]
    num = g.unsqueeze(1) - g.unsqueeze(2) - g.unsqueeze(0) + diag.view(1, -1, 1)
    d = _pairwise_distances(x)  # d[i, j]
    return num / (d.unsqueeze(2) * d.t().unsqueeze(0)).clamp(min=EPS)


@DISTILL_LOSSES.register("rkd_angle")
class RKDAngle(DistillLoss):
    name = "rkd_angle"
    batch_wide = True

    def __init__(self, student_shape, teacher_shape, max_samples: int = 128):
        super().__init__(student_shape, teacher_shape)
        positive("rkd_angle", max_samples=max_samples)
        self.max_samples = int(max_samples)

    def forward(self, student, teacher, labels):
        n = min(len(student), self.max_samples)
        s, t = wide(student[:n]).flatten(1), wide(teacher[:n]).flatten(1).detach()
        i, j, k = torch.meshgrid(*(torch.arange(n, device=s.device),) * 3, indexing="ij")
        distinct = (i != j) & (j != k) & (i != k)
        return F.smooth_l1_loss(_angles(s)[distinct], _angles(t)[distinct])


@DISTILL_LOSSES.register("pkt")
class PKT(DistillLoss):
    name = "pkt"
    batch_wide = True

    def __init__(self, student_shape, teacher_shape, eps: float = 1e-7):
        super().__init__(student_shape, teacher_shape)
        positive("pkt", eps=eps)
        self.eps = float(eps)

    @staticmethod
    def conditional(x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(wide(x).flatten(1), dim=1)
        k = (x @ x.t() + 1.0) / 2.0
        return k / k.sum(dim=1, keepdim=True)

    def forward(self, student, teacher, labels):
        p, q = self.conditional(student), self.conditional(teacher.detach())
        return (q * torch.log((q + self.eps) / (p + self.eps))).mean()


@DISTILL_LOSSES.register("sp")
class SimilarityPreserving(DistillLoss):
    name = "sp"
    batch_wide = True

    @staticmethod
    def gram(x: torch.Tensor) -> torch.Tensor:
        x = wide(x).flatten(1)
        return F.normalize(x @ x.t(), dim=1)

    def forward(self, student, teacher, labels):
        b = len(student)
        return (self.gram(student) - self.gram(teacher.detach())).pow(2).sum() / (b * b)

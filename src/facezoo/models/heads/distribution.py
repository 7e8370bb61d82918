"""DDL (Huang et al., CVPR 2020, TFace): distribution distillation loss, a batch term beside ArcFace.

The similarity distributions of easy samples (the teacher) and of hard samples (the student) are pulled
together. facezoo has one data stream, so a batch is split by feature norm (the quality proxy of MagFace and
AdaFace): the hard_fraction of samples with the smallest ||x|| are hard, the others easy (the reference feeds
the branches from separate loaders, e.g. frontal and profile faces). Per branch:
  positive similarities: cos(x_i, w_{y_i}) to the own class centre (a batch rarely holds two images of an
    identity), kept where > positive_threshold;
  negative similarities: max_{j: y_j != y_i} cos(x_i, x_j) over the other identities' samples of the batch;
  soft histograms h(t) = sum_i exp(-((v_i - t) / 0.1)^2 / 2) over t = 0, 1/bins, ..., normalised to sum 1;
loss = w_pos KL(P+_easy || P+_hard) + w_neg KL(P-_easy || P-_hard) + w_order sum_{a,b} (mean neg_a - mean pos_b),
KL(P || Q) = sum_t (P + 1e-9) log((P + 1e-9) / (Q + 1e-9)), a, b over both branches; a term over an empty set is 0.
Gradients flow through both branches (as the reference). Defaults w_pos 0.1, w_neg 0.02, w_order 0.5, bins 1000.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import ConfigError
from . import HEADS
from .context import Batch
from .margin import ArcFace

KL_EPS = 1e-9


def soft_histogram(values: Tensor, mask: Tensor, bins: int, bandwidth: float) -> tuple[Tensor, Tensor]:
    """(normalised Gaussian-kernel histogram (bins,) of values[mask] on t = k / bins, whether mask is non-empty)."""
    t = torch.arange(bins, device=values.device, dtype=values.dtype) / bins
    kernel = (-0.5 * ((values.unsqueeze(1) - t) / bandwidth).pow(2)).exp()
    hist = (kernel * mask.to(values.dtype).unsqueeze(1)).sum(dim=0)
    total = hist.sum()
    return hist / total.clamp(min=torch.finfo(values.dtype).tiny), mask.any()


def kl(p: Tensor, q: Tensor) -> Tensor:
    p, q = p + KL_EPS, q + KL_EPS
    return (p * (p.log() - q.log())).sum()


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    return torch.where(mask, values, torch.zeros_like(values)).sum() / mask.sum().clamp(min=1)


@HEADS.register("ddl")
class DDL(ArcFace):
    """ArcFace (s 64, m 0.5) plus the DDL batch term (see the module docstring)."""

    name = "ddl"

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float = 64.0,
        m: float = 0.5,
        pos_kl_weight: float = 0.1,
        neg_kl_weight: float = 0.02,
        order_weight: float = 0.5,
        positive_threshold: float = 0.0,
        hard_fraction: float = 0.5,
        bins: int = 1000,
        bandwidth: float = 0.1,
    ):
        super().__init__(embedding_size, num_classes, s, m)
        if not 0 <= hard_fraction <= 1:
            raise ConfigError(f"head 'ddl': hard_fraction={hard_fraction!r} must be in [0, 1] (default 0.5).")
        if int(bins) != bins or bins < 2 or not bandwidth > 0:
            raise ConfigError(f"head 'ddl': bins={bins!r} must be an integer >= 2 and bandwidth={bandwidth!r} > 0.")
        self.pos_kl_weight, self.neg_kl_weight, self.order_weight = pos_kl_weight, neg_kl_weight, order_weight
        self.positive_threshold, self.hard_fraction = float(positive_threshold), float(hard_fraction)
        self.bins, self.bandwidth = int(bins), float(bandwidth)

    def hparams(self) -> dict:
        return {
            **super().hparams(), "pos_kl_weight": self.pos_kl_weight, "neg_kl_weight": self.neg_kl_weight,
            "order_weight": self.order_weight, "positive_threshold": self.positive_threshold,
            "hard_fraction": self.hard_fraction, "bins": self.bins, "bandwidth": self.bandwidth,
        }  # fmt: skip

    def hard_mask(self, norms: Tensor) -> Tensor:
        """(B,) bool: the floor(hard_fraction * B) samples of smallest norm (ties: lower index first)."""
        hard = torch.zeros_like(norms, dtype=torch.bool)
        count = int(self.hard_fraction * len(norms))
        return hard.scatter_(0, norms.argsort(stable=True)[:count], True)

    def similarities(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(positive (B,), has a positive (B,), hardest negative (B,), has a negative (B,))."""
        pos = batch.target_cos()
        unit = F.normalize(batch.replicated(), dim=1)
        other = batch.labels.unsqueeze(0) != batch.labels.unsqueeze(1)
        sim = unit @ unit.t()
        neg = torch.where(other, sim, torch.full_like(sim, float("-inf"))).amax(dim=1)
        has_neg = other.any(dim=1)
        return pos, pos.detach() > self.positive_threshold, torch.where(has_neg, neg, torch.zeros_like(neg)), has_neg

    def batch_loss(self, batch: Batch) -> Tensor:
        pos, has_pos, neg, has_neg = self.similarities(batch)
        hard = self.hard_mask(batch.embeddings.detach().norm(p=2, dim=1))
        branches = (~hard, hard)  # easy (teacher) first
        loss = pos.new_zeros(())
        for weight, values, present in ((self.pos_kl_weight, pos, has_pos), (self.neg_kl_weight, neg, has_neg)):
            (p, p_any), (q, q_any) = (soft_histogram(values, present & b, self.bins, self.bandwidth) for b in branches)
            loss = loss + weight * torch.where(p_any & q_any, kl(p, q), 0.0)
        for a in branches:
            for b in branches:
                na, pb = has_neg & a, has_pos & b
                term = masked_mean(neg, na) - masked_mean(pos, pb)
                loss = loss + self.order_weight * torch.where(na.any() & pb.any(), term, 0.0)
        return loss

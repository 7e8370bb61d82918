"""Binary one-vs-all heads: sphereface2, uniface. loss_i = sum_j of one logistic term per class:

  loss_i = scale * (w_pos * softplus(-z_iy) + w_neg * sum_{j != y} softplus(z_ij))

(softplus(-z) = log(1 + e^-z), the binary cross-entropy of a positive). The classes are independent, so the
loss is a sum over chunks and ranks (criteria.separable_loss). The learnable bias b enters every logit; it is
held whole on every rank (its gradient is summed over ranks) and kept as b = b0(C) + beta with beta learnable
(init 0), so its initial value b0 follows the class count of every rank (a sharded head is built with its
shard's count) and a loaded beta is never re-initialised. Weight decay, if any, acts on beta.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from . import HEADS
from .base import CosineHead, check_positive, gather_target, put_target
from .context import LOCAL, Reducer, RowIndex
from .criteria import separable_loss

ANGLE_EPS = 1e-5  # SphereFace2-A/M clamp the angle to [eps, pi - ...] as the reference code


class BinaryHead(CosineHead):
    """Base: logits z (B, C') with the bias; weights w_pos / w_neg and `scale` define the per-class terms."""

    loss_form = "separable"
    pos_weight, neg_weight, scale = 1.0, 1.0, 1.0

    def __init__(self, embedding_size: int, num_classes: int):
        super().__init__(embedding_size, num_classes)
        self.beta = nn.Parameter(torch.zeros(()))

    def initial_bias(self, classes: int) -> float:
        raise NotImplementedError

    def bias(self) -> Tensor:
        """b = b0(C over every rank) + beta."""
        return self.beta + self.initial_bias(self.total_classes)

    def shared_parameters(self) -> list[nn.Parameter]:
        return [self.beta]

    def loss(
        self,
        embeddings: Tensor,
        weight: Tensor,
        labels: Tensor,
        state: dict | None = None,
        rows: RowIndex = None,
        chunk: int = 0,
        reduce: Reducer = LOCAL,
    ) -> Tensor:
        return separable_loss(self, embeddings, weight, labels, state, rows, chunk, reduce)

    def column_loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        columns = torch.arange(logits.shape[1], device=logits.device)
        target = columns.unsqueeze(0) == labels.unsqueeze(1)
        terms = torch.where(target, self.pos_weight * F.softplus(-logits), self.neg_weight * F.softplus(logits))
        return self.scale * terms.sum(dim=1)


@HEADS.register("sphereface2")
class SphereFace2(BinaryHead):
    """SphereFace2 (Wen et al., ICLR 2022): one-vs-all binary classification with similarity adjustment.

    g(z) = 2 ((z + 1) / 2)^t - 1. margin_type "C" (additive cosine): z_iy = r (g(cos_y) - m) + b,
    z_ij = r (g(cos_j) + m) + b; "A" (additive angular): z_iy = r g(cos(theta_y + m)) + b; "M" (multiplicative):
    z_iy = r g(cos(m theta_y)) + b, and for A/M z_ij = r g(cos_j) + b (angles clamped to [1e-5, 3.14159]).
    Per-class terms: lambda for the target, 1 - lambda for the others, scaled by lw / r (the reference's
    binary cross-entropy weights lw * C / r averaged over B x C). b0 is the paper's initialisation from (lambda, r,
    m, t, C). straight_through=True (default, as the authors' code) adds the adjustment without gradient
    (d z / d cos = r); False differentiates g. Defaults lambda 0.7, r 40, m 0.4, t 3, lw 50, type C.
    """

    name = "sphereface2"

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        lamda: float = 0.7,
        r: float = 40.0,
        m: float = 0.4,
        t: float = 3.0,
        lw: float = 50.0,
        margin_type: str = "C",
        straight_through: bool = True,
    ):
        super().__init__(embedding_size, num_classes)
        if margin_type not in ("C", "A", "M"):
            raise ConfigError(f"head 'sphereface2': margin_type={margin_type!r} must be 'C', 'A' or 'M'.")
        if not 0 < lamda < 1:
            raise ConfigError(f"head 'sphereface2': lamda={lamda!r} must be in (0, 1) (paper: 0.7).")
        check_positive(self.name, r=r, t=t, lw=lw)
        self.lamda, self.r, self.m, self.t, self.lw = float(lamda), float(r), float(m), float(t), float(lw)
        self.margin_type, self.straight_through = margin_type, bool(straight_through)
        self.pos_weight, self.neg_weight, self.scale = self.lamda, 1.0 - self.lamda, self.lw / self.r

    def hparams(self) -> dict:
        return {
            "lamda": self.lamda, "r": self.r, "m": self.m, "t": self.t, "lw": self.lw,
            "margin_type": self.margin_type, "straight_through": self.straight_through,
        }  # fmt: skip

    def initial_bias(self, classes: int) -> float:
        """The paper's b0: the bias balancing the initial positive and negative terms."""
        z = self.lamda / ((1.0 - self.lamda) * max(classes - 1, 1))
        half = 2.0 * 0.5**self.t - 1.0
        if self.margin_type == "C":
            ay, ai = self.r * (half - self.m), self.r * (half + self.m)
        else:
            angle = math.pi / 2 + self.m if self.margin_type == "A" else self.m * math.pi / 2
            theta_y = min(math.pi, angle)
            ay, ai = self.r * (2.0 * ((math.cos(theta_y) + 1.0) / 2.0) ** self.t - 1.0), self.r * half
        temp = (1.0 - z) ** 2 + 4.0 * z * math.exp(ay - ai)
        return math.log(2.0 * z) - ai - math.log(1.0 - z + math.sqrt(temp))

    def adjust(self, cos: Tensor) -> Tensor:
        """g(cos) = 2 ((cos + 1) / 2)^t - 1."""
        return 2.0 * ((cos + 1.0) / 2.0).pow(self.t) - 1.0

    def _through(self, value: Tensor, cos: Tensor) -> Tensor:
        """r * value (straight-through: forward value, gradient of r * cos)."""
        if self.straight_through:
            return self.r * (cos + (value - cos).detach())
        return self.r * value

    def target_value(self, cos_y: Tensor) -> Tensor:
        if self.margin_type == "C":
            return self.adjust(cos_y) - self.m
        theta = cos_y.clamp(-1 + ANGLE_EPS, 1 - ANGLE_EPS).acos()
        theta = theta + self.m if self.margin_type == "A" else theta * self.m
        return self.adjust(theta.clamp(ANGLE_EPS, 3.14159).cos())

    def negative_value(self, cos: Tensor) -> Tensor:
        return self.adjust(cos) + (self.m if self.margin_type == "C" else 0.0)

    def margin(self, cos: Tensor, labels: Tensor, norms: Tensor, state: dict | None = None) -> Tensor:
        b = self.bias().to(cos.dtype)
        cos_y, index, valid = gather_target(cos, labels)
        out = self._through(self.negative_value(cos), cos) + b
        current = self._through(self.negative_value(cos_y), cos_y) + b
        return put_target(out, index, valid, self._through(self.target_value(cos_y), cos_y) + b, current)


@HEADS.register("uniface")
class UniFace(BinaryHead):
    """UniFace (Zhou et al., ICCV 2023): unified cross-entropy with a learnable bias (unified threshold).

    z_iy = s (cos_y - m) - b, z_ij = s cos_j - b; loss_i = log(1 + e^{-z_iy}) + lambda sum_{j != y} log(1 +
    e^{z_ij}); b0 = ln(C r 10) (the authors' initialisation; r, lambda re-balance the negatives). The reference
    clamps z to [-s, s] before the exponential against overflow; softplus needs no clamp (same values inside).
    Defaults s 64, m 0.4, lambda 1, r 1.
    """

    name = "uniface"

    def __init__(
        self, embedding_size: int, num_classes: int, s: float = 64.0, m: float = 0.4, lamda: float = 1.0, r: float = 1.0
    ):
        super().__init__(embedding_size, num_classes)
        check_positive(self.name, s=s, lamda=lamda, r=r)
        self.s, self.m, self.lamda, self.r = float(s), float(m), float(lamda), float(r)
        self.neg_weight = self.lamda

    def hparams(self) -> dict:
        return {"s": self.s, "m": self.m, "lamda": self.lamda, "r": self.r}

    def initial_bias(self, classes: int) -> float:
        return math.log(classes * self.r * 10.0)

    def margin(self, cos: Tensor, labels: Tensor, norms: Tensor, state: dict | None = None) -> Tensor:
        b = self.bias().to(cos.dtype)
        cos_y, index, valid = gather_target(cos, labels)
        return put_target(cos * self.s - b, index, valid, (cos_y - self.m) * self.s - b, cos_y * self.s - b)

"""Fixed-margin heads: softmax, normface, sphereface, cosface, arcface, combined.

cos = cos(theta) between the L2-normalised embedding and class centre; only the target column gets a margin.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ...errors import ConfigError
from . import HEADS
from .base import CosineHead, Head, check_positive, gather_target, put_target
from .context import RowIndex, StepInputs

SIN_SQ_EPS = 1e-12  # floor on 1 - cos^2 so d sin / d cos stays finite at cos = +-1


def _cos_sin(m: float | Tensor) -> tuple[float | Tensor, float | Tensor]:
    if isinstance(m, Tensor):
        return torch.cos(m), torch.sin(m)
    return math.cos(m), math.sin(m)


def cos_add_angle(cos: Tensor, m: float | Tensor) -> Tensor:
    """cos(theta + m) = cos*cos(m) - sin*sin(m), sin = sqrt(max(1 - cos^2, 1e-12)); m a float or (B,)."""
    cos_m, sin_m = _cos_sin(m)
    sin = (1.0 - cos * cos).clamp(min=SIN_SQ_EPS).sqrt()
    return cos * cos_m - sin * sin_m


def arc_margin(cos: Tensor, m: float | Tensor, easy_margin: bool = False) -> Tensor:
    """ArcFace target cosine: cos(theta + m), kept monotonic in theta on [0, pi].

    Threshold variant (default): cos(theta + m) when cos > cos(pi - m), else cos - m*sin(m).
    Easy margin: cos(theta + m) when cos > 0, else cos (no margin).
    """
    shifted = cos_add_angle(cos, m)
    if easy_margin:
        return torch.where(cos > 0, shifted, cos)
    cos_m, sin_m = _cos_sin(m)
    return torch.where(cos > -cos_m, shifted, cos - m * sin_m)  # cos(pi - m) = -cos(m)


@HEADS.register("softmax")
class Softmax(Head):
    """Plain linear classifier: logits = x W^T (no bias, so the class rows shard; no normalisation)."""

    name = "softmax"

    def logits(
        self, embeddings: Tensor, weight: Tensor, labels: Tensor, state: dict | None = None, rows: RowIndex = None
    ) -> Tensor:
        return embeddings @ weight.t()


@HEADS.register("normface")
class NormFace(CosineHead):
    """NormFace: logits = s * cos(theta) for every class, no margin. s=64 like the other cosine heads."""

    name = "normface"

    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0):
        super().__init__(embedding_size, num_classes)
        check_positive(self.name, s=s)
        self.s = float(s)

    def hparams(self) -> dict:
        return {"s": self.s}

    def margin(self, cos: Tensor, labels: Tensor, norms: Tensor, state: dict | None = None) -> Tensor:
        return cos * self.s


class TargetMarginHead(CosineHead):
    """s * cos for non-targets; s * target(cos_y) on each row's target column (computed on (B,) values).

    interclass_filtering_threshold t > 0 (the combined-margin heads, as arcface_torch applies it): non-target
    cosines above t are set to 0 before the margin (likely the same identity under another label, so they get
    neither a logit nor a gradient); 0 turns it off.
    """

    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0, row_size: int | None = None):
        super().__init__(embedding_size, num_classes, row_size)
        check_positive(self.name, s=s)
        self.s = float(s)
        self.filter_threshold = 0.0

    def set_filter(self, threshold: float) -> None:
        """Inter-class filtering threshold in [0, 1) (0: off); see the class docstring."""
        if not 0.0 <= threshold < 1.0:
            raise ConfigError(
                f"head '{self.name}': interclass_filtering_threshold={threshold!r} must be in [0, 1) (0 = off; "
                "arcface_torch uses 0 or e.g. 0.3)."
            )
        self.filter_threshold = float(threshold)

    def filtered(self, cos: Tensor, labels: Tensor) -> Tensor:
        """cos with non-target entries above the filtering threshold set to 0 (cos itself when it is off)."""
        if not self.filter_threshold:
            return cos
        columns = torch.arange(cos.shape[1], device=cos.device)
        dirty = (cos > self.filter_threshold) & (columns.unsqueeze(0) != labels.unsqueeze(1))
        return torch.where(dirty, torch.zeros_like(cos), cos)

    def target(self, cos_y: Tensor, norms: Tensor, state: dict) -> Tensor:
        """Modified target cosine (B,) from the target cosine cos_y (B,), feature norms (B,), step state."""
        raise NotImplementedError

    def margin(self, cos: Tensor, labels: Tensor, norms: Tensor, state: dict | None = None) -> Tensor:
        state = self.resolve_state(cos, labels, norms, state)
        out = self.filtered(cos, labels) * self.s
        cos_y, index, valid = gather_target(cos, labels)
        return put_target(out, index, valid, self.target(cos_y, norms, state) * self.s, cos_y * self.s)


@HEADS.register("cosface")
class CosFace(TargetMarginHead):
    """CosFace / AM-Softmax: target logit s * (cos(theta_y) - m); s=64, m=0.35."""

    name = "cosface"

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float = 64.0,
        m: float = 0.35,
        interclass_filtering_threshold: float = 0.0,
    ):
        super().__init__(embedding_size, num_classes, s)
        self.m = float(m)
        self.set_filter(interclass_filtering_threshold)

    def hparams(self) -> dict:
        return {"s": self.s, "m": self.m, "interclass_filtering_threshold": self.filter_threshold}

    def target(self, cos_y: Tensor, norms: Tensor, state: dict) -> Tensor:
        return cos_y - self.m


@HEADS.register("arcface")
class ArcFace(TargetMarginHead):
    """ArcFace: target logit s * cos(theta_y + m); s=64, m=0.5.

    Where theta + m > pi (cos <= cos(pi - m)) the threshold variant cos - m*sin(m) keeps the logit monotonic;
    easy_margin=True instead applies the margin only where cos > 0.
    Gradient: exact derivative of the formula by default, d/dcos = s*sin(theta+m)/sin(theta).
    straight_through=True adds the margin without gradient (as arcface_torch does): the forward value is the
    margin's, the gradient that of plain s*cos.
    """

    name = "arcface"

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float = 64.0,
        m: float = 0.5,
        easy_margin: bool = False,
        straight_through: bool = False,
        interclass_filtering_threshold: float = 0.0,
    ):
        super().__init__(embedding_size, num_classes, s)
        if not 0 <= m < math.pi:
            raise ConfigError(f"head 'arcface': m={m!r} must be an angle in [0, pi) radians (typical 0.5).")
        self.m = float(m)
        self.easy_margin = bool(easy_margin)
        self.straight_through = bool(straight_through)
        self.set_filter(interclass_filtering_threshold)

    def hparams(self) -> dict:
        return {
            "s": self.s, "m": self.m, "easy_margin": self.easy_margin, "straight_through": self.straight_through,
            "interclass_filtering_threshold": self.filter_threshold,
        }  # fmt: skip

    def target(self, cos_y: Tensor, norms: Tensor, state: dict) -> Tensor:
        if self.straight_through:
            with torch.no_grad():
                delta = arc_margin(cos_y, self.m, self.easy_margin) - cos_y
            return cos_y + delta
        return arc_margin(cos_y, self.m, self.easy_margin)


@HEADS.register("combined")
class CombinedMargin(TargetMarginHead):
    """InsightFace combined margin: target logit s * (cos(m1*theta_y + m2) - m3); defaults (1.0, 0.3, 0.2).

    theta = acos(cos) with cos clamped to +-(1 - 1e-7) so d theta / d cos stays finite. No threshold variant:
    the target is not monotonic where m1*theta + m2 > pi (as in the reference formulation).
    """

    name = "combined"
    ACOS_CLAMP = 1.0 - 1e-7

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float = 64.0,
        m1: float = 1.0,
        m2: float = 0.3,
        m3: float = 0.2,
        interclass_filtering_threshold: float = 0.0,
    ):
        super().__init__(embedding_size, num_classes, s)
        self.m1, self.m2, self.m3 = float(m1), float(m2), float(m3)
        self.set_filter(interclass_filtering_threshold)

    def hparams(self) -> dict:
        return {
            "s": self.s, "m1": self.m1, "m2": self.m2, "m3": self.m3,
            "interclass_filtering_threshold": self.filter_threshold,
        }  # fmt: skip

    def target(self, cos_y: Tensor, norms: Tensor, state: dict) -> Tensor:
        theta = cos_y.clamp(-self.ACOS_CLAMP, self.ACOS_CLAMP).acos()
        return torch.cos(self.m1 * theta + self.m2) - self.m3


def chebyshev(cos: Tensor, m: int) -> Tensor:
    """cos(m*theta) as the Chebyshev polynomial T_m(cos): T_0 = 1, T_1 = c, T_{n+1} = 2c T_n - T_{n-1}."""
    prev, cur = torch.ones_like(cos), cos
    if m == 0:
        return prev
    for _ in range(m - 1):
        prev, cur = cur, 2 * cos * cur - prev
    return cur


def sphere_psi(cos: Tensor, m: int) -> Tensor:
    """A-Softmax psi(theta) = (-1)^k cos(m*theta) - 2k for theta in [k*pi/m, (k+1)*pi/m], k = 0..m-1.

    Monotonically decreasing in theta from 1 to -(2m - 1); k is piecewise constant (no gradient).
    """
    with torch.no_grad():
        k = torch.floor(cos.acos() * (m / math.pi)).clamp_(0, m - 1)
        sign = 1.0 - 2.0 * torch.remainder(k, 2)
    return sign * chebyshev(cos, m) - 2.0 * k


@HEADS.register("sphereface")
class SphereFace(TargetMarginHead):
    """SphereFace (A-Softmax) with the reference's lambda annealing, on the normalised-cosine scale.

    target logit = s * (lambda*cos + psi(theta)) / (1 + lambda); non-targets s*cos.
    lambda = max(lambda_min, base * (1 + gamma*it)^-power) (defaults 1000, 0.12, 1, 5): starts near plain
    softmax and anneals toward the margin. The original A-Softmax scales by the feature norm ||x||; here W and x
    are normalised and a fixed s (default 64, like the other cosine heads) is used instead.
    `iteration` (buffer) counts training steps (step_state calls in training mode); it is incremented before
    lambda is computed, as in the reference (the first training step uses it = 1).
    """

    name = "sphereface"

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float = 64.0,
        m: int = 4,
        base: float = 1000.0,
        gamma: float = 0.12,
        power: float = 1.0,
        lambda_min: float = 5.0,
    ):
        super().__init__(embedding_size, num_classes, s)
        if int(m) != m or m < 1:
            raise ConfigError(f"head 'sphereface': m={m!r} must be a positive integer (the reference uses 4).")
        check_positive(self.name, base=base)
        if lambda_min < 0:
            raise ConfigError(f"head 'sphereface': lambda_min={lambda_min!r} must be >= 0 (reference: 5).")
        self.m = int(m)
        self.base, self.gamma, self.power, self.lambda_min = float(base), float(gamma), float(power), float(lambda_min)
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))

    def hparams(self) -> dict:
        return {
            "s": self.s, "m": self.m, "base": self.base, "gamma": self.gamma,
            "power": self.power, "lambda_min": self.lambda_min,
        }  # fmt: skip

    def current_lambda(self) -> Tensor:
        """lambda = max(lambda_min, base * (1 + gamma * iteration)^-power), a 0-d float64 tensor."""
        it = self.iteration.to(torch.float64)
        return (self.base * (1.0 + self.gamma * it).pow(-self.power)).clamp(min=self.lambda_min)

    def step_state(self, inputs: StepInputs) -> dict:
        """Increments `iteration` (training mode), then {"lambda": current_lambda()}."""
        if self.training:
            self.iteration += 1
        return {"lambda": self.current_lambda()}

    def target(self, cos_y: Tensor, norms: Tensor, state: dict) -> Tensor:
        lam = state["lambda"].to(cos_y.dtype)
        return (lam * cos_y + sphere_psi(cos_y, self.m)) / (1.0 + lam)

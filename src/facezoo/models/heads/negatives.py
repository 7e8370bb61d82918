"""Hard-negative heads: mv_softmax (MV-AM / MV-Arc), arcnegface, npcface.

Each re-weights the non-target logits a row finds hard relative to its own target, so every chunk and rank needs
each row's target cosine: they set needs_target_cos and take it from the step state (the classifier shares it
over ranks). Re-weighting masks and factors are detached, as in the reference code (FaceX-Zoo).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ...errors import ConfigError
from . import HEADS
from .base import CosineHead, check_positive, gather_target, put_target
from .context import StepInputs
from .margin import arc_margin, cos_add_angle

UNKNOWN = 2.0  # a bound above every cosine: rows whose target is unknown find no hard negative


def _angle(head: str, m: float) -> float:
    if not 0 <= m < math.pi:
        raise ConfigError(f"head '{head}': m={m!r} must be an angle in [0, pi) radians.")
    return float(m)


class HardNegativeHead(CosineHead):
    """Negatives above the row's state["bound"] become reweight(cos, hard); the target becomes target(cos_y)."""

    needs_target_cos = True
    s = 64.0

    def reweight(self, cos: Tensor, hard: Tensor) -> Tensor:
        raise NotImplementedError

    def target(self, cos_y: Tensor, state: dict) -> Tensor:
        raise NotImplementedError

    def margin(self, cos: Tensor, labels: Tensor, norms: Tensor, state: dict | None = None) -> Tensor:
        state = self.resolve_state(cos, labels, norms, state)
        cos_y, index, valid = gather_target(cos, labels)
        with torch.no_grad():
            hard = cos > state["bound"].to(cos.dtype).unsqueeze(1)
        out = self.reweight(cos, hard) * self.s
        current = self.reweight(cos_y, hard.gather(1, index).squeeze(1)) * self.s
        return put_target(out, index, valid, self.target(cos_y, state) * self.s, current)


@HEADS.register("mv_softmax")
class MVSoftmax(HardNegativeHead):
    """MV-Softmax (Wang et al., AAAI 2020), FaceX-Zoo's form: mis-classified vectors re-weighted by t.

    variant "am": target f = cos_y - m where cos_y > m (else cos_y), bound = cos_y - m;
    variant "arc": target f = cos(theta_y + m) where cos_y > 0 (else cos_y), bound = cos(theta_y + m).
    A negative j with cos_j > bound is mis-classified and becomes (t + 1) cos_j + t, else cos_j; logits * s.
    Defaults s = 32, t = 0.2 (the paper's; FaceX-Zoo's config uses 0.12), m = 0.35 (am) / 0.5 (arc).
    """

    name = "mv_softmax"

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float = 32.0,
        m: float | None = None,
        t: float = 0.2,
        variant: str = "am",
    ):
        super().__init__(embedding_size, num_classes)
        if variant not in ("am", "arc"):
            raise ConfigError(f"head 'mv_softmax': variant={variant!r} must be 'am' (MV-AM) or 'arc' (MV-Arc).")
        check_positive(self.name, s=s)
        if t < 0:
            raise ConfigError(f"head 'mv_softmax': t={t!r} must be >= 0 (paper: 0.2).")
        self.variant = variant
        self.m = _angle(self.name, (0.35 if variant == "am" else 0.5) if m is None else m)
        self.s, self.t = float(s), float(t)

    def hparams(self) -> dict:
        return {"s": self.s, "m": self.m, "t": self.t, "variant": self.variant}

    def bound(self, cos_y: Tensor) -> Tensor:
        """A negative above this is mis-classified: cos_y - m (am) or cos(theta_y + m) (arc)."""
        return cos_y - self.m if self.variant == "am" else cos_add_angle(cos_y, self.m)

    def target(self, cos_y: Tensor, state: dict) -> Tensor:
        if self.variant == "am":
            return torch.where(cos_y > self.m, cos_y - self.m, cos_y)
        return torch.where(cos_y > 0, cos_add_angle(cos_y, self.m), cos_y)

    @torch.no_grad()
    def step_state(self, inputs: StepInputs) -> dict:
        return {"bound": torch.where(inputs.valid, self.bound(inputs.target_cos), UNKNOWN)}

    def reweight(self, cos: Tensor, hard: Tensor) -> Tensor:
        return torch.where(hard, (self.t + 1.0) * cos + self.t, cos)


@HEADS.register("arcnegface")
class ArcNegFace(CosineHead):
    """ArcNegFace (Liu et al., ICCVW 2019): ArcFace target and Gaussian re-weighted negatives.

    target a = cos(theta_y + m) (threshold variant: cos - m sin(m) where theta + m > pi); every negative becomes
    t_ij cos_ij + t_ij - 1 with t_ij = alpha * exp(-(cos_ij - a_i)^2 / sigma), detached (a_i too); logits * s.
    Defaults s = 64, m = 0.5, alpha = 1.2, sigma = 2. Rows whose target is unknown keep plain s * cos.
    """

    name = "arcnegface"
    needs_target_cos = True

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float = 64.0,
        m: float = 0.5,
        alpha: float = 1.2,
        sigma: float = 2.0,
    ):
        super().__init__(embedding_size, num_classes)
        check_positive(self.name, s=s, alpha=alpha, sigma=sigma)
        self.s, self.m, self.alpha, self.sigma = float(s), _angle(self.name, m), float(alpha), float(sigma)

    def hparams(self) -> dict:
        return {"s": self.s, "m": self.m, "alpha": self.alpha, "sigma": self.sigma}

    @torch.no_grad()
    def step_state(self, inputs: StepInputs) -> dict:
        return {"a": arc_margin(inputs.target_cos, self.m), "known": inputs.valid}

    def margin(self, cos: Tensor, labels: Tensor, norms: Tensor, state: dict | None = None) -> Tensor:
        state = self.resolve_state(cos, labels, norms, state)
        cos_y, index, valid = gather_target(cos, labels)
        with torch.no_grad():
            a = state["a"].to(cos.dtype).unsqueeze(1)
            weight = self.alpha * (-(cos - a).pow(2) / self.sigma).exp()
            weight = torch.where(state["known"].unsqueeze(1), weight, torch.ones_like(weight))
        out = (weight * cos + weight - 1.0) * self.s
        w_y = weight.gather(1, index).squeeze(1)
        current = (w_y * cos_y + w_y - 1.0) * self.s
        return put_target(out, index, valid, arc_margin(cos_y, self.m) * self.s, current)


@HEADS.register("npcface")
class NPCFace(HardNegativeHead):
    """NPCFace (Zeng et al., 2020), FaceX-Zoo's form: negative and positive margins that cooperate.

    bound_i = cos(theta_y + m); hard negatives j (cos_ij > bound_i) become t cos_ij + a; the target gets the
    per-sample angular margin m_i = m0 + m1 * mean of row i's hard negative cosines (0 when it has none),
    target cos(theta_y + m_i) where cos_y > 0 (else cos_y); logits * s. m_i and the masks are detached; the mean
    runs over every class column of every rank (a pass over the columns in step_state).
    Defaults s = 64, m = 0.5, m0 = 0.4, m1 = 0.2, t = 1.1, a = 0.2.
    """

    name = "npcface"

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float = 64.0,
        m: float = 0.5,
        m0: float = 0.4,
        m1: float = 0.2,
        t: float = 1.1,
        a: float = 0.2,
    ):
        super().__init__(embedding_size, num_classes)
        check_positive(self.name, s=s)
        self.s, self.m, self.m0, self.m1 = float(s), _angle(self.name, m), float(m0), float(m1)
        self.t, self.a = float(t), float(a)

    def hparams(self) -> dict:
        return {"s": self.s, "m": self.m, "m0": self.m0, "m1": self.m1, "t": self.t, "a": self.a}

    @torch.no_grad()
    def step_state(self, inputs: StepInputs) -> dict:
        bound = torch.where(inputs.valid, cos_add_angle(inputs.target_cos, self.m), UNKNOWN)
        total = torch.zeros_like(bound)
        count = torch.zeros_like(bound)
        for cos, labels in inputs.columns():
            columns = torch.arange(cos.shape[1], device=cos.device)
            hard = (cos > bound.to(cos.dtype).unsqueeze(1)) & (columns.unsqueeze(0) != labels.unsqueeze(1))
            total += torch.where(hard, cos, 0.0).sum(dim=1).to(total.dtype)
            count += hard.sum(dim=1).to(count.dtype)
        mean = inputs.reduce.sum(total) / inputs.reduce.sum(count).clamp(min=1)
        return {"bound": bound, "m": self.m0 + self.m1 * mean}

    def reweight(self, cos: Tensor, hard: Tensor) -> Tensor:
        return torch.where(hard, self.t * cos + self.a, cos)

    def target(self, cos_y: Tensor, state: dict) -> Tensor:
        return torch.where(cos_y > 0, cos_add_angle(cos_y, state["m"].to(cos_y.dtype)), cos_y)

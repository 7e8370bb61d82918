"""Adaptive-margin heads: curricularface (hard negatives, running t), magface (norm-dependent margin),
adaface (norm-as-quality margin with running batch statistics).

State lives in buffers (checkpoints carry it) and is updated only in training mode, with detached values.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ...errors import ConfigError
from . import HEADS
from .base import check_positive, gather_target, put_target
from .context import StepInputs
from .margin import TargetMarginHead, arc_margin, cos_add_angle


@HEADS.register("curricularface")
class CurricularFace(TargetMarginHead):
    """CurricularFace: target s*cos(theta_y + m) (ArcFace threshold variant); hard negatives re-weighted.

    A negative j with cos_j > cos(theta_y + m) becomes cos_j * (t + cos_j) (gradient t + 2 cos_j, t detached).
    The comparison uses the raw cos(theta_y + m) (before the threshold fallback), as the authors' code does.
    t (buffer, init 0) <- 0.99 t + 0.01 mean_i(cos_y_i), detached, in training mode; as in the paper's code
    t is updated *before* it is used in the same step. s=64, m=0.5.
    step_state takes every row's target cosine (a sharded classifier shares them over ranks), so sharded or
    chunked logits equal full-FC ones. Called without a state on a subset of class rows, rows whose target is
    absent (label -1) get no re-weighting (their cos(theta_y + m) is unknown there) and the t update averages
    only rows whose target is present.
    """

    needs_target_cos = True

    name = "curricularface"

    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0, m: float = 0.5, momentum: float = 0.01):
        super().__init__(embedding_size, num_classes, s)
        if not 0 <= m < math.pi:
            raise ConfigError(f"head 'curricularface': m={m!r} must be an angle in [0, pi) radians (typical 0.5).")
        if not 0 <= momentum <= 1:
            raise ConfigError(f"head 'curricularface': momentum={momentum!r} must be in [0, 1] (paper: 0.01).")
        self.m = float(m)
        self.momentum = float(momentum)
        self.register_buffer("t", torch.zeros(()))

    def hparams(self) -> dict:
        return {"s": self.s, "m": self.m, "momentum": self.momentum}

    @torch.no_grad()
    def update_t(self, cos_y: Tensor, valid: Tensor) -> None:
        """t <- (1 - momentum) t + momentum * mean(cos_y over valid rows); unchanged if no row is valid."""
        count = valid.sum()
        mean = torch.where(valid, cos_y, 0).sum() / count.clamp(min=1)
        new = (1.0 - self.momentum) * self.t + self.momentum * mean.to(self.t.dtype)
        self.t.copy_(torch.where(count > 0, new, self.t))

    @torch.no_grad()
    def step_state(self, inputs: StepInputs) -> dict:
        """Updates t (training mode), then {"t": t, "bound": cos(theta_y + m) per row, 2 (> any cos) if unknown}."""
        if self.training:
            self.update_t(inputs.target_cos, inputs.valid)
        bound = torch.where(inputs.valid, cos_add_angle(inputs.target_cos, self.m), 2.0)
        return {"t": self.t.clone(), "bound": bound}

    def margin(self, cos: Tensor, labels: Tensor, norms: Tensor, state: dict | None = None) -> Tensor:
        state = self.resolve_state(cos, labels, norms, state)
        cos_y, index, valid = gather_target(cos, labels)
        with torch.no_grad():
            hard = cos > state["bound"].to(cos.dtype).unsqueeze(1)
        t = state["t"].to(cos.dtype)
        out = torch.where(hard, cos * (t + cos), cos) * self.s
        # rows whose target is not among these columns scatter back their column-0 value, re-weighted or not
        current = torch.where(hard.gather(1, index).squeeze(1), cos_y * (t + cos_y), cos_y) * self.s
        return put_target(out, index, valid, arc_margin(cos_y, self.m) * self.s, current)


@HEADS.register("magface")
class MagFace(TargetMarginHead):
    """MagFace: target s*cos(theta_y + m(a)), a = ||x|| clamped to [l_a, u_a].

    m(a) = (u_m - l_m)/(u_a - l_a) * (a - l_a) + l_m (0.45 at a=10 to 0.8 at a=110), with the ArcFace
    threshold variant per sample; the margin keeps its gradient w.r.t. a. regularizer(x) =
    lambda_g * mean(g(a)), g(a) = a/u_a^2 + 1/a (lambda_g=35). s=64.
    """

    name = "magface"

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float = 64.0,
        l_a: float = 10.0,
        u_a: float = 110.0,
        l_m: float = 0.45,
        u_m: float = 0.8,
        lambda_g: float = 35.0,
    ):
        super().__init__(embedding_size, num_classes, s)
        check_positive(self.name, l_a=l_a)
        if not u_a > l_a:
            raise ConfigError(f"head 'magface': u_a={u_a!r} must be greater than l_a={l_a!r} (paper: 110 > 10).")
        self.l_a, self.u_a, self.l_m, self.u_m = float(l_a), float(u_a), float(l_m), float(u_m)
        self.lambda_g = float(lambda_g)

    def hparams(self) -> dict:
        return {
            "s": self.s, "l_a": self.l_a, "u_a": self.u_a, "l_m": self.l_m,
            "u_m": self.u_m, "lambda_g": self.lambda_g,
        }  # fmt: skip

    def clamp_norm(self, norms: Tensor) -> Tensor:
        return norms.clamp(self.l_a, self.u_a)

    def margin_of(self, norms: Tensor) -> Tensor:
        """m(a) for feature norms (B,), a clamped to [l_a, u_a]."""
        a = self.clamp_norm(norms)
        return (self.u_m - self.l_m) / (self.u_a - self.l_a) * (a - self.l_a) + self.l_m

    def target(self, cos_y: Tensor, norms: Tensor, state: dict) -> Tensor:
        return arc_margin(cos_y, self.margin_of(norms).to(cos_y.dtype))

    def regularizer(self, embeddings: Tensor) -> Tensor:
        a = self.clamp_norm(embeddings.norm(p=2, dim=1))
        return self.lambda_g * (a / self.u_a**2 + 1.0 / a).mean()


@HEADS.register("adaface")
class AdaFace(TargetMarginHead):
    """AdaFace: feature norm as image quality; margin between angular (hard) and additive (easy).

    a = clip(||x||, 0.001, 100) detached; (mu, sigma) running mean / unbiased std of a (init 20, 100),
    updated with momentum t_alpha in training mode *before* use (as in the authors' code);
    z = clip(h * (a - mu) / (sigma + eps), -1, 1); target angle theta_y - m*z clipped to [eps, pi - eps],
    target logit s * (cos(theta_y - m*z) - (m + m*z)). Defaults m=0.4, h=0.333, s=64, t_alpha=0.01, eps=1e-3.
    The target cosine is clamped to +-(1 - eps) before acos as in the paper's code; non-target logits stay
    s*cos (the paper also clamps those, which changes them by at most s*eps).
    """

    name = "adaface"

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float = 64.0,
        m: float = 0.4,
        h: float = 0.333,
        t_alpha: float = 0.01,
        eps: float = 1e-3,
    ):
        super().__init__(embedding_size, num_classes, s)
        if not 0 <= t_alpha <= 1:
            raise ConfigError(f"head 'adaface': t_alpha={t_alpha!r} must be in [0, 1] (paper: 0.01).")
        check_positive(self.name, eps=eps)
        self.m, self.h, self.t_alpha, self.eps = float(m), float(h), float(t_alpha), float(eps)
        self.register_buffer("batch_mean", torch.full((), 20.0))
        self.register_buffer("batch_std", torch.full((), 100.0))

    def hparams(self) -> dict:
        return {"s": self.s, "m": self.m, "h": self.h, "t_alpha": self.t_alpha, "eps": self.eps}

    @torch.no_grad()
    def update_stats(self, a: Tensor) -> None:
        """(mu, sigma) <- (1 - t_alpha)(mu, sigma) + t_alpha (mean(a), std(a)); sigma kept for a batch of 1."""
        alpha = self.t_alpha
        self.batch_mean.mul_(1 - alpha).add_(alpha * a.mean().to(self.batch_mean.dtype))
        if a.numel() > 1:
            self.batch_std.mul_(1 - alpha).add_(alpha * a.std().to(self.batch_std.dtype))

    def scaler(self, norms: Tensor) -> Tensor:
        """z = clip(h * (a - mu) / (sigma + eps), -1, 1), a = clip(||x||, 0.001, 100) detached; updates stats."""
        a = norms.detach().clamp(0.001, 100.0)
        if self.training:
            self.update_stats(a)
        mu, sigma = self.batch_mean.to(a.dtype), self.batch_std.to(a.dtype)
        return (self.h * (a - mu) / (sigma + self.eps)).clamp(-1.0, 1.0)

    def step_state(self, inputs: StepInputs) -> dict:
        """{"z": scaler(norms)}: the batch statistics are updated here, once per step (training mode)."""
        return {"z": self.scaler(inputs.norms)}

    def target(self, cos_y: Tensor, norms: Tensor, state: dict) -> Tensor:
        z = state["z"].to(cos_y.dtype)
        theta = cos_y.clamp(-1 + self.eps, 1 - self.eps).acos()
        theta_m = (theta - self.m * z).clamp(self.eps, math.pi - self.eps)
        return theta_m.cos() - (self.m + self.m * z)

"""SCF (Li et al., CVPR 2021, TFace): spherical confidence, a von Mises-Fisher concentration per sample.

A small module on the embedding predicts kappa_i > 0 (the head owns it, so every backbone works unchanged):
  log kappa_i = MLP(x_i) (D -> D/2 -> D/4 -> 1, ReLU), kappa_i = 1e-6 + exp(min(log kappa_i, ln kappa_max));
and batch_loss adds the vMF negative log-likelihood of the embedding direction around its class centre,
  L = mean_i [ -kappa_i cos(theta_{y_i}) - (d/2 - 1) ln kappa_i + ln I_{d/2-1}(kappa_i) + (d/2) ln(2 pi) ],
(the reference's KL(delta || vMF) on the unit sphere; I_v the modified Bessel function, d = D; a negative
log-density, so it goes below 0 once kappa is large), beside ArcFace
(s 64, m 0.5), which trains the embedding. With detach=True (default) the term trains only the kappa module, as
the paper does on a fixed embedding model; cos(theta_y) is always detached. kappa is the sample's confidence
(`head.kappa(x)`); it lives in the training checkpoint's head state, not in the backbone's model.pt.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from . import HEADS
from .context import Batch
from .margin import ArcFace

KAPPA_EPS = 1e-6
WINDOW_SIGMAS = 12.0  # log I_v sums the series over the mode +- this many widths (terms beyond: < e^-70)


def bessel_window(v: float, kappa_max: float) -> int:
    """Half-width of the series window for log I_v(kappa), kappa <= kappa_max (see log_bessel_iv)."""
    mode = max(0.0, (math.sqrt(v * v + kappa_max * kappa_max) - v) / 2.0)
    return math.ceil(WINDOW_SIGMAS * math.sqrt(mode + 1.0)) + 20


def log_bessel_iv(v: float, kappa: Tensor, window: int) -> Tensor:
    """ln I_v(kappa) (v > -1, kappa > 0) by the series I_v = sum_k (kappa/2)^(2k+v) / (k! Gamma(k+v+1)) in float64.

    The terms are log-concave in k with their mode at k* = (sqrt(v^2 + kappa^2) - v - 2) / 2 and width below
    sqrt(k* + 1), so summing 2 * window + 1 terms around k* (window from bessel_window) is exact to double
    precision; logsumexp keeps it finite for any order and argument, and autograd gives its exact derivative.
    """
    k64 = kappa.to(torch.float64)
    mode = ((torch.sqrt(v * v + k64.detach() ** 2) - v - 2.0) / 2.0).clamp(min=0).floor()
    k = (mode - window).clamp(min=0).unsqueeze(1) + torch.arange(2 * window + 1, dtype=torch.float64, device=k64.device)
    log_terms = (2.0 * k + v) * (k64 / 2.0).log().unsqueeze(1) - torch.lgamma(k + 1.0) - torch.lgamma(k + v + 1.0)
    return torch.logsumexp(log_terms, dim=1).to(kappa.dtype)


@HEADS.register("scf")
class SCF(ArcFace):
    """ArcFace plus the SCF vMF term with its kappa module (see the module docstring)."""

    name = "scf"

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float = 64.0,
        m: float = 0.5,
        scf_weight: float = 1.0,
        kappa_max: float = 5e4,
        detach: bool = True,
    ):
        super().__init__(embedding_size, num_classes, s, m)
        if not scf_weight >= 0 or not kappa_max > KAPPA_EPS:
            raise ConfigError(f"head 'scf': scf_weight={scf_weight!r} must be >= 0 and kappa_max={kappa_max!r} > 0.")
        self.scf_weight, self.kappa_max, self.detach = float(scf_weight), float(kappa_max), bool(detach)
        hidden, narrow = max(1, embedding_size // 2), max(1, embedding_size // 4)
        self.kappa_net = nn.Sequential(
            nn.Linear(embedding_size, hidden), nn.ReLU(), nn.Linear(hidden, narrow), nn.ReLU(), nn.Linear(narrow, 1)
        )
        self.window = bessel_window(embedding_size / 2.0 - 1.0, self.kappa_max)

    def hparams(self) -> dict:
        return {**super().hparams(), "scf_weight": self.scf_weight, "kappa_max": self.kappa_max, "detach": self.detach}

    def kappa(self, embeddings: Tensor) -> Tensor:
        """(B,) vMF concentration of each embedding (B, D): the sample's confidence."""
        x = embeddings.detach() if self.detach else embeddings
        log_kappa = self.kappa_net(x.to(self.kappa_net[0].weight.dtype)).squeeze(1)
        return KAPPA_EPS + log_kappa.clamp(max=math.log(self.kappa_max)).exp()

    def vmf_nll(self, kappa: Tensor, cos: Tensor) -> Tensor:
        """(B,) -ln vMF(x | w_y, kappa) on the unit sphere of dimension d = D."""
        d = self.embedding_size
        v = d / 2.0 - 1.0
        return -kappa * cos - v * kappa.log() + log_bessel_iv(v, kappa, self.window) + d / 2.0 * math.log(2 * math.pi)

    def batch_loss(self, batch: Batch) -> Tensor:
        kappa = self.kappa(batch.replicated())
        cos = batch.target_cos().detach().to(kappa.dtype)
        return self.scf_weight * self.vmf_nll(kappa, cos).mean()

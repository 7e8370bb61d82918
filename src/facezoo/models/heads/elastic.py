"""ElasticFace (Boutros et al., CVPRW 2022): a margin drawn per sample and step from N(m, sigma).

elasticface_arc: target s * cos(theta_y + m_i) (the reference's plain form, no threshold variant);
elasticface_cos: target s * (cos_y - m_i); non-targets s * cos. The "+" variants (elasticface_arc_plus,
elasticface_cos_plus) sort the drawn margins so that the sample with the k-th largest target cosine gets the
k-th smallest margin (larger target angle, larger margin; the authors' code indexes the sorted margins by the
argsort itself, which is not that assignment: here the intent is implemented).
Defaults (paper): s = 64; Arc m = 0.5, sigma 0.05 (+: 0.0175); Cos m = 0.35, sigma 0.05 (+: 0.025).

The draws come from the head's own generator, seeded by (seed, number of training draws so far), so every rank
draws the same margins for the global batch, single-process and sharded training agree, and a resumed run
repeats them (the count is the buffer `draws`). Eval mode uses m itself.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...errors import ConfigError
from . import HEADS
from .context import StepInputs
from .margin import TargetMarginHead, cos_add_angle

SEED_STRIDE = 1_000_003  # draw n of seed k uses generator seed k * stride + n


class ElasticFace(TargetMarginHead):
    """Per-sample margins m_i ~ N(m, sigma) (see the module docstring); subclasses apply m_i to the target."""

    needs_target_cos = True  # the "+" variants sort by it

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float = 64.0,
        m: float = 0.5,
        std: float = 0.05,
        plus: bool = False,
        seed: int = 0,
    ):
        super().__init__(embedding_size, num_classes, s)
        if not std >= 0:
            raise ConfigError(f"head '{self.name}': std={std!r} must be >= 0 (paper: 0.05, 0.0175 or 0.025).")
        self.m, self.std, self.plus, self.seed = float(m), float(std), bool(plus), int(seed)
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))
        self._draws = 0  # host copy of `draws`: seeding needs an int, reading the buffer would sync

    def hparams(self) -> dict:
        return {"s": self.s, "m": self.m, "std": self.std, "plus": self.plus, "seed": self.seed}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if prefix + "draws" in state_dict:
            self._draws = int(state_dict[prefix + "draws"])

    @torch.no_grad()
    def step_state(self, inputs: StepInputs) -> dict:
        """{"m": (B,) margins}: drawn (and sorted, "+") in training mode, m everywhere in eval mode."""
        cos_y = inputs.target_cos
        if not self.training:
            return {"m": torch.full_like(cos_y, self.m)}
        generator = torch.Generator(device=cos_y.device)
        generator.manual_seed(self.seed * SEED_STRIDE + self._draws)
        noise = torch.randn(cos_y.shape, generator=generator, device=cos_y.device, dtype=torch.float64)
        margins = (self.m + self.std * noise).to(cos_y.dtype)
        if self.plus:  # k-th largest target cosine <- k-th smallest margin
            order = torch.where(inputs.valid, cos_y, float("-inf")).argsort(descending=True, stable=True)
            margins = torch.empty_like(margins).scatter_(0, order, margins.sort().values)
        self._draws += 1
        self.draws.fill_(self._draws)
        return {"m": margins}


@HEADS.register("elasticface_arc")
@HEADS.register("elasticface_arc_plus", plus=True, std=0.0175)
class ElasticArcFace(ElasticFace):
    """ElasticFace-Arc: target s * cos(theta_y + m_i), m_i ~ N(0.5, 0.05) (see the module docstring)."""

    name = "elasticface_arc"

    def target(self, cos_y: Tensor, norms: Tensor, state: dict) -> Tensor:
        return cos_add_angle(cos_y, state["m"].to(cos_y.dtype))


@HEADS.register("elasticface_cos")
@HEADS.register("elasticface_cos_plus", plus=True, std=0.025)
class ElasticCosFace(ElasticFace):
    """ElasticFace-Cos: target s * (cos_y - m_i), m_i ~ N(0.35, 0.05) (see the module docstring)."""

    name = "elasticface_cos"

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float = 64.0,
        m: float = 0.35,
        std: float = 0.05,
        plus: bool = False,
        seed: int = 0,
    ):
        super().__init__(embedding_size, num_classes, s, m, std, plus, seed)

    def target(self, cos_y: Tensor, norms: Tensor, state: dict) -> Tensor:
        return cos_y - state["m"].to(cos_y.dtype)

"""Focal loss on the head's margin softmax (Lin et al., ICCV 2017), as an extra term beside it.

FL = mean_i (1 - p_i)^gamma * (-log p_i), p_i = the margin softmax's probability of sample i's class, i.e.
exp(-loss_i) of the head's per-sample cross-entropy (so it is exact under sharding, chunking and Partial FC).
The gradient flows through both factors. gamma = 2 (the paper's); gamma = 0 gives the cross-entropy again.
"""

from __future__ import annotations

from torch import Tensor, nn

from ...errors import ConfigError
from ..heads.context import Batch
from . import LOSSES
from .base import AuxLoss


@LOSSES.register("focal")
class FocalLoss(AuxLoss):
    """(1 - p)^gamma-weighted cross-entropy of the margin softmax; needs a softmax head."""

    name = "focal"

    def __init__(self, embedding_size: int, num_classes: int, gamma: float = 2.0):
        super().__init__(embedding_size, num_classes)
        if not gamma >= 0:
            raise ConfigError(f"aux loss 'focal': gamma={gamma!r} must be >= 0 (the paper uses 2).")
        self.gamma = float(gamma)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"

    def check(self, head: nn.Module) -> None:
        if head.loss_form != "softmax":
            raise ConfigError(
                f"aux loss 'focal' re-weights a softmax cross-entropy, but head '{head.name}' has a "
                f"{head.loss_form} (one-vs-all) loss; drop it from head.aux or use a softmax head."
            )

    def forward(self, batch: Batch) -> Tensor:
        loss = batch.sample_loss
        return ((-loss).exp().neg().add(1.0).clamp(min=0.0).pow(self.gamma) * loss).mean()

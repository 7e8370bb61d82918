"""Centre loss (Wen et al., ECCV 2016): pull each embedding towards its class centre.

L_C = 1/(2B) sum_i ||x_i - c_{y_i}||^2 (x optionally L2-normalised). The centres are not trained by the optimiser
but updated with their own rate alpha after each training step's loss, as the paper's Algorithm 1:
  delta c_j = sum_{i: y_i = j} (c_j - x_i) / (1 + n_j),  c_j <- c_j - alpha delta c_j  (n_j: samples of class j),
with x detached. Centres start at zero. Under sharding each rank keeps (and updates) the centres of its own
classes; each sample's term is computed by the rank holding its class and summed over ranks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import ConfigError
from ..heads.context import Batch
from . import LOSSES
from .base import AuxLoss


@LOSSES.register("center")
class CenterLoss(AuxLoss):
    """Centre loss with the paper's centre update (alpha = 0.5); buffer `centers` (C', D)."""

    name = "center"
    class_rows = ("centers",)

    def __init__(self, embedding_size: int, num_classes: int, alpha: float = 0.5, normalize: bool = False):
        super().__init__(embedding_size, num_classes)
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"aux loss 'center': alpha={alpha!r} must be in [0, 1] (the paper uses 0.5).")
        self.alpha, self.normalize = float(alpha), bool(normalize)
        self.register_buffer("centers", torch.zeros(self.num_classes, self.embedding_size))

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, normalize={self.normalize}"

    def forward(self, batch: Batch) -> Tensor:
        x = batch.embeddings
        x = F.normalize(x, dim=1) if self.normalize else x
        rows = batch.shard_labels  # the rank holding the class computes the sample's term
        mine = rows >= 0
        index = rows.clamp(min=0)
        centres = self.centers.index_select(0, index).to(x.dtype)
        term = 0.5 * (x - centres).pow(2).sum(dim=1)
        loss = batch.reduce.sum_replicated(torch.where(mine, term, torch.zeros_like(term))).mean()
        if self.training:
            self.update(x.detach(), index, mine)
        return loss

    @torch.no_grad()
    def update(self, x: Tensor, index: Tensor, mine: Tensor) -> None:
        """c_j <- c_j - alpha sum_{i: y_i=j} (c_j - x_i) / (1 + n_j) for this rank's classes in the batch."""
        same = (index.unsqueeze(0) == index.unsqueeze(1)) & mine.unsqueeze(0) & mine.unsqueeze(1)
        count = same.sum(dim=1).to(x.dtype)  # n_{y_i} (0 for rows of other ranks)
        step = (self.centers.index_select(0, index).to(x.dtype) - x) / (1.0 + count).unsqueeze(1)
        step = torch.where(mine.unsqueeze(1), step, torch.zeros_like(step))
        self.centers.index_add_(0, index, (-self.alpha * step).to(self.centers.dtype))

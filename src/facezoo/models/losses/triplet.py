"""Triplet loss with batch-hard mining (Schroff et al. FaceNet, CVPR 2015; Hermans et al. 2017).

On L2-normalised embeddings, d_ij = ||x_i - x_j||^2 (squared, FaceNet's; squared=False: the Euclidean distance).
For each anchor i with at least one positive (same label, j != i) and one negative in the batch:
  l_i = max(0, max_{j positive} d_ij - min_{k negative} d_ik + margin),  L = mean over those anchors
(0 when no anchor has both). margin = 0.2 (FaceNet's alpha). Computed on the whole global batch, the same on every
rank. `triplet_loss(x, labels)` is the plain function for a training mode whose main loss it is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import ConfigError
from ..heads.context import Batch
from . import LOSSES
from .base import AuxLoss

DIST_EPS = 1e-12  # floor under the square root (non-squared distances of identical embeddings)


def triplet_loss(embeddings: Tensor, labels: Tensor, margin: float = 0.2, squared: bool = True) -> Tensor:
    """Batch-hard triplet loss of embeddings (B, D) with labels (B,) (module docstring)."""
    x = F.normalize(embeddings, dim=1)
    d = (2.0 - 2.0 * (x @ x.t())).clamp(min=0.0)  # ||a - b||^2 of unit vectors
    if not squared:
        d = d.clamp(min=DIST_EPS).sqrt()
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive, negative = same & ~eye, ~same
    hardest_pos = torch.where(positive, d, torch.full_like(d, float("-inf"))).amax(dim=1)
    hardest_neg = torch.where(negative, d, torch.full_like(d, float("inf"))).amin(dim=1)
    usable = positive.any(dim=1) & negative.any(dim=1)
    hinge = (hardest_pos - hardest_neg + margin).clamp(min=0.0)
    hinge = torch.where(usable, hinge, torch.zeros_like(hinge))
    return hinge.sum() / usable.sum().clamp(min=1)


@LOSSES.register("triplet")
class TripletLoss(AuxLoss):
    """Batch-hard triplet loss on the global batch (margin 0.2, squared distances)."""

    name = "triplet"

    def __init__(self, embedding_size: int, num_classes: int, margin: float = 0.2, squared: bool = True):
        super().__init__(embedding_size, num_classes)
        if not margin >= 0:
            raise ConfigError(f"aux loss 'triplet': margin={margin!r} must be >= 0 (FaceNet uses 0.2).")
        self.margin, self.squared = float(margin), bool(squared)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, squared={self.squared}"

    def forward(self, batch: Batch) -> Tensor:
        return triplet_loss(batch.replicated(), batch.labels, self.margin, self.squared)

"""Auxiliary losses beside any head (`LOSSES` registry): centre, focal, triplet; each module registers its own.

A recipe adds them with weights: `head.aux: [{name: center, weight: 0.01, kwargs: {alpha: 0.5}}]`; the
classifier (train/classifier.py) builds them with LOSSES.create(name, embedding_size, num_classes, **kwargs) and
adds weight * loss(batch) on the step's global batch (models/heads/context.py Batch).
"""

from ...registry import Registry

LOSSES = Registry("auxiliary loss")

from . import center, focal, triplet  # noqa: E402,F401  (register the losses)
from .base import AuxLoss  # noqa: E402

__all__ = ["LOSSES", "AuxLoss"]

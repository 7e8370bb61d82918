"""Margin heads: `HEADS` registry; each module registers its heads by decorator.

facezoo.create_head(name, embedding_size, num_classes, **hparams) -> HEADS.create(name, ...).
"""

from ...registry import Registry

HEADS = Registry("head")

from . import (  # noqa: E402,F401  (register the heads)
    adaptive,
    binary,
    circle,
    confidence,
    distribution,
    elastic,
    fairness,
    learned_margin,
    margin,
    negatives,
    scale,
    subcenter,
)
from .base import CosineHead, Head  # noqa: E402

__all__ = ["HEADS", "CosineHead", "Head"]

"""Distillation losses by name: DISTILL_LOSSES.create(name, student_shape=..., teacher_shape=..., **kwargs).

Each is a small module with its formula in the docstring (base.py: the interface). The distill training mode
(train/modes/distill.py) adds their weighted sum to the student's margin-softmax loss; `facezoo list` shows them.
"""

from ...registry import Registry

DISTILL_LOSSES = Registry("distillation loss")

from . import ekd, embedding, hints, logits, relational  # noqa: E402,F401  (register the losses)
from .base import DistillLoss  # noqa: E402

__all__ = ["DISTILL_LOSSES", "DistillLoss"]

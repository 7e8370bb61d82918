"""Training modes by name: MODES.create(cfg.mode, ctx=..., options=...); `facezoo list modes` shows them.

A mode is one file here that subclasses Mode (base.py) and registers itself with @MODES.register("name").
"""

from ...registry import Registry

MODES = Registry("training mode")

from . import (  # noqa: E402,F401  (registers the modes)
    conventional,
    distill,
    multi_dataset,
    quality_regression,
    semi_siamese,
    triplet,
)
from .base import Mode, SubStep, TrainContext  # noqa: E402

__all__ = ["MODES", "Mode", "SubStep", "TrainContext"]

"""Training events and the plug-ins that listen to them (progress, metrics.jsonl, TensorBoard, verification, ...).

The Trainer emits events; callbacks react. `CALLBACKS` holds the optional ones a recipe names in `callbacks:`
(e.g. wandb, mlflow); the built-in set follows the config (tensorboard, data.val, ...), see `default_callbacks`.
"""

from ...registry import Registry

CALLBACKS = Registry("callback")

from . import trackers  # noqa: E402,F401  (registers wandb, mlflow)
from .base import Callback, Events  # noqa: E402
from .metrics import MetricsFile  # noqa: E402
from .plot import CurvesPlot  # noqa: E402
from .progress import ProgressLog  # noqa: E402
from .tensorboard import TensorBoard  # noqa: E402
from .verification import Verification  # noqa: E402


def default_callbacks(cfg, is_main: bool) -> list[Callback]:
    """The built-in set for `cfg` on this rank (the main rank logs and verifies; others run none), then the
    optional ones named in cfg.callbacks."""
    if not is_main:
        return []
    out: list[Callback] = [MetricsFile(), ProgressLog()]
    if cfg.tensorboard:
        out.append(TensorBoard())
    if cfg.data.val:
        out.append(Verification(cfg.data.val))
    out.append(CurvesPlot())
    out += [CALLBACKS.create(name) for name in cfg.callbacks]
    return out


__all__ = [
    "CALLBACKS",
    "Callback",
    "CurvesPlot",
    "Events",
    "MetricsFile",
    "ProgressLog",
    "TensorBoard",
    "Verification",
    "default_callbacks",
]

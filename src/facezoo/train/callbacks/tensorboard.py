"""TensorBoard scalars under OUTPUT/tb (train/loss, train/lr, train/images_per_s, val/<set>)."""

from __future__ import annotations

import warnings

from .base import Callback


class TensorBoard(Callback):
    def __init__(self):
        self.writer = None

    def on_train_start(self, trainer) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            warnings.warn(
                "tensorboard is not installed: no TensorBoard scalars (pip install tensorboard)", stacklevel=2
            )
            return
        self.writer = SummaryWriter(str(trainer.output / "tb"))

    def _add(self, step: int, values: dict, prefix: str) -> None:
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"{prefix}/{k}", v, step)

    def on_log(self, trainer, step, values):
        self._add(step, values, "train")

    def on_validation(self, trainer, step, results):
        self._add(step, {name: r["accuracy"] for name, r in results.items()}, "val")

    def on_train_end(self, trainer):
        if self.writer is not None:
            self.writer.close()
            self.writer = None

"""Auxiliary loss interface: a module that maps the step's global batch to a scalar, weighted in the recipe."""

from __future__ import annotations

from torch import Tensor, nn

from ..heads.context import Batch


class AuxLoss(nn.Module):
    """forward(batch: Batch) -> scalar loss on the whole (global) batch; see heads/context.py for the rules
    under sharding (replicated vs class-split terms).

    Built as LOSSES.create(name, embedding_size=D, num_classes=C', **kwargs), C' = this rank's class shard.
    class_rows: state entries with one row per class (sharded like the class centres, gathered in checkpoints).
    State lives in buffers and is updated only in training mode.
    """

    name = "aux"
    class_rows: tuple[str, ...] = ()

    def __init__(self, embedding_size: int, num_classes: int):
        super().__init__()
        self.embedding_size, self.num_classes = int(embedding_size), int(num_classes)

    def check(self, head: nn.Module) -> None:
        """Raise ConfigError when this loss cannot be used beside `head` (called at classifier construction)."""

    def forward(self, batch: Batch) -> Tensor:
        raise NotImplementedError

"""Conventional training: backbone -> embedding -> margin head over every class -> softmax cross-entropy.

The head's class centres are sharded over ranks (ShardedClassifier), optionally with Partial FC
(head.sample_rate < 1: one sample of rows per optimiser step, updated through RowOptimizer).
"""

from __future__ import annotations

import torch

from ...errors import ModelError
from ..classifier import ShardedClassifier
from ..distributed import shard_range
from ..optim import RowOptimizer
from . import MODES
from .base import Mode, SubStep


@MODES.register("conventional")
class Conventional(Mode):
    def __init__(self, ctx, options=None):
        from ... import create_head

        super().__init__(ctx, options)
        cfg = ctx.cfg
        self.dataset = ctx.open_dataset()
        ctx.check_decode(self.dataset)
        self.num_classes = int(self.dataset.num_classes)
        self.backbone = ctx.build_backbone()
        self.model = ctx.wrap(self.backbone)
        start, end = shard_range(self.num_classes, ctx.world.rank, ctx.world.world_size)
        head = create_head(cfg.head.name, cfg.model.embedding_size, end - start, **cfg.head.kwargs)
        self.head = head.to(ctx.device)
        # sample_rate, chunk_size and the auxiliary losses (head.aux)
        self.classifier = ShardedClassifier.from_config(self.head, self.num_classes, ctx.world, cfg.head)
        self._rows: RowOptimizer | None = None

    def steps_per_epoch(self) -> int:
        return len(self.dataset) // (self.ctx.cfg.batch_size * self.ctx.world.world_size)

    def batches(self, epoch: int, start_step: int):
        sampler = self.ctx.epoch_sampler(len(self.dataset), epoch, start_step)
        return self.ctx.loader(self.dataset, sampler)

    def trainable(self):
        return [self.backbone, self.classifier]

    def begin_step(self, batches):
        """Partial FC: one sample of class rows per step from every micro-batch's labels (all positives kept), so
        accumulated gradients belong to the same rows."""
        if self.classifier.sample_rate < 1:
            labels = [b["labels"].to(self.ctx.device, non_blocking=True).reshape(-1) for b in batches]
            self.classifier.pin_sample(torch.cat(labels))

    def loss(self, batch, generator):
        x, labels = self.ctx.prepare(batch, generator)
        with self.ctx.autocast():
            embeddings = self.model(x)
        return self.classifier(embeddings.float(), labels)

    def sub_steps(self, optimizer):
        """Partial FC: the sampled rows of the head and of their optimiser state, written back after the step (also
        after a skipped fp16 step, which leaves them unchanged)."""
        sub, rows = self.classifier.sampled, self.classifier.rows
        if self.classifier.sample_rate >= 1 or sub is None or sub.grad is None:
            return []
        if self._rows is None:
            self._rows = RowOptimizer(optimizer, self.head.weight)
        return [SubStep(self._rows.load(sub, rows), lambda: self._rows.store(sub, rows))]

    def end_step(self):
        self.classifier.end_step()

    def sharded_params(self):
        return [(self.head.weight, self.classifier)]

    def state_dict(self):
        cfg = self.ctx.cfg
        return {
            "head": {
                "name": cfg.head.name,
                "kwargs": dict(cfg.head.kwargs),
                "num_classes": self.num_classes,
                "state": self.classifier.full_state_dict(),
            }
        }

    def check_resume(self, state, path):
        head = state.get("head") or {}
        if head.get("num_classes") != self.num_classes:
            raise ModelError(
                f"{path}: trained with {head.get('num_classes')} classes, the data has {self.num_classes}; resume "
                "needs the same training set (to start from these weights on new classes, use a new output folder)"
            )
        if head.get("name") != self.ctx.cfg.head.name:
            raise ModelError(
                f"{path}: trained with head {head.get('name')}, the recipe says {self.ctx.cfg.head.name}; resume "
                f"needs the same head (set head.name={head.get('name')} or use a new output folder)"
            )

    def load_state_dict(self, state):
        self.classifier.load_full_state_dict(state["head"]["state"])

    def describe(self) -> str:
        cfg = self.ctx.cfg
        return (
            f"{cfg.model.backbone} + {cfg.head.name} on {len(self.dataset)} images of {self.num_classes} identities "
            f"(sample_rate {cfg.head.sample_rate}, softmax chunks {cfg.head.chunk_size})"
        )

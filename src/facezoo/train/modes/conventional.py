"""Conventional training: backbone -> embedding -> margin head over every class -> softmax cross-entropy.

The head's class centres are sharded over ranks (ShardedClassifier), optionally with Partial FC
(head.sample_rate < 1: one sample of rows per optimiser step, updated through RowOptimizer); see parts.py.
"""

from __future__ import annotations

from . import MODES
from .base import Mode
from .parts import ClassifierPart


@MODES.register("conventional")
class Conventional(Mode):
    def __init__(self, ctx, options=None):
        super().__init__(ctx, options)
        self.dataset = ctx.open_dataset()
        ctx.check_decode(self.dataset)
        self.num_classes = int(self.dataset.num_classes)
        self.backbone = ctx.build_backbone()
        self.model = ctx.wrap(self.backbone)
        init = ctx.init_state("head", "class head")
        self.part = ClassifierPart(ctx, ctx.cfg.head, self.num_classes, init=init)
        self.classifier, self.head = self.part.classifier, self.part.head  # ShardedClassifier, Head

    def steps_per_epoch(self) -> int:
        return len(self.dataset) // (self.ctx.cfg.batch_size * self.ctx.world.world_size)

    def batches(self, epoch: int, start_step: int):
        return self.ctx.loader(self.dataset, self.ctx.batch_sampler(self.dataset, epoch, start_step))

    def trainable(self):
        return {"backbone": self.backbone, "head": self.part}

    def begin_step(self, batches):
        self.part.begin_step([b["labels"] for b in batches])

    def loss(self, batch, generator):
        x, labels = self.ctx.prepare(batch, generator)
        with self.ctx.autocast():
            embeddings = self.model(x)
        return self.part(embeddings.float(), labels)

    def sub_steps(self, optimizer):
        return self.part.sub_steps(optimizer)

    def end_step(self):
        self.part.end_step()

    def sharded_params(self):
        return [self.part.sharded_param()]

    def state_dict(self):
        return {"head": self.part.state()}

    def check_resume(self, state, path):
        self.part.check(state.get("head") or {"state": None}, path)

    def load_state_dict(self, state):
        self.part.load(state["head"])

    def describe(self) -> str:
        cfg = self.ctx.cfg
        return (
            f"{cfg.model.backbone} + {cfg.head.name} on {len(self.dataset)} images of {self.num_classes} identities "
            f"(sample_rate {cfg.head.sample_rate}, softmax chunks {cfg.head.chunk_size}, sampler {cfg.data.sampler})"
        )

"""Parts the modes share: the margin-softmax classifier (conventional, distill, multi_dataset) and checks.

ClassifierPart = a registered head over this rank's class shard + ShardedClassifier (sharding, Partial FC, chunked
softmax) + the Partial FC row update, with the step hooks, checkpoint state and resume checks a mode forwards to it.
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import ConfigError, ModelError
from ..classifier import ShardedClassifier
from ..distributed import shard_range
from ..optim import RowOptimizer
from .base import Mode, SubStep, dataset_labels


class ClassifierPart(nn.Module):
    """forward(local embeddings (b, D), local labels (b,)) -> the global-batch margin-softmax loss.

    head_cfg: a HeadConfig (name, kwargs, sample_rate, chunk_size); init: a saved state() to start from
    (model.init_head), checked like a resume.
    """

    def __init__(self, ctx, head_cfg, num_classes: int, embedding_size: int | None = None, init: dict | None = None):
        from ... import create_head

        super().__init__()
        self.ctx, self.cfg, self.num_classes = ctx, head_cfg, int(num_classes)
        start, end = shard_range(self.num_classes, ctx.world.rank, ctx.world.world_size)
        dim = embedding_size or ctx.cfg.model.embedding_size
        self.head = create_head(head_cfg.name, dim, end - start, **head_cfg.kwargs).to(ctx.device)
        # sample_rate, chunk_size and the auxiliary losses (head.aux)
        self.classifier = ShardedClassifier.from_config(self.head, self.num_classes, ctx.world, head_cfg)
        self._rows: RowOptimizer | None = None
        if init is not None:
            self.check(init, ctx.cfg.model.init_from, "start from its head")
            self.load(init)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.classifier(embeddings, labels)

    def begin_step(self, labels: list[torch.Tensor]) -> None:
        """Partial FC: one sample of class rows per step from every micro-batch's labels (all positives kept), so
        accumulated gradients belong to the same rows."""
        if self.classifier.sample_rate < 1:
            self.classifier.pin_sample(
                torch.cat([y.to(self.ctx.device, non_blocking=True).reshape(-1) for y in labels])
            )

    def sub_steps(self, optimizer) -> list[SubStep]:
        """Partial FC: the sampled rows of the head and of their optimiser state, written back after the step (also
        after a skipped fp16 step, which leaves them unchanged)."""
        sub, rows = self.classifier.sampled, self.classifier.rows
        if self.classifier.sample_rate >= 1 or sub is None or sub.grad is None:
            return []
        if self._rows is None:
            self._rows = RowOptimizer(optimizer, self.head.weight)
        return [SubStep(self._rows.load(sub, rows), lambda: self._rows.store(sub, rows))]

    def end_step(self) -> None:
        self.classifier.end_step()

    def sharded_param(self):
        return (self.head.weight, self.classifier)

    def state(self) -> dict:
        """{name, kwargs, num_classes, state} with the class centres of every rank (independent of world size)."""
        return {
            "name": self.cfg.name,
            "kwargs": dict(self.cfg.kwargs),
            "num_classes": self.num_classes,
            "state": self.classifier.full_state_dict(),
        }

    def load(self, saved: dict) -> None:
        self.classifier.load_full_state_dict(saved["state"])

    def check(self, saved: dict, path, action: str = "resume") -> None:
        """ModelError when `saved` (a state()) is for other classes or another head."""
        if not isinstance(saved, dict) or "state" not in saved:
            raise ModelError(f"{path}: holds no head state to {action}")
        if saved.get("num_classes") != self.num_classes:
            raise ModelError(
                f"{path}: trained with {saved.get('num_classes')} classes, the data has {self.num_classes}; to "
                f"{action} it needs the same training set (to start from these weights on new classes, use a new "
                "output folder and model.init_head=false)"
            )
        if saved.get("name") != self.cfg.name:
            raise ModelError(
                f"{path}: trained with head {saved.get('name')}, the recipe says {self.cfg.name}; to {action} it "
                f"needs the same head (set head.name={saved.get('name')} or use a new output folder)"
            )


def no_head_init(ctx, mode: str) -> None:
    """ConfigError for model.init_head in a mode without a class head (its backbone still warm-starts)."""
    if ctx.cfg.model.init_head:
        raise ConfigError(
            f"model.init_head=true: mode {mode} has no class head to start from; set model.init_head=false (the "
            "backbone still starts from model.init_from)"
        )


def check_identity_batches(ctx, mode: str, k: int) -> None:
    """ConfigError unless each micro-batch splits into whole identities of K images and data.sampler is untouched."""
    cfg = ctx.cfg
    if ctx.micro_batch % k or ctx.micro_batch < k:
        raise ConfigError(
            f"mode {mode}: the micro-batch (batch_size {cfg.batch_size} / grad_accum {cfg.grad_accum}) must be a "
            f"multiple of the {k} images per identity; set batch_size to a multiple of {k * cfg.grad_accum}"
        )
    if cfg.data.sampler != "random":
        raise ConfigError(
            f"mode {mode} samples P identities x {k} images itself; data.sampler={cfg.data.sampler} does not apply "
            "(remove it)"
        )


class IdentityBatchMode(Mode):
    """Base of the modes whose batches are P identities x K images (IdentitySampler) and whose trained part is the
    backbone alone (semi_siamese, triplet): sets dataset, sampler (P = micro-batch / K per rank), backbone, model."""

    def setup_identity_batches(self, mode: str, k: int) -> None:
        from ...data.samplers import IdentitySampler

        ctx, cfg, w = self.ctx, self.ctx.cfg, self.ctx.world
        check_identity_batches(ctx, mode, k)
        no_head_init(ctx, mode)
        self.dataset = ctx.open_dataset()
        ctx.check_decode(self.dataset)
        labels = dataset_labels(self.dataset)
        self.sampler = IdentitySampler(labels, ctx.micro_batch // k, k, cfg.seed, w.rank, w.world_size)
        self.backbone = ctx.build_backbone()
        self.model = ctx.wrap(self.backbone)

    def steps_per_epoch(self):
        return len(self.sampler) // self.ctx.cfg.grad_accum

    def batches(self, epoch, start_step):
        self.sampler.set_epoch(epoch, start_step * self.ctx.cfg.grad_accum)
        return self.ctx.loader(self.dataset, self.sampler)

    def trainable(self):
        return {"backbone": self.backbone}

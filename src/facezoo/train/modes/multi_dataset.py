"""Multi-dataset training (TFace's multi-branch recipe): one shared backbone, one margin head per training set.

Each set has its own class space, head and share of each optimiser step's batch: the head section with the set's
own name, s, m, Partial FC rate where it gives them, in a ShardedClassifier per set (every head sharded over the
ranks and sampled on its own). One backbone forward runs over the concatenated micro-batch; the embeddings are
split back by set, and
  loss = sum_k weight_k * CE_k(head_k(embeddings of set k), labels of set k).
Each set's loss is logged as loss/<set>. An epoch is one pass over the set with the most steps; the others cycle,
each through its own (seed, epoch) order, so any step's batches are known and resume is exact. Trainer(dataset=
{set: dataset}) trains on given objects instead of the sets' paths.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from ...errors import ConfigError, ModelError
from . import MODES
from .base import Mode
from .parts import ClassifierPart


@dataclass
class SetHead:
    """A set's head: each field given replaces the recipe's head section for this set (None: the section's)."""

    name: str | None = None
    kwargs: dict[str, Any] | None = None  # e.g. {s: 64, m: 0.5}; replaces head.kwargs when given
    sample_rate: float | None = None
    chunk_size: int | Literal["auto"] | None = None

    def __post_init__(self):
        if self.name is not None:
            from ...models.heads import HEADS

            HEADS.get(self.name)  # an unknown head fails at load, with did-you-mean


@dataclass
class SetConfig:
    train: str = ""  # the set: RecordIO folder or .rec, image folder, list file or TFRecord folder
    batch_size: int = 0  # its images per optimiser step and process; the sets' shares add up to batch_size
    weight: float = 1.0  # its loss weight
    head: SetHead = field(default_factory=SetHead)  # its own head name, s and m, Partial FC rate, ...


@dataclass
class MultiDatasetOptions:
    sets: dict[str, SetConfig] = field(default_factory=dict)  # name -> set, e.g. {ms1m: {...}, glint: {...}}


@MODES.register("multi_dataset")
class MultiDataset(Mode):
    Config = MultiDatasetOptions

    def __init__(self, ctx, options: MultiDatasetOptions):
        super().__init__(ctx, options)
        cfg = ctx.cfg
        self.sets = dict(options.sets)
        self._check(cfg)
        given = ctx.dataset if isinstance(ctx.dataset, dict) else {}
        self.datasets = {name: given.get(name) or ctx.open_dataset(s.train) for name, s in self.sets.items()}
        for ds in self.datasets.values():
            ctx.check_decode(ds)
        self.backbone = ctx.build_backbone()
        self.model = ctx.wrap(self.backbone)
        init = ctx.init_state("heads", "multi_dataset heads")
        self.heads: dict[str, ClassifierPart] = {}
        for name, s in self.sets.items():
            if init is not None and name not in init:
                raise ConfigError(f"model.init_head: {cfg.model.init_from} has no head for set {name}")
            given = {k: v for k, v in dataclasses.asdict(s.head).items() if v is not None}
            head_cfg = dataclasses.replace(cfg.head, **given)
            self.heads[name] = ClassifierPart(
                ctx, head_cfg, int(self.datasets[name].num_classes), init=None if init is None else init[name]
            )
        accum = cfg.grad_accum
        self.micro = {name: s.batch_size // accum for name, s in self.sets.items()}
        self.samplers = {
            name: ctx.batch_sampler(self.datasets[name], 0, 0, batch=self.micro[name], stream=k)
            for k, name in enumerate(self.sets)
        }
        self.set_steps = {name: len(self.samplers[name]) // accum for name in self.sets}
        empty = [name for name, n in self.set_steps.items() if n == 0]
        if empty:
            raise ConfigError(f"multi_dataset: set(s) {empty} have fewer images than their batch_size x processes")
        self._sums = {name: torch.zeros((), device=ctx.device) for name in self.sets}
        self._count = 0

    def _check(self, cfg) -> None:
        if not self.sets:
            raise ConfigError("multi_dataset.sets is empty: give {name: {train: PATH, batch_size: N}, ...}")
        shares = {name: s.batch_size for name, s in self.sets.items()}
        if any(b <= 0 or b % cfg.grad_accum for b in shares.values()):
            raise ConfigError(
                f"multi_dataset.sets: every batch_size must be a positive multiple of grad_accum {cfg.grad_accum}, "
                f"got {shares}"
            )
        if sum(shares.values()) != cfg.batch_size:
            raise ConfigError(
                f"multi_dataset.sets: the batch shares {shares} add up to {sum(shares.values())}, batch_size is "
                f"{cfg.batch_size}; set batch_size={sum(shares.values())}"
            )
        if any(not s.weight >= 0 for s in self.sets.values()):
            raise ConfigError("multi_dataset.sets: every weight must be >= 0")
        if not isinstance(self.ctx.dataset, dict):
            missing = [name for name, s in self.sets.items() if not s.train]
            if missing:
                raise ConfigError(f"multi_dataset.sets.{missing[0]}.train is empty: give the set's path")

    # ---- data ----------------------------------------------------------------------------------------------
    def steps_per_epoch(self):
        return max(self.set_steps.values())

    def _stream(self, name: str, k: int, step: int):
        """Set `name`'s micro-batches from global optimiser step `step` on, cycling through its epochs."""
        epoch, start = divmod(step, self.set_steps[name])
        while True:
            sampler = self.ctx.batch_sampler(self.datasets[name], epoch, start, batch=self.micro[name], stream=k)
            yield from self.ctx.loader(self.datasets[name], sampler)
            epoch, start = epoch + 1, 0

    def batches(self, epoch, start_step):
        streams = [
            self._stream(name, k, epoch * self.steps_per_epoch() + start_step) for k, name in enumerate(self.sets)
        ]
        for parts in zip(*streams):
            yield {
                "images": torch.cat([b["images"] for b in parts]),
                "labels": torch.cat([b["labels"] for b in parts]),
                "sizes": [len(b["labels"]) for b in parts],
                "skipped": sum(b["skipped"] for b in parts),
            }

    # ---- the step ------------------------------------------------------------------------------------------
    def trainable(self):
        return {"backbone": self.backbone, **{f"head.{name}": part for name, part in self.heads.items()}}

    def _split(self, batch, values):
        return dict(zip(self.sets, torch.split(values, batch["sizes"])))

    def begin_step(self, batches):
        per_set = [self._split(b, b["labels"]) for b in batches]
        for name, part in self.heads.items():
            part.begin_step([labels[name] for labels in per_set])

    def loss(self, batch, generator):
        x, labels = self.ctx.prepare(batch, generator)
        with self.ctx.autocast():
            embeddings = self.model(x).float()
        parts_x, parts_y = self._split(batch, embeddings), self._split(batch, labels)
        total = embeddings.new_zeros(())
        for name, part in self.heads.items():
            loss = part(parts_x[name], parts_y[name])
            total = total + self.sets[name].weight * loss
            self._sums[name] += loss.detach()
        self._count += 1
        return total

    def sub_steps(self, optimizer):
        return [s for part in self.heads.values() for s in part.sub_steps(optimizer)]

    def end_step(self):
        for part in self.heads.values():
            part.end_step()

    def log_values(self):
        n = max(self._count, 1)
        out = {f"loss/{name}": s / n for name, s in self._sums.items()}
        self._sums = {name: torch.zeros_like(s) for name, s in self._sums.items()}
        self._count = 0
        return out

    # ---- state ---------------------------------------------------------------------------------------------
    def sharded_params(self):
        return [part.sharded_param() for part in self.heads.values()]

    def state_dict(self):
        return {"heads": {name: part.state() for name, part in self.heads.items()}}

    def check_resume(self, state, path):
        saved = state.get("heads") or {}
        if sorted(saved) != sorted(self.heads):
            raise ModelError(
                f"{path}: trained on sets {sorted(saved)}, the recipe has {sorted(self.heads)}; resume needs the same "
                "multi_dataset.sets (or use a new output folder)"
            )
        for name, part in self.heads.items():
            part.check(saved[name], f"{path} (set {name})")

    def load_state_dict(self, state):
        for name, part in self.heads.items():
            part.load(state["heads"][name])

    def describe(self):
        sets = ", ".join(
            f"{name} ({len(self.datasets[name])} images, {part.num_classes} classes, {part.cfg.name}, batch "
            f"{s.batch_size}, weight {s.weight})"
            for (name, s), part in zip(self.sets.items(), self.heads.values())
        )
        return f"{self.ctx.cfg.model.backbone} shared by {len(self.sets)} sets: {sets}"

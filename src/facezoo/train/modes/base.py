"""The training-mode seam: a Mode builds what is trained and forms the loss; the Trainer runs the loop.

The Trainer owns everything every mode shares: precision, gradient accumulation, clipping, the lr schedule,
events (logging, validation, checkpoint), checkpoint writing and exact resume. A Mode owns:
  - its parts: the deployable backbone (what model.pt holds) and anything else (heads, a teacher, an EMA copy, a
    queue), built in __init__ from the TrainContext;
  - its data: steps_per_epoch() and batches(epoch, start_step) (micro-batches in a resumable order);
  - one micro-batch's loss: loss(batch, generator);
  - the step hooks: begin_step(batches) before the micro-batches, sub_steps(optimizer) for extra optimisers stepped
    jointly with the main one (Partial FC rows), end_step() after the update (EMA, queue, unpinning);
  - its trained parts by name, trainable() -> {name: module} (names address model.freeze and optim.lr_mult), and
    extra logged values, log_values() (e.g. one loss per training set);
  - its checkpoint state: state_dict() / load_state_dict() (every rank calls them; the result must not depend on the
    world size), sharded_params() for optimiser state laid out by rank, check_resume() for clear refusals.
A mode with options declares a dataclass `Config`; the recipe's section named after the mode fills it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ...data.loader import Collate, EpochBatchSampler, default_workers
from ...data.transforms import normalize, random_flip_mask
from ...errors import ConfigError
from ...models.embedder import ModelMeta
from ..distributed import World
from ..warmstart import freeze, load_backbone

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class SubStep:
    """An optimiser stepped jointly with the main one (one GradScaler check, one clipping); `finish` runs after."""

    optimizer: torch.optim.Optimizer
    finish: Callable[[], None]


@dataclass
class TrainContext:
    """What the Trainer gives a mode: the config, the world, the device, and the shared building blocks."""

    cfg: Any  # facezoo.config.Config (not imported: config imports the mode registry)
    world: World
    device: torch.device
    meta: ModelMeta
    dataset: Any = None  # a dataset object passed to Trainer(dataset=...) instead of cfg.data.train
    source: Any = None  # model.init_from read once (train/warmstart.Source), or None
    _datasets: dict = field(default_factory=dict, repr=False)

    @property
    def micro_batch(self) -> int:
        return self.cfg.batch_size // self.cfg.grad_accum

    # ---- parts ---------------------------------------------------------------------------------------------
    def build_backbone(self, meta: ModelMeta | None = None) -> nn.Module:
        """meta's backbone on the device, channels_last and compiled (in place, so state-dict keys stay plain).

        The run's own backbone (meta None) starts from model.init_from's weights and has model.freeze applied, so
        copies made from it (an EMA or gallery network) share both.
        """
        cfg = self.cfg
        backbone = (meta or self.meta).build_backbone()
        if meta is None:
            if self.source is not None:
                load_backbone(backbone, self.source)
            freeze({"backbone": backbone}, cfg.model.freeze, strict=False)
        backbone = backbone.to(self.device)
        if cfg.channels_last:
            backbone = backbone.to(memory_format=torch.channels_last)
        if cfg.compile:
            mode = "default" if cfg.compile is True else cfg.compile
            backbone.compile(mode=mode, backend=cfg.compile_backend, dynamic=False)
        return backbone

    def init_state(self, key: str, expected: str) -> Any:
        """model.init_head: entry `key` of the source checkpoint's mode state (e.g. its head), else None.

        `expected` describes what the caller needs, for the error when the source has no such entry.
        """
        if not self.cfg.model.init_head:
            return None
        state = (self.source.mode_state or {}).get(key) if self.source is not None else None
        if state is None:
            raise ConfigError(
                f"model.init_head=true: {self.cfg.model.init_from} holds no {expected} (a model.pt has none; use "
                f"the run's checkpoint.pt, written by mode {self.cfg.mode}); or set model.init_head=false for a "
                "fresh head"
            )
        return state

    def wrap(self, module: nn.Module) -> nn.Module:
        """DDP around `module` when distributed (gradients averaged over ranks), else `module` itself."""
        if not self.world.distributed:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def autocast(self):
        dtype = DTYPES[self.cfg.precision]
        return contextlib.nullcontext() if dtype is None else torch.autocast(self.device.type, dtype=dtype)

    # ---- data ----------------------------------------------------------------------------------------------
    def open_dataset(self, spec: str = ""):
        """The training set `spec` (default data.train), or the dataset given to the Trainer; opened once."""
        if not spec and self.dataset is not None:
            return self.dataset
        spec = spec or self.cfg.data.train
        if not spec:
            raise ConfigError("data.train is empty: give a RecordIO folder, image folder or list file")
        if spec not in self._datasets:
            from ...data.datasets import open_dataset

            self._datasets[spec] = open_dataset(spec, skip_corrupt=self.cfg.data.skip_corrupt)
        return self._datasets[spec]

    def check_decode(self, dataset) -> None:
        """data.decode=gpu needs a CUDA device and a dataset of encoded images; ConfigError naming the fix."""
        if self.cfg.data.decode != "gpu":
            return
        from ...data.base import EncodedImageDataset

        if self.device.type != "cuda":
            raise ConfigError(
                f"data.decode=gpu is not available on {self.device}: it decodes with nvJPEG on a CUDA "
                "GPU; use data.decode=cpu"
            )
        if not isinstance(dataset, EncodedImageDataset):
            raise ConfigError(
                f"data.decode=gpu is not available for {type(dataset).__name__}: it needs a "
                "dataset of encoded images (RecordIO, image folder, list file); use data.decode=cpu"
            )

    def epoch_sampler(self, size: int, epoch: int, start_step: int, batch: int | None = None) -> EpochBatchSampler:
        """This rank's micro-batches of a (seed, epoch) permutation, from optimiser step `start_step` on."""
        w = self.world
        sampler = EpochBatchSampler(size, batch or self.micro_batch, self.cfg.seed, w.rank, w.world_size)
        sampler.set_epoch(epoch, start_step * self.cfg.grad_accum)
        return sampler

    def batch_sampler(self, dataset, epoch: int, start_step: int, batch: int | None = None, stream: int = 0):
        """This rank's micro-batches of data.sampler (random | class_balanced) over `dataset`, from optimiser step
        `start_step` on; `stream` gives a second sampler of the same run its own draws (multi_dataset's sets)."""
        from ...data.samplers import SAMPLERS

        w, cfg = self.world, self.cfg
        labels = getattr(dataset, "labels", None)
        if labels is None and cfg.data.sampler == "random":
            labels = np.zeros(len(dataset), dtype=np.int64)  # the random sampler reads only the length
        sampler = SAMPLERS.create(
            cfg.data.sampler,
            labels=dataset_labels(dataset) if labels is None else labels,
            batch_size=batch or self.micro_batch,
            seed=cfg.seed + 1_000_033 * stream,
            rank=w.rank,
            world_size=w.world_size,
        )
        sampler.set_epoch(epoch, start_step * cfg.grad_accum)
        return sampler

    def loader(self, dataset, batch_sampler: Iterable[list[int]]) -> Iterable[dict]:
        """Batches {images uint8 (b, H, W, 3), labels (b,), skipped} for `batch_sampler`'s index lists.

        Decoding in DataLoader workers; on CUDA with data.prefetch (or data.decode=gpu) batches arrive already on
        the device, copied (and decoded) on a side stream.
        """
        data, size = self.cfg.data, self.meta.input_size
        workers = default_workers(data.num_workers)
        gpu_decode = data.decode == "gpu"
        if gpu_decode:
            from ...data.loader import EncodedCollate

            dataset.decode = False  # workers return the encoded bytes
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            num_workers=workers,
            collate_fn=EncodedCollate() if gpu_decode else Collate(size),
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            prefetch_factor=4 if workers else None,
        )
        if self.device.type != "cuda" or not (data.prefetch or gpu_decode):
            return loader
        from ...data.prefetch import DevicePrefetcher

        transform = None
        if gpu_decode:
            from ...data.gpu_decode import GpuJpegDecoder

            transform = GpuJpegDecoder(size, self.device, skip_corrupt=data.skip_corrupt)
        return DevicePrefetcher(loader, self.device, transform)

    def prepare(self, batch: dict, generator: torch.Generator, meta: ModelMeta | None = None):
        """(normalised float (b, 3, H, W) on the device, labels (b,)): uint8 travels; flips, data.augment, the
        crop_eye crop and scaling run there.

        The flip mask and every augmentation draw come from `generator` (seeded per step and rank by the Trainer),
        so resume is exact.
        """
        from ...augment.crop_eye import crop_eye
        from ...augment.pipeline import build_pipeline

        m = meta or self.meta
        images = batch["images"].to(self.device, non_blocking=True)
        labels = batch["labels"].to(self.device, non_blocking=True)
        flip = random_flip_mask(len(labels), generator, self.device) if self.cfg.data.flip else None
        augment = build_pipeline(self.cfg.data.augment, images.shape[1:3], self.cfg.seed)
        if augment is not None:
            images = augment(images, generator)
        if getattr(m, "crop_eye", False):
            images = crop_eye(images)
        return normalize(images, m.mean, m.std, m.channel_order, flip=flip), labels


def dataset_labels(dataset):
    """The (N,) labels of a training set without decoding images (datasets keep them in `.labels`)."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        raise ConfigError(f"{type(dataset).__name__} has no .labels: this sampler needs each sample's class")
    return labels


class Mode:
    """Base of the registered training modes (train/modes/__init__.py MODES); see the module docstring."""

    Config: ClassVar[type | None] = None  # the dataclass of this mode's recipe section, if it has options
    min_embedding_size: ClassVar[int] = 2  # model.embedding_size floor: a cosine needs 2 dimensions

    def __init__(self, ctx: TrainContext, options=None):
        self.ctx = ctx
        self.options = options
        self.backbone: nn.Module  # set by the subclass: the network model.pt holds

    # data
    def steps_per_epoch(self) -> int:
        raise NotImplementedError

    def batches(self, epoch: int, start_step: int) -> Iterator[dict]:
        raise NotImplementedError

    # the step
    def trainable(self) -> dict[str, nn.Module] | list[nn.Module]:
        """The modules whose trainable parameters the optimiser updates, by part name ({"backbone": ..., "head":
        ...}; a list is named by parts()), in a fixed order: resume relies on it."""
        raise NotImplementedError

    def parts(self) -> dict[str, nn.Module]:
        """trainable() by name: a list's entries are "backbone" (self.backbone) and part1, part2, ..."""
        parts = self.trainable()
        if isinstance(parts, dict):
            return dict(parts)
        return {("backbone" if m is self.backbone else f"part{i}"): m for i, m in enumerate(parts)}

    def begin_step(self, batches: list[dict]) -> None:
        """Before the micro-batches of one optimiser step (e.g. one Partial FC sample for all of them)."""

    def loss(self, batch: dict, generator: torch.Generator) -> torch.Tensor:
        """The scalar loss of one micro-batch, on the device (the Trainer scales, accumulates and steps)."""
        raise NotImplementedError

    def sub_steps(self, optimizer: torch.optim.Optimizer) -> list[SubStep]:
        """Extra optimisers for this step, stepped jointly with `optimizer` (e.g. Partial FC's sampled rows)."""
        return []

    def end_step(self) -> None:
        """After the optimiser step (EMA updates, queues, unpinning)."""

    def log_values(self) -> dict[str, torch.Tensor]:
        """Extra values for the progress line and metrics (e.g. {"loss/ms1m": mean since the last log}) as device
        scalars; the Trainer reads them once per log interval, then they start again."""
        return {}

    # state
    def sharded_params(self) -> list[tuple[torch.Tensor, Any]]:
        """(parameter, sharding) pairs whose optimiser state is split by rank; sharding has is_sharded(t),
        gather(t) (rows of every rank; every rank calls it), shard(t) and num_classes."""
        return []

    def state_dict(self) -> dict:
        """Everything resumable beyond the backbone and the optimiser (every trained part besides the backbone,
        buffers, queues, counters); independent of the world size."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore state_dict()'s output (after check_resume accepted it)."""

    def check_resume(self, state: dict, path) -> None:
        """Raise ModelError naming `path` when `state` does not fit this run (e.g. another class count)."""

    def describe(self) -> str:
        """What trains on what, for the plan line."""
        return type(self).__name__

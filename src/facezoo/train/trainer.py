"""The conventional training loop: backbone -> embedding -> margin head -> cross-entropy.

One process, or one per GPU under torchrun: the backbone is wrapped in DDP, the head's class centres are
sharded over ranks (ShardedClassifier, optionally Partial FC), and checkpoints hold the full head and its
optimiser state, so a run can resume on any number of ranks.

Exact resume: the data order comes from (seed, epoch), each step's randomness (flip, dropout, Partial FC
negatives) from (seed, step), and checkpoints hold model, head (with its buffers), optimiser and scaler state; so a
run interrupted and resumed gives the same losses as an uninterrupted one.

Speed: bf16 autocast on the backbone, channels_last, optional torch.compile of the backbone (cfg.compile, applied
in place before DDP wrapping, so state-dict keys stay plain), a chunked margin cross-entropy for large class
counts (head.chunk_size), Partial FC gradients and updates on the sampled rows only, and the next batch copied
(and, with data.decode=gpu, decoded) on a side CUDA stream (data.prefetch).
Host syncs per step (CUDA): none with fp32/bf16. Left, with the reason:
  - precision=fp16: GradScaler.step reads found_inf (.item()) to decide whether to skip the step (PyTorch's
    design for non-fused optimisers); bf16 needs no scaler;
  - the logged loss: one .item() every log_every steps; checkpoints and validation, at their intervals;
  - micro-batches with no sample (all skipped as corrupt) are detected from the host-side batch, not the device.
Checked by reading (no GPU where this was written): no .item()/.tolist()/nonzero/boolean-mask indexing in
classifier.py, the heads or RowOptimizer; Partial FC sizes are host-known; clip_grad_norm_ keeps its norm on the
device; SGD/AdamW keep AdamW's step count on the CPU (no device read); DDP does not sync without
find_unused_parameters. torch.cuda.set_sync_debug_mode("warn") on a GPU run is the way to confirm.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from ..config import Config, save_config
from ..data.loader import Collate, EpochBatchSampler, default_workers
from ..data.transforms import normalize, random_flip_mask
from ..device import resolve_device
from ..errors import ConfigError, ModelError
from ..models.checkpoint import load_checkpoint, save_checkpoint
from ..models.embedder import Embedder, ModelMeta
from .classifier import ShardedClassifier
from .distributed import init_distributed, shard_range, world_from_env
from .logger import RunLogger
from .optim import JointStep, RowOptimizer, build_optimizer
from .schedules import lr_at

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Trainer:
    def __init__(self, cfg: Config, dataset=None, verbose: bool = True):
        from .. import create_head
        from ..data.datasets import open_dataset

        self.cfg = cfg
        self.world = world_from_env()
        self.device = resolve_device(cfg.device, self.world.local_rank if self.world.distributed else None)
        init_distributed(self.world, self.device)
        self.output = Path(cfg.output)
        self.output.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)

        if dataset is None:
            if not cfg.data.train:
                raise ConfigError("data.train is empty: give a RecordIO folder, image folder or list file")
            dataset = open_dataset(cfg.data.train, skip_corrupt=cfg.data.skip_corrupt)
        self.dataset = dataset
        self.num_classes = int(dataset.num_classes)
        self.micro_batch = cfg.batch_size // cfg.grad_accum
        self.steps_per_epoch = len(dataset) // (cfg.batch_size * self.world.world_size)
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"batch_size {cfg.batch_size} x {self.world.world_size} processes exceeds the {len(dataset)} "
                "training images"
            )
        self.total_steps = self.steps_per_epoch * cfg.epochs

        self._check_data_options()
        self.meta = ModelMeta.from_config(cfg.model)
        self.backbone = self.meta.build_backbone().to(self.device)
        if cfg.channels_last:
            self.backbone = self.backbone.to(memory_format=torch.channels_last)
        if cfg.compile:
            # in place (nn.Module.compile): self.backbone keeps its plain state-dict keys (no "_orig_mod.")
            mode = "default" if cfg.compile is True else cfg.compile
            self.backbone.compile(mode=mode, backend=cfg.compile_backend, dynamic=False)
        self.model = self.backbone
        if self.world.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(self.backbone, device_ids=ids)
        start, end = shard_range(self.num_classes, self.world.rank, self.world.world_size)
        head = create_head(cfg.head.name, cfg.model.embedding_size, end - start, **cfg.head.kwargs)
        self.head = head.to(self.device)
        self.classifier = ShardedClassifier(
            self.head, self.num_classes, self.world, cfg.head.sample_rate, cfg.head.chunk_size
        )
        self.optimizer = build_optimizer(cfg.optim, [self.backbone, self.head])
        # Partial FC: the head's rows are stepped through the sampled leaf, the rest of the head not at all
        self.row_optimizer = RowOptimizer(self.optimizer, self.head.weight) if cfg.head.sample_rate < 1 else None
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.precision == "fp16")
        self.step = 0
        self.logger = RunLogger(self.output, self.total_steps, cfg.tensorboard, enabled=verbose and self.world.is_main)
        self.verifier = None
        if cfg.data.val and self.world.is_main:
            from .validation import Verifier

            self.verifier = Verifier(cfg.data.val, self.meta.input_size)

    def _check_data_options(self) -> None:
        """data.decode=gpu needs a CUDA device and a dataset of encoded images; ConfigError naming the fix."""
        if self.cfg.data.decode != "gpu":
            return
        from ..data.base import EncodedImageDataset

        if self.device.type != "cuda":
            raise ConfigError(
                f"data.decode=gpu is not available on {self.device}: it decodes with nvJPEG on a CUDA "
                "GPU; use data.decode=cpu"
            )
        if not isinstance(self.dataset, EncodedImageDataset):
            raise ConfigError(
                f"data.decode=gpu is not available for {type(self.dataset).__name__}: it needs a "
                "dataset of encoded images (RecordIO, image folder, list file); use data.decode=cpu"
            )

    # ---- state -------------------------------------------------------------------------------------------
    def _head_state_index(self) -> int:
        """Position of the head's class centres in the optimiser state dict (params numbered across groups)."""
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        return next(i for i, p in enumerate(params) if p is self.head.weight)

    def _optimizer_state(self, full: bool, state: dict | None = None) -> dict:
        """Optimiser state with the head rows of all ranks (full=True, for saving) or of this rank (loading)."""
        state = self.optimizer.state_dict() if state is None else state
        index, clf = self._head_state_index(), self.classifier
        entry = state["state"].get(index)
        if entry:
            convert = clf.gather if full else clf.shard
            match = clf.is_sharded if full else lambda v: v.dim() >= 1 and v.shape[0] == clf.num_classes
            state["state"][index] = {k: convert(v) if torch.is_tensor(v) and match(v) else v for k, v in entry.items()}
        return state

    def save(self, path: Path | None = None) -> Path:
        """Every rank calls this (the head is gathered); rank 0 writes checkpoint.pt and model.pt."""
        path = path or self.output / "checkpoint.pt"
        head = {
            "name": self.cfg.head.name,
            "kwargs": dict(self.cfg.head.kwargs),
            "num_classes": self.num_classes,
            "state": self.classifier.full_state_dict(),
        }
        optimizer = self._optimizer_state(full=True)
        if self.world.is_main:
            train = {
                "step": self.step,
                "optimizer": optimizer,
                "scaler": self.scaler.state_dict(),
                "world_size": self.world.world_size,
            }
            config = self.cfg.to_dict()
            save_checkpoint(path, self.meta, self.backbone.state_dict(), head=head, train=train, config=config)
            save_checkpoint(self.output / "model.pt", self.meta, self.backbone.state_dict(), config=config)
        return path

    def resume(self, path) -> None:
        ckpt = load_checkpoint(path, map_location=self.device)
        if ckpt.get("train") is None or ckpt.get("head") is None:
            raise ModelError(f"{path}: a deployment file (model.pt) cannot resume training; use checkpoint.pt")
        if ckpt["head"]["num_classes"] != self.num_classes:
            raise ModelError(
                f"{path}: trained with {ckpt['head']['num_classes']} classes, the data has {self.num_classes}"
            )
        self.backbone.load_state_dict(ckpt["backbone"])
        self.classifier.load_full_state_dict(ckpt["head"]["state"])
        self.optimizer.load_state_dict(self._optimizer_state(full=False, state=ckpt["train"]["optimizer"]))
        self.scaler.load_state_dict(ckpt["train"]["scaler"])
        self.step = int(ckpt["train"]["step"])
        self.logger.print(f"resumed from {path} at step {self.step}")

    # ---- the loop ----------------------------------------------------------------------------------------
    def _loader(self, epoch: int, start_batch: int):
        """Batches of micro_batch samples; on CUDA with data.prefetch (or data.decode=gpu), already on the device."""
        w, data = self.world, self.cfg.data
        sampler = EpochBatchSampler(len(self.dataset), self.micro_batch, self.cfg.seed, w.rank, w.world_size)
        sampler.set_epoch(epoch, start_batch)
        workers = default_workers(data.num_workers)
        gpu_decode = data.decode == "gpu"
        if gpu_decode:
            from ..data.loader import EncodedCollate

            self.dataset.decode = False  # workers return the encoded bytes
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=sampler,
            num_workers=workers,
            collate_fn=EncodedCollate() if gpu_decode else Collate(self.meta.input_size),
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            prefetch_factor=4 if workers else None,
        )
        if self.device.type != "cuda" or not (data.prefetch or gpu_decode):
            return loader
        from ..data.prefetch import DevicePrefetcher

        transform = None
        if gpu_decode:
            from ..data.gpu_decode import GpuJpegDecoder

            transform = GpuJpegDecoder(self.meta.input_size, self.device, skip_corrupt=data.skip_corrupt)
        return DevicePrefetcher(loader, self.device, transform)

    def _autocast(self):
        dtype = _DTYPES[self.cfg.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def _micro_step(self, batch: dict, generator: torch.Generator) -> torch.Tensor:
        if len(batch["labels"]) == 0:  # every sample of this micro-batch was corrupt and skipped
            return torch.zeros((), device=self.device)
        images = batch["images"].to(self.device, non_blocking=True)
        labels = batch["labels"].to(self.device, non_blocking=True)
        flip = random_flip_mask(len(labels), generator, self.device) if self.cfg.data.flip else None
        m = self.meta
        x = normalize(images, m.mean, m.std, m.channel_order, flip=flip)
        with self._autocast():
            emb = self.model(x)
        loss = self.classifier(emb.float(), labels)
        self.scaler.scale(loss / self.cfg.grad_accum).backward()
        return loss.detach()

    def _optimizer_step(self) -> None:
        """One update: lr from the schedule; with Partial FC, the sampled rows through RowOptimizer.

        The main and the row optimiser form one JointStep, so the fp16 GradScaler's inf check and the gradient
        clipping cover both, and an overflow anywhere skips the whole update.
        """
        lr = lr_at(self.step, self.cfg.optim.lr, self.total_steps, self.steps_per_epoch, self.cfg.schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        optimizer = self.optimizer
        sub, rows = self.classifier.sampled, self.classifier.rows
        rows_step = self.row_optimizer is not None and sub is not None and sub.grad is not None
        if rows_step:
            optimizer = JointStep(self.optimizer, self.row_optimizer.load(sub, rows))
        if self.cfg.optim.grad_clip > 0:
            self.scaler.unscale_(optimizer)
            params = [p for g in optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.grad_clip)
        self.scaler.step(optimizer)
        if rows_step:
            self.row_optimizer.store(sub, rows)  # after a skipped step this writes back the unchanged rows
        self.scaler.update()
        optimizer.zero_grad(set_to_none=True)
        self.classifier.end_step()

    def train_step(self, batches: list[dict], generator: torch.Generator) -> torch.Tensor:
        """One optimiser step over grad_accum micro-batches; returns the sum of their losses (on the device).

        Partial FC draws one sample of class rows per step, from the labels of all micro-batches (every
        positive of the step is kept), so accumulated gradients belong to the same rows.
        """
        if self.row_optimizer is not None:
            labels = [b["labels"].to(self.device, non_blocking=True).reshape(-1) for b in batches]
            self.classifier.pin_sample(torch.cat(labels))  # copies from pinned memory, then a device cat
        total = torch.zeros((), device=self.device)
        for batch in batches:
            total += self._micro_step(batch, generator)
        self._optimizer_step()
        self.step += 1
        return total

    def fit(self, max_steps: int | None = None) -> list[dict]:
        """Train to the configured epochs (or stop after `max_steps` optimiser steps); returns the log history."""
        cfg = self.cfg
        if self.world.is_main:
            save_config(cfg, self.output / "config.yaml")
        stop = min(self.total_steps, max_steps) if max_steps else self.total_steps
        save_every = cfg.save_every or self.steps_per_epoch
        val_every = cfg.val_every or self.steps_per_epoch
        self.backbone.train()
        self.head.train()
        self.logger.start(self.step)
        loss_sum, loss_n, skipped = torch.zeros((), device=self.device), 0, 0
        while self.step < stop:
            epoch, in_epoch = divmod(self.step, self.steps_per_epoch)
            batches = iter(self._loader(epoch, in_epoch * cfg.grad_accum))
            for _ in range(in_epoch, self.steps_per_epoch):
                seed = cfg.seed * 1_000_003 + self.step
                torch.manual_seed(seed)  # dropout etc.: a function of (seed, step), so resume is exact
                generator = torch.Generator().manual_seed(seed * 1024 + self.world.rank)  # flips differ by rank
                step_batches = [next(batches) for _ in range(cfg.grad_accum)]
                skipped += sum(b["skipped"] for b in step_batches)
                loss_sum += self.train_step(step_batches, generator)
                loss_n += cfg.grad_accum
                if self.world.is_main and (self.step % cfg.log_every == 0 or self.step == stop):
                    lr = self.optimizer.param_groups[0]["lr"]
                    extra = {"skipped": skipped} if skipped else {}
                    loss = (loss_sum / loss_n).item()  # the only host sync, once per log interval
                    self.logger.progress(
                        self.step, epoch, cfg.epochs, loss, lr, cfg.batch_size * self.world.world_size, **extra
                    )
                    loss_sum.zero_()
                    loss_n = 0
                if self.step % save_every == 0 or self.step == stop:
                    self.save()
                if self.verifier and (self.step % val_every == 0 or self.step == stop):
                    self.validate()
                if self.step >= stop:
                    break
        self.logger.close()
        return self.logger.history

    def close(self) -> None:
        """Leave the process group (distributed runs)."""
        if self.world.distributed and torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()

    def embedder(self) -> Embedder:
        return Embedder(self.backbone, self.meta)

    def validate(self) -> dict[str, dict]:
        results = self.verifier(self.embedder(), self.device)
        line = " ".join(f"{name} {r['accuracy'] * 100:.2f}%" for name, r in results.items())
        self.logger.print(f"verification at step {self.step}: {line}")
        self.logger.scalars(self.step, {name: r["accuracy"] for name, r in results.items()}, prefix="val")
        return results

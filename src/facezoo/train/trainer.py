"""The training loop, shared by every training mode: precision, accumulation, clipping, schedule, events, checkpoints.

What is trained and how the loss is formed is the mode's (train/modes: cfg.mode, default conventional); the loop
here is the same for all of them. One process, or one per GPU under torchrun (modes wrap their networks in DDP
and shard their heads); checkpoints hold the mode's state whole, so a run can resume on any number of ranks.

Exact resume: the data order comes from (seed, epoch), each step's randomness (flip, dropout, Partial FC
negatives) from (seed, step), and checkpoints hold model, mode state (heads and their buffers, queues, EMA
copies), optimiser and scaler state; so a run interrupted and resumed gives the same losses as an uninterrupted one.

Host syncs per step (CUDA): none with fp32/bf16. Left, with the reason:
  - precision=fp16: GradScaler.step reads found_inf (.item()) to decide whether to skip the step (PyTorch's
    design for non-fused optimisers); bf16 needs no scaler;
  - the logged loss and the non-finite check: one .item() every log_every steps and before each checkpoint (the
    first non-finite step is tracked on the device); skip_nonfinite=true checks every step (one sync per step);
  - checkpoints and validation, at their intervals;
  - micro-batches with no sample (all skipped as corrupt) are detected from the host-side batch, not the device.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch

from ..config import Config, save_config
from ..device import resolve_device
from ..errors import ConfigError, ModelError
from ..models.checkpoint import load_checkpoint, save_checkpoint
from ..models.embedder import EmbedderModule
from .callbacks import Events, default_callbacks
from .distributed import init_distributed, world_from_env
from .modes import MODES, TrainContext
from .optim import JointStep, build_optimizer
from .schedules import lr_at
from .warmstart import check_lr_mult, freeze, read_source, resolve_meta


class NonFiniteLoss(ConfigError):
    """Training produced a NaN or infinite loss (raised before any checkpoint holds non-finite weights)."""


def remove_stale_temps(folder: Path) -> None:
    """Delete temp files an interrupted run left beside its outputs (atomic_write's `.NAME.*.tmp`)."""
    for p in folder.glob(".*.tmp"):
        if p.is_file():
            with contextlib.suppress(OSError):
                p.unlink()


class Trainer:
    """`Trainer(cfg).fit()` trains cfg.mode; `resume(path)` first continues a run exactly.

    dataset: an object to train on instead of cfg.data.train (tests, notebooks); callbacks: extra Callback objects
    beside the built-in ones (train/callbacks).
    """

    def __init__(self, cfg: Config, dataset=None, verbose: bool = True, callbacks=()):
        self.cfg = cfg
        self.world = world_from_env()
        self.device = resolve_device(cfg.device, self.world.local_rank if self.world.distributed else None)
        init_distributed(self.world, self.device)
        self.output = Path(cfg.output)
        if self.output.exists() and not self.output.is_dir():
            raise ConfigError(f"output={self.output} is a file; give a folder for the run (output=runs/NAME)")
        self.output.mkdir(parents=True, exist_ok=True)
        if self.world.is_main:
            remove_stale_temps(self.output)
        torch.manual_seed(cfg.seed)

        source = read_source(cfg.model.init_from) if cfg.model.init_from else None
        self.meta, self.notes = resolve_meta(cfg, source)  # notes: what warm start and resume() changed
        self.ctx = TrainContext(cfg, self.world, self.device, self.meta, dataset=dataset, source=source)
        options = cfg.mode_options
        if options is None and getattr(MODES.get(cfg.mode), "Config", None) is not None:
            options = MODES.get(cfg.mode).Config()  # a Config built in code, without load_config's section
        self.mode = MODES.create(cfg.mode, ctx=self.ctx, options=options)
        self.steps_per_epoch = self.mode.steps_per_epoch()
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"batch_size {cfg.batch_size} x {self.world.world_size} processes exceeds the training images of "
                f"mode {cfg.mode}; lower batch_size"
            )
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.stop_step = self.total_steps
        parts = self.mode.parts()
        freeze(parts, cfg.model.freeze)  # the backbone's share is applied when it is built (ctx.build_backbone)
        check_lr_mult(parts, cfg.optim.lr_mult)
        self.optimizer = build_optimizer(cfg.optim, parts)
        if source is not None:
            self.notes.append(
                f"warm start from {source.path}" + (" (backbone and head)" if cfg.model.init_head else "")
            )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.precision == "fp16")
        self.step = 0
        self.best: dict | None = None
        self.events = Events((default_callbacks(cfg, self.world.is_main) if verbose else []) + list(callbacks))
        self._bad_step = torch.full((), -1, dtype=torch.long, device=self.device)
        self.skipped_nonfinite = 0

    # ---- conveniences --------------------------------------------------------------------------------------
    @property
    def backbone(self) -> torch.nn.Module:
        return self.mode.backbone

    @property
    def checkpoint_path(self) -> Path:
        return self.output / "checkpoint.pt"

    def embedder(self) -> EmbedderModule:
        return EmbedderModule(self.backbone, self.meta)

    def plan(self) -> list[str]:
        """The lines printed before training: what runs where, and what resume changed."""
        cfg, w = self.cfg, self.world
        todo = self.stop_step - self.step
        return [
            f"training ({cfg.mode}) {self.mode.describe()}: {todo} steps to step {self.stop_step} of "
            f"{self.total_steps} ({cfg.epochs} epochs x {self.steps_per_epoch}), batch {cfg.batch_size} x "
            f"{w.world_size} process(es) on {self.device} ({cfg.precision}, compile {cfg.compile})",
            *self.notes,
        ]

    # ---- state ---------------------------------------------------------------------------------------------
    def _optimizer_state(self, full: bool, state: dict | None = None) -> dict:
        """Optimiser state with the sharded rows of all ranks (full=True, for saving) or of this rank (loading)."""
        state = self.optimizer.state_dict() if state is None else state
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        for param, sharding in self.mode.sharded_params():
            index = next(i for i, p in enumerate(params) if p is param)
            entry = state["state"].get(index)
            if not entry:
                continue
            convert = sharding.gather if full else sharding.shard

            def match(v, s=sharding):
                return s.is_sharded(v) if full else v.dim() >= 1 and v.shape[0] == s.num_classes

            state["state"][index] = {k: convert(v) if torch.is_tensor(v) and match(v) else v for k, v in entry.items()}
        return state

    def _check_finite(self) -> None:
        """NonFiniteLoss naming the first step whose loss was NaN/inf (one host sync)."""
        bad = int(self._bad_step.item())
        if bad >= 0:
            cfg = self.cfg
            raise NonFiniteLoss(
                f"the loss became non-finite at step {bad} (mode {cfg.mode}, lr {cfg.optim.lr}, precision "
                f"{cfg.precision}); no checkpoint was written after it. Likely causes: a learning rate too high "
                "for this batch size (try a lower optim.lr or schedule.warmup_epochs), fp16 overflow (use bf16), "
                "or corrupt input. To skip such steps instead, set skip_nonfinite=true."
            )

    def save(self, path: Path | None = None) -> Path:
        """Every rank calls this (sharded state is gathered); rank 0 writes model.pt, then checkpoint.pt."""
        self._check_finite()
        path = path or self.checkpoint_path
        mode_state = self.mode.state_dict()
        optimizer = self._optimizer_state(full=True)
        if self.world.is_main:
            train = {
                "step": self.step,
                "optimizer": optimizer,
                "scaler": self.scaler.state_dict(),
                "world_size": self.world.world_size,
                "mode": self.cfg.mode,
                "mode_state": mode_state,
            }
            self.save_model(self.output / "model.pt")
            save_checkpoint(path, self.meta, self.backbone.state_dict(), train=train, config=self.cfg.to_dict())
        self.events.emit("on_checkpoint", self, self.step, path)
        return path

    def save_model(self, path: Path) -> None:
        """A deployment file (weights + metadata, no training state) of the current backbone."""
        save_checkpoint(path, self.meta, self.backbone.state_dict(), config=self.cfg.to_dict())

    def _check_resumable(self, ckpt: dict, path) -> None:
        """ModelError when the checkpoint cannot continue this run; notes on what changed but still works."""
        saved = ckpt.get("config") or {}
        mode = ckpt["train"].get("mode", "conventional")
        if mode != self.cfg.mode:
            raise ModelError(f"{path}: written by mode {mode}, the recipe says mode={self.cfg.mode}; set mode={mode}")
        for section, keys in (("model", ("backbone", "embedding_size", "input_size", "kwargs")), ("optim", ("name",))):
            for key in keys:
                before, now = (saved.get(section) or {}).get(key), getattr(getattr(self.cfg, section), key)
                if before is not None and before != now:
                    raise ModelError(
                        f"{path}: trained with {section}.{key}={before}, the recipe says {now}; resume needs the "
                        f"same {section}.{key} (set it back, or start a new run with another output=)"
                    )
        before = saved.get("batch_size")
        if before is not None and before * ckpt["train"].get("world_size", 1) != self.cfg.batch_size * (
            self.world.world_size
        ):
            self.notes.append(
                f"note: the global batch changed ({before} x {ckpt['train'].get('world_size', 1)} -> "
                f"{self.cfg.batch_size} x {self.world.world_size}); step {ckpt['train']['step']} is kept, so "
                f"training continues in epoch {ckpt['train']['step'] // self.steps_per_epoch + 1} of "
                f"{self.cfg.epochs} at {self.steps_per_epoch} steps per epoch (not an exact resume)"
            )

    def resume(self, path) -> None:
        ckpt = load_checkpoint(path, map_location=self.device)
        if ckpt.get("train") is None:
            raise ModelError(f"{path}: a deployment file (model.pt) cannot resume training; use checkpoint.pt")
        train = ckpt["train"]
        mode_state = train.get("mode_state", {"head": ckpt.get("head")})  # facezoo 0.1 kept the head at top level
        self._check_resumable(ckpt, path)
        self.mode.check_resume(mode_state, path)
        try:
            self.backbone.load_state_dict(ckpt["backbone"])
            self.mode.load_state_dict(mode_state)
            self.optimizer.load_state_dict(self._optimizer_state(full=False, state=train["optimizer"]))
        except (RuntimeError, ValueError, KeyError) as e:
            raise ModelError(f"{path}: does not fit this run ({type(e).__name__}: {str(e)[:300]})") from None
        self.scaler.load_state_dict(train["scaler"])
        self.step = int(train["step"])
        self.notes.insert(0, f"resumed from {path} at step {self.step}")
        if self.step >= self.total_steps:
            self.notes.append(
                f"note: step {self.step} already reaches the {self.total_steps} steps of {self.cfg.epochs} epochs: "
                "nothing left to train; raise epochs= to train longer"
            )
        if self.world.is_main:  # model.pt may be one save ahead of the checkpoint after a kill: make them agree
            self.save_model(self.output / "model.pt")

    # ---- the loop ------------------------------------------------------------------------------------------
    def _optimizer_step(self, total: torch.Tensor) -> None:
        """One update: lr from the schedule (times a group's lr_mult); the mode's sub-steps stepped jointly, so the
        fp16 GradScaler's inf check and clipping cover every optimiser and an overflow skips the whole update."""
        lr = lr_at(self.step, self.cfg.optim.lr, self.total_steps, self.steps_per_epoch, self.cfg.schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        subs = self.mode.sub_steps(self.optimizer)
        optimizer = JointStep(self.optimizer, *(s.optimizer for s in subs)) if subs else self.optimizer
        skip = self.cfg.skip_nonfinite and not bool(torch.isfinite(total))  # one sync per step, by request
        if skip:
            self.skipped_nonfinite += 1
        else:
            if self.cfg.optim.grad_clip > 0:
                self.scaler.unscale_(optimizer)
                params = [p for g in optimizer.param_groups for p in g["params"]]
                torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.grad_clip)
            self.scaler.step(optimizer)
        for s in subs:
            s.finish()  # after a skipped step this writes back the unchanged rows
        if not skip:
            self.scaler.update()
        optimizer.zero_grad(set_to_none=True)
        self.mode.end_step()

    def train_step(self, batches: list[dict], generator: torch.Generator) -> torch.Tensor:
        """One optimiser step over grad_accum micro-batches; returns the sum of their losses (on the device)."""
        self.mode.begin_step(batches)
        total = torch.zeros((), device=self.device)
        for batch in batches:
            if len(batch["labels"]) == 0:  # every sample of this micro-batch was corrupt and skipped
                continue
            loss = self.mode.loss(batch, generator)
            self.scaler.scale(loss / self.cfg.grad_accum).backward()
            total += loss.detach()
        if not self.cfg.skip_nonfinite:
            finite = torch.isfinite(total)
            self._bad_step = torch.where(
                finite | (self._bad_step >= 0), self._bad_step, self._bad_step.new_tensor(self.step + 1)
            )
        self._optimizer_step(total)
        self.step += 1
        return total

    def fit(self, max_steps: int | None = None) -> list[dict]:
        """Train to the configured epochs (or stop after `max_steps` optimiser steps in all); returns the history."""
        cfg = self.cfg
        if self.world.is_main:
            save_config(cfg, self.output / "config.yaml")
        self.stop_step = min(self.total_steps, max_steps) if max_steps else self.total_steps
        save_every = cfg.save_every or self.steps_per_epoch
        for module in self.mode.parts().values():
            module.train()
        self.events.emit("on_train_start", self)
        loss_sum, loss_n, skipped, t0, s0 = torch.zeros((), device=self.device), 0, 0, time.perf_counter(), self.step
        while self.step < self.stop_step:
            epoch, in_epoch = divmod(self.step, self.steps_per_epoch)
            batches = iter(self.mode.batches(epoch, in_epoch))
            for _ in range(in_epoch, self.steps_per_epoch):
                seed = cfg.seed * 1_000_003 + self.step
                torch.manual_seed(seed)  # dropout etc.: a function of (seed, step), so resume is exact
                generator = torch.Generator().manual_seed(seed * 1024 + self.world.rank)  # flips differ by rank
                step_batches = [next(batches) for _ in range(cfg.grad_accum)]
                skipped += sum(b["skipped"] for b in step_batches)
                loss_sum += self.train_step(step_batches, generator)
                loss_n += cfg.grad_accum
                if self.step % cfg.log_every == 0 or self.step == self.stop_step:
                    self._check_finite()
                    extra = self.mode.log_values()  # every rank: the mode restarts its sums
                    if self.world.is_main:
                        values = {
                            "loss": (loss_sum / max(loss_n, 1)).item(),  # the only host sync, once per log interval
                            "lr": self.optimizer.param_groups[0]["lr"],
                            "images_per_s": (self.step - s0)
                            * cfg.batch_size
                            * self.world.world_size
                            / max(time.perf_counter() - t0, 1e-9),
                        }
                        if skipped:
                            values["skipped"] = skipped
                        if self.skipped_nonfinite:
                            values["nonfinite_skipped"] = self.skipped_nonfinite
                        values.update({k: float(v) for k, v in extra.items()})
                        self.events.emit("on_log", self, self.step, values)
                    loss_sum.zero_()
                    loss_n = 0
                if self.step % save_every == 0 or self.step == self.stop_step:
                    self.save()
                self.events.emit("on_step_end", self, self.step)
                if self.step % self.steps_per_epoch == 0:
                    self.events.emit("on_epoch_end", self, self.step // self.steps_per_epoch - 1)
                if self.step >= self.stop_step:
                    break
        self.events.emit("on_train_end", self)
        metrics = next((c for c in self.events.callbacks if hasattr(c, "history")), None)
        return metrics.history if metrics else []

    def close(self) -> None:
        """Leave the process group (distributed runs)."""
        if self.world.distributed and torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()

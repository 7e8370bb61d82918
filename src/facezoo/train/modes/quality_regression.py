"""Quality regression (SDD-FIQA's second stage): backbone -> one output q(x), Huber loss against pseudo-labels.

The regressor is any facezoo backbone with model.embedding_size = 1: its embedding layer is the scalar head (the
authors replace their recognition network's output layer by one unit), so model.pt is an ordinary facezoo model
file whose config says mode quality_regression, loadable by facezoo.quality's sdd_fiqa and exportable to ONNX.
Labels: a .npy of one value per training image in the dataset's order (facezoo.quality.labels, `facezoo quality
labels`), NaN for images without one (skipped by the loss). scale: standard (default) z-scores the finite labels,
so the output reads "standard deviations above the average training image" and starts at the scale of the
backbone's final BatchNorm (at init: mean 0, std 1 over a batch); minmax100 maps them to [0, 100] (the authors'
code: the output layer must first grow to that range, which takes many steps); none keeps them. Loss per
micro-batch: the mean over its
labelled images of huber(q, label; delta) = 0.5 d^2 if |d| <= delta else delta (|d| - 0.5 delta), d = q - label.
init: a recognition checkpoint whose backbone weights of matching name and shape start the regressor (the
authors fine-tune from the recognition model); the output layer, whose shape differs, starts fresh.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ...data.base import EncodedImageDataset
from ...errors import ConfigError, ModelError
from . import MODES
from .base import Mode


@dataclass
class QualityRegressionConfig:
    labels: str = ""  # labels.npy from `facezoo quality labels` (one value per training image, NaN = none)
    huber_delta: float = 1.0
    # standard: z-scored labels (mean 0, std 1 over the labelled images), the scale a backbone's final BatchNorm
    # starts at, so the regressor fits in few steps; minmax100: mapped to [0, 100] (the authors' code); none: raw
    scale: Literal["standard", "minmax100", "none"] = "standard"
    init: str = ""  # a facezoo recognition .pt whose matching backbone weights start the regressor


class ByIndex(EncodedImageDataset):
    """A training set whose samples carry their index instead of their identity label: (image, i)."""

    def __init__(self, inner):
        self.inner = inner
        self.labels = np.arange(len(inner), dtype=np.int64)
        self.num_classes = len(inner)

    @property
    def skip_corrupt(self):
        return getattr(self.inner, "skip_corrupt", False)

    @property
    def decode(self):
        return getattr(self.inner, "decode", True)

    @decode.setter
    def decode(self, value):
        self.inner.decode = value

    def read_encoded(self, i: int) -> bytes:
        return self.inner.read_encoded(i)

    def where(self, i: int) -> str:
        return self.inner.where(i)

    def __getitem__(self, i: int):
        if isinstance(self.inner, EncodedImageDataset):
            return super().__getitem__(i)
        sample = self.inner[i]
        return None if sample is None else (sample[0], i)


def load_labels(path, n: int, scale: str) -> tuple[np.ndarray, str]:
    """(float32 (n,) targets, sha256 of the file): the labels checked against the dataset size and scaled."""
    if not path:
        raise ConfigError("quality_regression.labels is empty: give the labels.npy of `facezoo quality labels`")
    path = Path(path)
    try:
        raw = path.read_bytes()
        q = np.load(io.BytesIO(raw), allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ConfigError(f"quality_regression.labels={path}: not a readable .npy file ({e}).") from None
    if q.ndim != 1 or not np.issubdtype(q.dtype, np.floating):
        raise ConfigError(f"{path}: labels must be a 1-d float array, got {q.dtype} {q.shape}")
    if q.size != n:
        raise ConfigError(
            f"{path}: {q.size} labels for a training set of {n} images; make the labels from this data.train "
            "(facezoo quality labels DATA --model M --out labels.npy)"
        )
    finite = np.isfinite(q)
    if not finite.any():
        raise ConfigError(f"{path}: no image has a label (all NaN): every identity has one image?")
    q = q.astype(np.float64)
    lo, hi = q[finite].min(), q[finite].max()
    if not hi > lo:
        raise ConfigError(f"{path}: every label is {lo}; constant labels teach nothing")
    if scale == "minmax100":
        q = (q - lo) / (hi - lo) * 100.0
    elif scale == "standard":
        q = (q - q[finite].mean()) / q[finite].std()
    return q.astype(np.float32), hashlib.sha256(raw).hexdigest()


@MODES.register("quality_regression")
class QualityRegression(Mode):
    Config = QualityRegressionConfig
    min_embedding_size = 1  # the scalar quality output

    def __init__(self, ctx, options):
        super().__init__(ctx, options)
        cfg = ctx.cfg
        if cfg.model.embedding_size != 1 and cfg.model.init_from:
            raise ConfigError(
                f"mode quality_regression: model.init_from={cfg.model.init_from} has {cfg.model.embedding_size}-d "
                "embeddings, the regressor one output; start from a recognition model with "
                f"quality_regression.init={cfg.model.init_from} (matching weights copied, the output layer fresh)"
            )
        if cfg.model.embedding_size != 1:
            raise ConfigError(
                f"mode quality_regression: model.embedding_size is {cfg.model.embedding_size}; the regressor has one "
                "output: set model.embedding_size=1"
            )
        if cfg.data.val:
            raise ConfigError(
                "mode quality_regression: data.val holds verification sets for recognition models; remove it "
                "(evaluate the regressor with facezoo eval-quality)"
            )
        if not options.huber_delta > 0:
            raise ConfigError(f"quality_regression.huber_delta must be > 0, got {options.huber_delta}")
        inner = ctx.open_dataset()
        self.dataset = ByIndex(inner)
        ctx.check_decode(self.dataset if isinstance(inner, EncodedImageDataset) else inner)
        targets, self.labels_sha256 = load_labels(options.labels, len(inner), options.scale)
        self.targets = torch.from_numpy(targets).to(ctx.device)
        self.backbone = ctx.build_backbone()
        self.init_note = self._init(options.init) if options.init else ""
        self.model = ctx.wrap(self.backbone)

    def _init(self, path) -> str:
        """Copy the recognition checkpoint's backbone tensors of matching name and shape; the note for the plan."""
        from ...models.checkpoint import load_checkpoint

        state = load_checkpoint(path)["backbone"]
        own = self.backbone.state_dict()
        same = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        if not same:
            raise ModelError(
                f"quality_regression.init={path}: none of its weights fit backbone {self.ctx.cfg.model.backbone}; "
                "give a checkpoint of the same backbone (and width), or no init"
            )
        self.backbone.load_state_dict(same, strict=False)
        return f", initialised from {path} ({len(same)} of {len(own)} tensors)"

    def steps_per_epoch(self) -> int:
        return len(self.dataset) // (self.ctx.cfg.batch_size * self.ctx.world.world_size)

    def batches(self, epoch: int, start_step: int):
        sampler = self.ctx.epoch_sampler(len(self.dataset), epoch, start_step)
        return self.ctx.loader(self.dataset, sampler)

    def trainable(self):
        return [self.backbone]

    def loss(self, batch, generator):
        x, index = self.ctx.prepare(batch, generator)
        with self.ctx.autocast():
            q = self.model(x)
        q = q.float().reshape(-1)
        target = self.targets[index]
        valid = torch.isfinite(target)
        per = torch.nn.functional.huber_loss(
            q, torch.where(valid, target, q.detach()), reduction="none", delta=self.options.huber_delta
        )
        return (per * valid).sum() / valid.sum().clamp(min=1)

    def state_dict(self) -> dict:
        return {"labels_sha256": self.labels_sha256}

    def check_resume(self, state, path) -> None:
        if state.get("labels_sha256") != self.labels_sha256:
            raise ModelError(
                f"{path}: trained on other labels than {self.options.labels}; resume needs the same labels file "
                "(or start a new run with another output=)"
            )

    def describe(self) -> str:
        cfg = self.ctx.cfg
        n = int(torch.isfinite(self.targets).sum())
        return (
            f"{cfg.model.backbone} -> 1 output, Huber (delta {self.options.huber_delta}) on {n} labelled of "
            f"{len(self.dataset)} images ({self.options.scale}){self.init_note}"
        )

"""Training batches: a resumable per-epoch shuffled batch sampler and a uint8 collate that drops skipped samples."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Sampler

from .image import resize_image


class EpochBatchSampler(Sampler):
    """Batches of a permutation drawn from (seed, epoch); rank r of W takes every W-th index; drop_last.

    `start` skips the first batches so a resumed run sees exactly the batches an uninterrupted one would.
    """

    def __init__(self, size: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return (self.size // self.world_size) // self.batch_size

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=g)[self.rank :: self.world_size].tolist()
        for b in range(self.start, len(self)):
            yield order[b * self.batch_size : (b + 1) * self.batch_size]


class Collate:
    """[(uint8 HWC RGB, label) | None] -> {images (B, H, W, 3) uint8, labels (B,) int64, skipped int}.

    None marks a corrupt sample the dataset skipped; images of another size are resized (Pillow, bilinear).
    """

    def __init__(self, size: tuple[int, int]):
        self.size = tuple(size)

    def __call__(self, samples):
        kept = [s for s in samples if s is not None]
        images = np.stack([resize_image(img, self.size) for img, _ in kept]) if kept else np.zeros((0, *self.size, 3), np.uint8)
        labels = torch.tensor([int(label) for _, label in kept], dtype=torch.int64)
        return {"images": torch.from_numpy(images), "labels": labels, "skipped": len(samples) - len(kept)}


def default_workers(requested: int) -> int:
    """-1 -> min(8, cores - 1): one core stays for the main process."""
    import os

    return requested if requested >= 0 else max(0, min(8, (os.cpu_count() or 1) - 1))

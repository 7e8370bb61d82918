"""Training batch samplers by name (data.sampler), and the P x K identity sampler of pair and triplet modes.

Every sampler is resumable like EpochBatchSampler: its batches are a function of (seed, epoch) only, rank r of W
takes its share, and set_epoch(epoch, start) skips the first `start` batches, so a resumed run sees exactly the
batches an uninterrupted one would.

SAMPLERS.create(name, labels=(N,) int array, batch_size=b, seed=s, rank=r, world_size=W):
  random          a permutation of the N samples per epoch (EpochBatchSampler), drop_last;
  class_balanced  N draws per epoch, each a class chosen uniformly among the classes present, then one of its
                  images uniformly (P(sample i) = 1 / (C n_{y_i})): rare identities are seen as often as large ones.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Sampler

from ..errors import ConfigError, DataError
from ..registry import Registry
from .loader import EpochBatchSampler

SAMPLERS: Registry = Registry("sampler")


def _generator(seed: int, epoch: int, tag: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 100_003 + epoch) * 16 + tag)


def _labels(labels) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels) and labels.min() < 0:
        raise DataError(f"sampler: labels must be >= 0, found {int(labels.min())}")
    return labels


@SAMPLERS.register("random")
def _random(labels, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> EpochBatchSampler:
    return EpochBatchSampler(len(labels), batch_size, seed, rank, world_size)


class _Resumable(Sampler):
    """Base: set_epoch(epoch, start) and iteration over this rank's batches from batch `start`."""

    def __init__(self, batch_size: int, seed: int, rank: int, world_size: int):
        if batch_size <= 0:
            raise ConfigError(f"sampler: batch size must be positive, got {batch_size}")
        self.batch_size, self.seed, self.rank, self.world_size = int(batch_size), int(seed), int(rank), int(world_size)
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = int(epoch), int(start)

    def batch(self, b: int) -> list[int]:
        raise NotImplementedError

    def __iter__(self):
        self._draw()
        for b in range(self.start, len(self)):
            yield self.batch(b)

    def _draw(self) -> None:
        """This epoch's random choices (called once per iteration)."""


@SAMPLERS.register("class_balanced")
class ClassBalancedSampler(_Resumable):
    """N draws per epoch: class ~ uniform over the classes present, image ~ uniform within it; rank r takes every
    W-th draw; batches of `batch_size` (drop_last). With replacement, so an epoch has N samples, as with random."""

    def __init__(self, labels, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        super().__init__(batch_size, seed, rank, world_size)
        labels = _labels(labels)
        self.size = len(labels)
        self.order = np.argsort(labels, kind="stable")  # sample indices grouped by class
        classes, self.starts, self.counts = np.unique(labels[self.order], return_index=True, return_counts=True)
        self.num_present = len(classes)

    def __len__(self) -> int:
        return (self.size // self.world_size) // self.batch_size

    def _draw(self) -> None:
        g = _generator(self.seed, self.epoch, 1)
        cls = torch.randint(self.num_present, (self.size,), generator=g).numpy()
        u = torch.rand(self.size, generator=g, dtype=torch.float64).numpy()
        within = np.minimum((u * self.counts[cls]).astype(np.int64), self.counts[cls] - 1)
        self._drawn = self.order[self.starts[cls] + within][self.rank :: self.world_size]

    def batch(self, b: int) -> list[int]:
        return self._drawn[b * self.batch_size : (b + 1) * self.batch_size].tolist()


class IdentitySampler(_Resumable):
    """P x K batches: P identities, K distinct images of each, identity-major ([id0 x K, id1 x K, ...]).

    Identities with fewer than K images are left out (`excluded` counts them). Per epoch: a (seed, epoch)
    permutation of the eligible identities, rank r taking every W-th, so the W ranks' batches together hold W x P
    distinct identities, the same set one process draws with P' = W x P; each identity's K images are its K images
    of smallest U(0, 1) key, keys drawn per epoch for every sample (the same on every rank). An epoch passes over
    every eligible identity once: len = (eligible // W) // P batches.
    """

    def __init__(self, labels, identities_per_batch: int, k: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        super().__init__(identities_per_batch, seed, rank, world_size)
        if k < 1:
            raise ConfigError(f"sampler: images per identity K must be >= 1, got {k}")
        self.labels = _labels(labels)
        self.k = int(k)
        counts = np.bincount(self.labels) if len(self.labels) else np.zeros(0, np.int64)
        present = np.flatnonzero(counts)
        self.identities = present[counts[present] >= self.k]
        self.excluded = len(present) - len(self.identities)
        if len(self.identities) == 0:
            raise DataError(
                f"no identity has {self.k} images (the most is {counts.max() if len(counts) else 0}); "
                f"this sampler takes K={self.k} images of each identity in a batch: use a set with more images per "
                "identity or a smaller K"
            )

    def __len__(self) -> int:
        return (len(self.identities) // self.world_size) // self.batch_size

    def _draw(self) -> None:
        g = _generator(self.seed, self.epoch, 2)
        perm = torch.randperm(len(self.identities), generator=g).numpy()
        self._ids = self.identities[perm][self.rank :: self.world_size]
        keys = torch.rand(len(self.labels), generator=g, dtype=torch.float64).numpy()
        order = np.lexsort((keys, self.labels))  # by label, random within a label
        starts = np.searchsorted(self.labels[order], np.arange(self.labels.max() + 1))
        self._order, self._starts = order, starts

    def batch(self, b: int) -> list[int]:
        ids = self._ids[b * self.batch_size : (b + 1) * self.batch_size]
        picks = self._starts[ids][:, None] + np.arange(self.k)[None, :]
        return self._order[picks].reshape(-1).tolist()

"""The augmentation ops' common ground: the AUGMENTS registry, the op base class and the random draws.

An op is a class registered with @AUGMENTS.register("name"), holding a typed `Options` dataclass (first field
`name`, then `p`, the per-sample probability, then its own options; config.py validates a recipe's
`data.augment` list against it) and `apply(x, draw) -> x` on float (b, 3, H, W) 0-255 images: the b samples whose
coin came up (the pipeline draws the coins on the CPU, so it knows them without a device sync).

Determinism: every random value comes from `Draws`, built on the CPU generator the Trainer seeds per (seed, step,
rank) and passes to TrainContext.prepare: small per-sample tensors are drawn on the CPU and copied to the device
(non-blocking); large noise is drawn on the device from a generator seeded by one draw of that CPU generator. So a
resumed run sees the same augmentation as an uninterrupted one, on any device.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from ..registry import Registry

AUGMENTS: Registry = Registry("augmentation")


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on `device` without stalling the host: pinned first for CUDA (a copy from pageable memory waits
    for the stream), as is on the CPU."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


class Draws:
    """Random values for the `batch` samples an op is applied to, from a CPU generator (module doc); tensors land on
    `device` unless asked for on the CPU (host-side choices such as which op a sample takes: no device sync)."""

    def __init__(self, generator: torch.Generator, batch: int, device):
        self.generator, self.batch, self.device = generator, batch, torch.device(device)

    def uniform(self, lo: float, hi: float, n: int | None = None) -> torch.Tensor:
        """(n or B,) float32 uniform in [lo, hi)."""
        u = torch.rand(self.batch if n is None else n, generator=self.generator, dtype=torch.float64)
        return to_device((lo + (hi - lo) * u).float(), self.device)

    def integers(self, lo: int, hi: int, n: int | None = None, cpu: bool = False) -> torch.Tensor:
        """(n or B,) int64 uniform in [lo, hi)."""
        v = torch.randint(lo, hi, (self.batch if n is None else n,), generator=self.generator)
        return v if cpu else to_device(v, self.device)

    def sign(self) -> torch.Tensor:
        return self.integers(0, 2).float().mul_(2).sub_(1)

    def device_generator(self) -> torch.Generator:
        """A generator on the device, seeded by one draw of the CPU generator (for per-pixel noise)."""
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        return torch.Generator(device=self.device).manual_seed(seed)


def apply_to(x: torch.Tensor, rows: torch.Tensor, fn) -> torch.Tensor:
    """x with fn applied to the samples in `rows` (a CPU index tensor: no device sync); fn(subset) -> subset."""
    if len(rows) == 0:
        return x
    if len(rows) == x.shape[0]:
        return fn(x)
    idx = to_device(rows, x.device)
    return x.index_copy(0, idx, fn(x.index_select(0, idx)))


class Augment:
    """Base of the registered ops: `Options` (a dataclass: name, p, ...) and apply(x, draw) on the samples given."""

    Options: ClassVar[type]

    def __init__(self, options, image_size: tuple[int, int], seed: int, index: int):
        self.options, self.image_size, self.seed, self.index = options, image_size, seed, index

    @classmethod
    def check(cls, options, where: str) -> None:
        """Raise ConfigError naming `where` for options out of range (types are checked by config.py)."""

    def apply(self, x: torch.Tensor, draw: Draws) -> torch.Tensor:
        raise NotImplementedError

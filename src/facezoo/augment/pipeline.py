"""Training augmentation on the device: the pipeline of registered ops (base.py AUGMENTS) and its presets.

The pipeline draws each sample's coin (p) on the CPU and runs the op on the chosen samples only (index_select /
index_copy with host-known indices), so nothing syncs with the device; see base.py for where the random values come
from.

Presets (PRESETS; a name anywhere in the list expands in place): arcface_torch (downscale 0.1 to 56-90 px, blur
0.2, HSV 0.2, grayscale 0.1), facex_zoo (crop 9 px 0.5, grayscale 0.2, rotation +-10 deg 0.5), randaugment (2 ops
at magnitude 9 of 30), masked (3-D masks on half the samples, FaceX-Zoo's mixed training), erasing (Zhong et al.).
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, is_dataclass

import torch

from ..errors import ConfigError
from . import erasing, geometric, mask_op, photometric, randaugment  # noqa: F401  (register the ops)
from .base import AUGMENTS, Augment, Draws, apply_to

PRESETS: dict[str, list[dict]] = {
    "arcface_torch": [
        {"name": "downscale", "p": 0.1, "size": [56, 90]},
        {"name": "blur", "p": 0.2},
        {"name": "hsv", "p": 0.2},
        {"name": "grayscale", "p": 0.1},
    ],
    "facex_zoo": [
        {"name": "crop", "p": 0.5, "max_px": 9},
        {"name": "grayscale", "p": 0.2},
        {"name": "rotate", "p": 0.5, "degrees": 10.0},
    ],
    "randaugment": [{"name": "randaugment", "p": 1.0, "num_ops": 2, "magnitude": 9}],
    "masked": [{"name": "mask", "p": 0.5, "method": "3d"}],
    "erasing": [{"name": "erase", "p": 0.5}],
}


class Pipeline:
    """Ops in order; __call__(uint8 (B, H, W, 3) images on the device, generator) -> float (B, H, W, 3) 0-255 (a
    channels-last view, as normalize() takes it)."""

    def __init__(self, ops: list[Augment]):
        self.ops = ops

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float().contiguous()  # NCHW: the ops' layout
        b = x.shape[0]
        for op in self.ops:
            p = float(op.options.p)
            if p <= 0:
                continue
            rows = torch.rand(b, generator=generator, dtype=torch.float64).lt(p).nonzero().view(-1)  # on the CPU
            draw = Draws(generator, len(rows), x.device)
            x = apply_to(x, rows, lambda sub, op=op, draw=draw: op.apply(sub, draw))
        x = x.clamp(0, 255).contiguous(memory_format=torch.channels_last)
        return x.permute(0, 2, 3, 1)


def expand_presets(spec) -> list:
    """The recipe's data.augment (a preset name, or a list of op dicts / preset names / typed options) with every
    preset name replaced by its ops, in place."""
    items = [spec] if isinstance(spec, str) else list(spec or [])
    out = []
    for item in items:
        if isinstance(item, str) and item in PRESETS:
            out.extend(dict(op) for op in PRESETS[item])
        else:
            out.append(item)
    return out


@functools.lru_cache(maxsize=8)
def _build(key: str, image_size: tuple[int, int], seed: int) -> Pipeline:
    specs = json.loads(key)
    ops = []
    for i, spec in enumerate(specs):
        cls = AUGMENTS.get(spec["name"])
        ops.append(cls(cls.Options(**spec), image_size, seed, i))
    return Pipeline(ops)


def build_pipeline(options: list, image_size, seed: int = 0) -> Pipeline | None:
    """The Pipeline for typed options (config.py's validated data.augment), cached per (options, size, seed); None
    when the list is empty."""
    if not options:
        return None
    if isinstance(options, str) or not all(is_dataclass(o) and not isinstance(o, type) for o in options):
        raise ConfigError(
            f"data.augment holds untyped entries ({options!r}); load the recipe with facezoo.config.load_config "
            "or call Config.validate(), which turns them into each op's typed options"
        )
    key = json.dumps([asdict(o) for o in options], sort_keys=True)
    return _build(key, (int(image_size[0]), int(image_size[1])), int(seed))

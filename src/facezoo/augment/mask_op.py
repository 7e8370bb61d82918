"""Mask and occluder adding as training augmentations, on the device: a bank of layers rendered once on the CPU,
composited per sample on the device.

Why a bank: training crops are aligned, so every sample's landmarks are the template's and a per-sample CPU render
would repeat one geometry B times per step in the DataLoader workers. Instead `bank` RGBA layers are rendered once
(masks: the 2-D or 3-D renderer under a pose jittered by up to +-yaw/pitch/roll degrees about the aligned face, with
textures from the mix; occluders: kinds drawn by weight), deterministically from (seed, op index), and kept on the
device. Per step each chosen sample takes a random layer, moved by a small random similarity (+-scale, +-shift of
the side), composited with shading matched to that face (blend.py). Cost per step: one gather, one grid_sample, one
blur of the luma, on the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ..errors import ConfigError
from .base import AUGMENTS, Augment, Draws
from .blend import composite
from .geometric import affine
from .landmarks import FaceLandmarks, template_landmarks
from .mask2d import render_mask_2d
from .mask3d import face_pose, render_mask_3d
from .masker import SHADE_SIGMA, parse_occluders
from .meanface import landmarks_3d
from .occluders import OCCLUDERS, SHADED, template_to_image
from .pose import Pose, rotation
from .textures import parse_textures

_TAG = 0x3A5C  # keeps the bank's seed stream apart from others drawn from the run's seed


def jittered_pose(base: Pose, yaw: float, pitch: float, roll: float) -> Pose:
    """`base` turned by (yaw, pitch, roll) radians about the mean face's landmark centroid (which stays put)."""
    c = landmarks_3d().mean(0)
    R = rotation(yaw, pitch, roll) @ base.R
    t = base.t + base.s * (base.R @ c - R @ c)[:2]
    return Pose(R, base.s, t)


class _Bank(Augment):
    """Shared by the mask and occluder ops: render(rng) -> (RGBA (H, W, 4), shaded); the device copy made on first
    use."""

    always_shaded = False

    def layers(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(RGBA bank (n, 4, H, W), shaded (n,) bool: composite with the face's shading) on `device`."""
        cache = self.__dict__.setdefault("_bank", {})
        key = str(device)
        if key not in cache:
            n = self.options.bank
            rendered = [self.render(np.random.default_rng([self.seed, _TAG, self.index, k])) for k in range(n)]
            bank = torch.from_numpy(np.stack([r[0] for r in rendered])).permute(0, 3, 1, 2).contiguous()
            cache[key] = bank.to(device), torch.tensor([r[1] for r in rendered], device=device)
        return cache[key]

    def render(self, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
        raise NotImplementedError

    def apply(self, x: torch.Tensor, draw: Draws) -> torch.Tensor:
        b, _, h, w = x.shape
        bank, shaded = self.layers(x.device)
        pick = draw.integers(0, bank.shape[0])
        layer = bank[pick]
        o = self.options
        scale = 1 + draw.uniform(-o.scale, o.scale)
        dx, dy = draw.uniform(-o.shift, o.shift) * w, draw.uniform(-o.shift, o.shift) * h
        cx, cy = (w - 1) / 2, (h - 1) / 2
        m = torch.zeros(b, 2, 3, device=x.device)  # output -> source: p' = (p - c - d) / scale + c
        m[:, 0, 0] = m[:, 1, 1] = 1 / scale
        m[:, 0, 2] = cx - (cx + dx) / scale
        m[:, 1, 2] = cy - (cy + dy) / scale
        layer = affine(layer, m)
        sigma = torch.full((b,), SHADE_SIGMA * template_landmarks((h, w)).eye_distance, device=x.device)
        out = composite(x, layer, sigma)
        if not self.always_shaded:
            out = torch.where(shaded[pick].view(-1, 1, 1, 1), out, composite(x, layer, sigma, match=False))
        return out


@AUGMENTS.register("mask")
class Mask(_Bank):
    """A face mask (method 2d / 3d, textures from the `texture` mix, masker.py's renderers) on each chosen sample."""

    @dataclass
    class Options:
        name: str = "mask"
        p: float = 0.3
        method: Literal["2d", "3d"] = "3d"
        texture: str = "insightface"
        bank: int = 64
        yaw: float = 25.0  # degrees of pose jitter about the aligned face
        pitch: float = 12.0
        roll: float = 8.0
        scale: float = 0.05
        shift: float = 0.03

    @classmethod
    def check(cls, o, where):
        parse_textures(o.texture, f"{where}.texture")
        _check_bank(o, where)

    always_shaded = True

    def render(self, rng):
        o = self.options
        _, tex = parse_textures(o.texture).draw(rng)
        base = face_pose(template_landmarks(self.image_size))
        deg = math.pi / 180
        pose = jittered_pose(base, *(rng.uniform(-a, a) * deg for a in (o.yaw, o.pitch, o.roll)))
        if o.method == "3d":
            return render_mask_3d(self.image_size, None, tex, pose=pose), True
        five, _ = pose.project(landmarks_3d())
        return render_mask_2d(self.image_size, FaceLandmarks(five), tex), True


@AUGMENTS.register("occlude")
class Occlude(_Bank):
    """An occluder (glasses, sunglasses, headband, headscarf, hand, erase: occluders.py) on each chosen sample, the
    kind drawn by the weights in `kinds`."""

    @dataclass
    class Options:
        name: str = "occlude"
        p: float = 0.2
        kinds: str = "glasses:0.3,sunglasses:0.3,headband:0.1,headscarf:0.1,hand:0.2"
        bank: int = 64
        scale: float = 0.05
        shift: float = 0.03

    @classmethod
    def check(cls, o, where):
        if not sum(parse_occluders(o.kinds, f"{where}.kinds").values()) > 0:
            raise ConfigError(f"{where}.kinds: give at least one occluder a positive weight")
        _check_bank(o, where)

    def render(self, rng):
        kinds = parse_occluders(self.options.kinds)
        names, weights = list(kinds), np.array(list(kinds.values()))
        name = names[rng.choice(len(names), p=weights / weights.sum())]
        M = template_to_image(template_landmarks(self.image_size))
        return OCCLUDERS.get(name)(rng, M, self.image_size, None), name in SHADED


def _check_bank(o, where: str) -> None:
    if not 1 <= o.bank <= 4096:
        raise ConfigError(f"{where}.bank must be in [1, 4096], got {o.bank}")
    if not (0 <= o.scale < 0.5 and 0 <= o.shift < 0.5):
        raise ConfigError(f"{where}: scale and shift must be in [0, 0.5)")

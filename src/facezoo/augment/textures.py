"""Mask textures in (u, v) space (u left cheek -> right cheek, v nose bridge -> chin): procedural ones by name
(TEXTURES), user images with their alpha, and a mix that picks one per image with set probabilities.

A texture is float32 RGBA (h, w, 4) in [0, 1]; alpha 0 cuts the mask's outline (KN95) out of the (u, v) patch.
Spec strings (`facezoo data mask --texture`, the `mask` augmentation's `texture`):
  "insightface"                          a named mix (MIXES): InsightFace's white 0.4, blue 0.4, black 0.1, green 0.1
  "surgical_blue"                        one texture
  "surgical_white:0.7,cloth:0.3"         name:probability, comma separated (missing probabilities share the rest)
  "my_mask.png:0.5,kn95:0.5"             an image file (its alpha channel, if any, is the outline)
  "fabric.jpg+fabric_alpha.png"          an image and a separate alpha (grey) image
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..registry import Registry, did_you_mean

TEXTURES: Registry = Registry("mask texture")
TEX_HW = (96, 192)  # procedural texture size (v, u): the mask is about twice as wide as it is tall

SURGICAL_COLOURS = {
    "white": (0.93, 0.94, 0.95),
    "blue": (0.56, 0.76, 0.91),
    "green": (0.55, 0.80, 0.70),
    "black": (0.11, 0.11, 0.12),
}
MIXES = {
    "insightface": {"surgical_white": 0.4, "surgical_blue": 0.4, "surgical_black": 0.1, "surgical_green": 0.1},
    "procedural": {
        "surgical_white": 0.2,
        "surgical_blue": 0.2,
        "surgical_black": 0.1,
        "surgical_green": 0.1,
        "cloth": 0.15,
        "patterned": 0.15,
        "kn95": 0.1,
    },
}


def _grid(hw=TEX_HW) -> tuple[np.ndarray, np.ndarray]:
    h, w = hw
    v, u = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
    return u, v


def _rgba(rgb: np.ndarray, alpha: np.ndarray | float = 1.0) -> np.ndarray:
    a = np.broadcast_to(np.asarray(alpha, np.float64), rgb.shape[:2])
    return np.concatenate([np.clip(rgb, 0, 1), a[..., None]], -1).astype(np.float32)


def _noise(rng: np.random.Generator, hw, scale: int) -> np.ndarray:
    """Smooth value noise in [-1, 1]: a coarse random grid (about hw / scale cells) upsampled bilinearly."""
    h, w = hw
    gh, gw = max(2, h // scale + 2), max(2, w // scale + 2)
    g = rng.uniform(-1, 1, (gh, gw))
    y = np.linspace(0, gh - 1.001, h)[:, None]
    x = np.linspace(0, gw - 1.001, w)[None, :]
    iy, ix = y.astype(int), x.astype(int)
    fy, fx = y - iy, x - ix
    top = g[iy, ix] * (1 - fx) + g[iy, ix + 1] * fx
    bot = g[iy + 1, ix] * (1 - fx) + g[iy + 1, ix + 1] * fx
    return top * (1 - fy) + bot * fy


def _jitter(rng: np.random.Generator, colour, amount: float = 0.03) -> np.ndarray:
    """The colour with its brightness varied by N(0, amount) and each channel by a quarter of that (no casts)."""
    scale = (1 + rng.normal(0, amount)) * (1 + rng.normal(0, amount / 4, 3))
    return np.clip(np.asarray(colour, float) * scale, 0, 1)


def surgical(rng: np.random.Generator, colour) -> np.ndarray:
    """A pleated surgical mask: three horizontal folds (lit above, a shadow line below each), bound edges with a
    stitch line, a nose-wire strip at the top centre, fine fibre noise."""
    u, v = _grid()
    base = _jitter(rng, colour)
    shade = np.ones_like(u)
    folds = (v > 0.2) & (v < 0.8)
    phase = np.mod((v - 0.2) / 0.2, 1.0)
    shade = np.where(folds, 1.04 - 0.16 * phase**2.5 - 0.18 * (phase > 0.94), shade)
    edge_u, edge_v = np.minimum(u, 1 - u), np.minimum(v, 1 - v)
    binding = (edge_u < 0.035) | (edge_v < 0.055)
    shade = np.where(binding, shade * 0.94, shade)
    stitch = ((np.abs(edge_u - 0.03) < 0.004) | (np.abs(edge_v - 0.045) < 0.006)) & (np.mod(u * 90 + v * 45, 1.0) < 0.6)
    shade = np.where(stitch, shade * 0.85, shade)
    wire = (v < 0.05) & (np.abs(u - 0.5) < 0.12)
    shade = np.where(wire, shade * 1.03 - 0.05 * (np.abs(v - 0.05) < 0.008), shade)
    shade = shade * (1 + 0.02 * rng.standard_normal(u.shape) + 0.02 * _noise(rng, u.shape, 12))
    rgb = base[None, None, :] * shade[..., None]
    if base.mean() < 0.3:  # dark fabric: folds show as sheen, not shadow
        rgb = rgb + 0.05 * (shade[..., None] - 1)
    return _rgba(rgb)


for _name, _colour in SURGICAL_COLOURS.items():
    TEXTURES.register(f"surgical_{_name}", colour=_colour)(surgical)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    """A fabric colour: random hue, moderate saturation and value (HSV -> RGB)."""
    h, s, val = rng.uniform(0, 1), rng.uniform(0.15, 0.75), rng.uniform(0.25, 0.92)
    k = np.mod(np.array([5.0, 3.0, 1.0]) + h * 6, 6)
    return val - val * s * np.clip(np.minimum(k, 4 - k), 0, 1)


@TEXTURES.register("cloth")
def cloth(rng: np.random.Generator) -> np.ndarray:
    """A cloth mask: a woven fabric of one random colour, a centre seam, soft mottling."""
    u, v = _grid()
    base = _random_colour(rng)
    period = rng.uniform(70, 110)
    weave = 0.035 * np.sin(2 * math.pi * u * period) * np.sin(2 * math.pi * v * period / 2)
    shade = 1 + weave + 0.05 * _noise(rng, u.shape, 16) + 0.015 * rng.standard_normal(u.shape)
    shade = shade - 0.2 * np.exp(-(((u - 0.5) / 0.006) ** 2))  # the centre seam
    return _rgba(base[None, None, :] * shade[..., None])


@TEXTURES.register("patterned")
def patterned(rng: np.random.Generator) -> np.ndarray:
    """A printed fabric: stripes, dots, checks or blobs in two random colours."""
    u, v = _grid()
    a, b = _random_colour(rng), _random_colour(rng)
    kind = int(rng.integers(4))
    freq = rng.uniform(6, 14)
    if kind == 0:  # stripes at a random angle
        ang = rng.uniform(0, math.pi)
        m = np.sin(2 * math.pi * freq * (u * math.cos(ang) + 0.5 * v * math.sin(ang))) > 0
    elif kind == 1:  # dots
        fu, fv = np.mod(u * freq, 1) - 0.5, np.mod(v * freq / 2, 1) - 0.5
        m = fu**2 + (fv * 1.0) ** 2 < rng.uniform(0.04, 0.12)
    elif kind == 2:  # checks
        m = (np.floor(u * freq) + np.floor(v * freq / 2)) % 2 == 0
    else:  # blobs (camouflage / floral-like)
        m = _noise(rng, u.shape, int(rng.integers(6, 14))) > rng.uniform(-0.1, 0.3)
    rgb = np.where(m[..., None], a, b) * (1 + 0.02 * rng.standard_normal(u.shape))[..., None]
    return _rgba(rgb)


@TEXTURES.register("kn95")
def kn95(rng: np.random.Generator) -> np.ndarray:
    """A KN95 respirator: the folded outline (pointed at the nose and the chin), a vertical centre seam and an
    embossed border seam, off-white."""
    u, v = _grid()
    base = _jitter(rng, rng.choice([[0.95, 0.95, 0.95], [0.9, 0.9, 0.88], [0.2, 0.2, 0.22]]), 0.02)
    c = np.abs(u - 0.5) * 2  # 0 at the centre line, 1 at the sides
    top = 0.02 + 0.22 * c**1.2
    bottom = 0.98 - 0.22 * c**1.6
    side = c < 0.97
    alpha = ((v > top) & (v < bottom) & side).astype(float)
    inset = np.minimum.reduce([v - top, bottom - v, (0.97 - c) * 0.5])
    shade = 1 - 0.12 * (np.abs(inset - 0.03) < 0.006) - 0.15 * np.exp(-(((u - 0.5) / 0.005) ** 2))
    shade = shade + 0.04 * (u < 0.5) - 0.02 + 0.015 * rng.standard_normal(u.shape)  # the two folded halves
    return _rgba(base[None, None, :] * shade[..., None], alpha)


@dataclass(frozen=True)
class ImageTexture:
    """A user texture: an image (its alpha channel, or a separate grey alpha image, is the outline)."""

    path: str
    alpha_path: str | None = None

    def __call__(self, rng: np.random.Generator | None = None) -> np.ndarray:
        return _load_image_texture(self.path, self.alpha_path)


_IMAGE_CACHE: dict = {}


def _load_image_texture(path: str, alpha_path: str | None) -> np.ndarray:
    key = (path, alpha_path)
    if key not in _IMAGE_CACHE:
        from PIL import Image

        try:
            with Image.open(path) as im:
                rgba = np.asarray(im.convert("RGBA"), np.float32) / 255.0
            if alpha_path is not None:
                with Image.open(alpha_path) as am:
                    alpha = np.asarray(am.convert("L").resize(rgba.shape[1::-1]), np.float32) / 255.0
                rgba[..., 3] = alpha
        except (OSError, ValueError) as e:
            raise DataError(
                f"{path}: cannot read the mask texture ({e}); give an image file (PNG with alpha)."
            ) from None
        _IMAGE_CACHE[key] = rgba
    return _IMAGE_CACHE[key]


@dataclass
class TextureMix:
    """Textures and their probabilities; `choose(rng)` picks an index, `draw(rng)` -> (name, RGBA texture)."""

    names: list[str]
    sources: list[Callable[[np.random.Generator], np.ndarray]]
    probs: np.ndarray

    def choose(self, rng: np.random.Generator) -> int:
        return int(rng.choice(len(self.names), p=self.probs))

    def draw(self, rng: np.random.Generator) -> tuple[str, np.ndarray]:
        i = self.choose(rng)
        return self.names[i], self.sources[i](rng=rng)


def _source(name: str, where: str) -> Callable:
    if name in TEXTURES:
        return TEXTURES.get(name)
    image, _, alpha = name.partition("+")
    if Path(image).is_file() and (not alpha or Path(alpha).is_file()):
        return ImageTexture(image, alpha or None)
    known = [*TEXTURES.names(), *MIXES]
    raise ConfigError(
        f"{where}: '{name}' is neither a mask texture nor an image file.{did_you_mean(name, known)} "
        f"Textures: {', '.join(TEXTURES.names())}; mixes: {', '.join(MIXES)}; or a path to an image (PNG with alpha)."
    )


def parse_textures(spec: str | None = None, where: str = "texture") -> TextureMix:
    """A TextureMix from a spec string (module doc); None or '' is InsightFace's mix. Sources are called as
    source(rng=generator) -> RGBA texture."""
    spec = (spec or "insightface").strip()
    if spec in MIXES:
        items = list(MIXES[spec].items())
    else:
        items = []
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                raise ConfigError(f"{where}: empty entry in '{spec}'; write name[:probability],name[:probability]")
            head, sep, tail = part.rpartition(":")
            prob = None
            if sep:
                try:
                    prob = float(tail)
                except ValueError:
                    head = part  # a ':' inside a path
                else:
                    if not math.isfinite(prob) or prob < 0:
                        raise ConfigError(f"{where}: probability {tail!r} of '{head}' must be a number >= 0")
            items.append((head if sep and prob is not None else part, prob))
    given = sum(p for _, p in items if p is not None)
    missing = [n for n, p in items if p is None]
    if given > 1 + 1e-9 and missing:
        raise ConfigError(f"{where}: probabilities in '{spec}' already sum to {given:g}; give all or none above 1")
    rest = max(0.0, 1.0 - given) / len(missing) if missing else 0.0
    probs = np.array([rest if p is None else p for _, p in items], np.float64)
    if probs.sum() <= 0:
        raise ConfigError(f"{where}: the probabilities in '{spec}' sum to 0; give at least one positive")
    names = [n for n, _ in items]
    return TextureMix(names, [_source(n, where) for n in names], probs / probs.sum())


def sample_texture(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup of an RGBA texture (h, w, 4) at uv (N, 2) in [0, 1] -> (N, 4)."""
    h, w = texture.shape[:2]
    x = np.clip(uv[:, 0], 0, 1) * (w - 1)
    y = np.clip(uv[:, 1], 0, 1) * (h - 1)
    x0, y0 = np.minimum(x.astype(int), w - 2).clip(0), np.minimum(y.astype(int), h - 2).clip(0)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    t = texture
    top = t[y0, x0] * (1 - fx) + t[y0, x0 + 1] * fx
    bot = t[y0 + 1, x0] * (1 - fx) + t[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bot * fy

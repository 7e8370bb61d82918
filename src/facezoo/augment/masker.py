"""One face in, the same face masked (and occluded) out: the renderer chosen by method, a texture from the mix,
occluders each with its own probability, composited with shading matched to the face.

    masker = Masker(method="3d", texture="insightface", occluders="glasses:0.2,hand:0.1")
    result = masker(image, landmarks, np.random.default_rng([seed, index]))   # result.image, result.alpha

Every random choice comes from the generator passed in (mask or not, texture, occluder shapes), so a seed per image
makes the output a pure function of (image, landmarks, seed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from ..registry import Registry, did_you_mean
from .blend import composite_image
from .landmarks import FaceLandmarks, face_landmarks
from .mask2d import render_mask_2d
from .mask3d import render_mask_3d
from .occluders import OCCLUDERS, SHADED, template_to_image
from .textures import TextureMix, parse_textures

METHODS: Registry = Registry("mask method")
METHODS.register("2d")(render_mask_2d)
METHODS.register("3d")(render_mask_3d)
SHADE_SIGMA = 0.25  # the shading blur, in eye distances (about a tenth of the face's width)


def parse_occluders(spec, where: str = "occluders") -> dict[str, float]:
    """{name: probability} from 'glasses:0.2,hand:0.1' (a bare name means probability 1) or a dict."""
    if spec is None or spec == "":
        return {}
    items = spec.items() if isinstance(spec, dict) else (p.strip().partition(":")[::2] for p in str(spec).split(","))
    out = {}
    for name, prob in items:
        name = str(name).strip()
        if name not in OCCLUDERS:
            raise ConfigError(
                f"{where}: unknown occluder '{name}'.{did_you_mean(name, OCCLUDERS.names())} "
                f"Available: {', '.join(OCCLUDERS.names())}."
            )
        try:
            p = 1.0 if prob in ("", None) else float(prob)
        except ValueError:
            raise ConfigError(f"{where}: probability {prob!r} of '{name}' is not a number") from None
        if not 0.0 <= p <= 1.0 or math.isnan(p):
            raise ConfigError(f"{where}: probability of '{name}' must be in [0, 1], got {p}")
        out[name] = p
    return out


@dataclass
class MaskResult:
    """image: uint8 (H, W, 3); alpha: float32 (H, W) coverage of the mask alone (0 where not masked); texture: the
    texture's name or None; occluders: names of the occluders added."""

    image: np.ndarray
    alpha: np.ndarray
    texture: str | None = None
    occluders: list[str] = field(default_factory=list)


class Masker:
    """Adds a mask with probability p (method "2d" or "3d", METHODS) and each occluder with its own probability."""

    def __init__(self, method: str = "3d", texture: str | TextureMix | None = None, p: float = 1.0, occluders=None,
                 match_shading: bool = True):  # fmt: skip
        self.render = METHODS.get(method)
        self.method = method
        self.textures = texture if isinstance(texture, TextureMix) else parse_textures(texture)
        if not 0.0 <= float(p) <= 1.0:
            raise ConfigError(f"mask probability p must be in [0, 1], got {p}")
        self.p = float(p)
        self.occluders = parse_occluders(occluders)
        self.match_shading = match_shading

    def layers(self, shape, landmarks: FaceLandmarks, rng: np.random.Generator, image=None):
        """[(kind, name, RGBA layer)] to composite, in order: the mask (kind "mask"), then occluders."""
        out = []
        if rng.random() < self.p:
            name, tex = self.textures.draw(rng)
            out.append(("mask", name, self.render(shape, landmarks, tex)))
        if self.occluders:
            M = template_to_image(landmarks)
            for occ, prob in self.occluders.items():
                if rng.random() < prob:
                    out.append(("occluder", occ, OCCLUDERS.get(occ)(rng, M, shape, image)))
        return out

    def __call__(self, image: np.ndarray, landmarks, rng: np.random.Generator) -> MaskResult:
        """Mask one uint8 (H, W, 3) face whose landmarks are (P, 2) points of a known layout (or FaceLandmarks)."""
        lm = face_landmarks(landmarks)
        out = np.asarray(image)
        alpha = np.zeros(out.shape[:2], np.float32)
        result = MaskResult(out, alpha)
        sigma = max(1.0, SHADE_SIGMA * lm.eye_distance)
        for kind, name, layer in self.layers(out.shape[:2], lm, rng, out):
            out = composite_image(out, layer, sigma, self.match_shading and (kind == "mask" or name in SHADED))
            if kind == "mask":
                result.texture = name
                alpha = layer[..., 3].copy()
            else:
                alpha = alpha * (1 - layer[..., 3])  # an occluder over the mask hides it
                result.occluders.append(name)
        result.image, result.alpha = out, alpha
        return result

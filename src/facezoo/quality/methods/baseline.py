"""`baseline`: image statistics only, no model: what a learnt quality has to beat.

On the grey levels g = 0.299 R + 0.587 G + 0.114 B of the face box of the crop resized to 112x112 (x in [0.18, 0.82],
y in [0.22, 0.95] of the aligned crop), with L the 4-neighbour Laplacian of g:
  sharpness   q_s = clip(ln(1 + var L) / ln(1 + 500), 0, 1)      (var L = 500: a sharp real face at 112 px)
  resolution  q_r = clip((rho - 0.5) / 0.4, 0, 1), rho = var L / (var L + var L2 / 16), L2 the Laplacian of g
              averaged over 2x2 blocks: the share of detail at the finest scale; a small face upsampled to the crop
              (or a blurred one) has little (rho ~ 0.75), a sharp one ~0.95; the face-size term for crops
  contrast    q_c = clip(std(g) / 25, 0, 1)     (RMS contrast in grey levels: only a washed-out face scores < 1)
  coverage    q_v = the fraction of 8x8 blocks of L with mean |L| > 2: the share of the face that shows any
              detail (a flat occluder, a burnt-out or blurred patch shows none)
  score       (q_s q_r q_c q_v)^(1/4), the geometric mean in [0, 1]: any one failing term pulls the score down.
None of it knows what a face looks like: noise raises the sharpness term, a textured occluder keeps coverage (and
a noise-free rendered face with flat skin loses it), a sharp profile face scores high. Blur and small faces move
it strongly, flat occluders a little. The learnt methods (sdd_fiqa, magface_norm) measure what recognition needs.
"""

from __future__ import annotations

import numpy as np

from ...data.image import resize_image
from ..base import QualityMethod, check_batch_size
from ..degrade import FACE_BOX
from . import QUALITY

SHARP_REF = 500.0
CONTRAST_REF = 25.0
DETAIL_FLOOR = 2.0
BLOCK = 8
TERMS = ("sharpness", "resolution", "contrast", "coverage")


def _laplacian(g: np.ndarray) -> np.ndarray:
    """(B, h - 2, w - 2) 4-neighbour Laplacian of (B, h, w) images."""
    return g[:, 1:-1, :-2] + g[:, 1:-1, 2:] + g[:, :-2, 1:-1] + g[:, 2:, 1:-1] - 4 * g[:, 1:-1, 1:-1]


def terms(crops: np.ndarray) -> dict[str, np.ndarray]:
    """{term: (B,) in [0, 1]} of uint8 (B, 112, 112, 3) crops (see the module doc)."""
    x = crops.astype(np.float64)
    g = x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114
    h, w = g.shape[1:]
    x0, x1, y0, y1 = FACE_BOX
    g = g[:, int(y0 * h) : int(y1 * h), int(x0 * w) : int(x1 * w)]
    lap = _laplacian(g)
    fine = lap.var(axis=(1, 2))
    b, gh, gw = g.shape
    half = g[:, : gh // 2 * 2, : gw // 2 * 2].reshape(b, gh // 2, 2, gw // 2, 2).mean(axis=(2, 4))
    coarse = _laplacian(half).var(axis=(1, 2)) / 16.0
    rho = fine / np.maximum(fine + coarse, 1e-12)
    lh, lw = lap.shape[1] // BLOCK * BLOCK, lap.shape[2] // BLOCK * BLOCK
    blocks = np.abs(lap[:, :lh, :lw]).reshape(b, lh // BLOCK, BLOCK, lw // BLOCK, BLOCK).mean(axis=(2, 4))
    return {
        "sharpness": np.clip(np.log1p(fine) / np.log1p(SHARP_REF), 0, 1),
        "resolution": np.clip((rho - 0.5) / 0.4, 0, 1),
        "contrast": np.clip(g.std(axis=(1, 2)) / CONTRAST_REF, 0, 1),
        "coverage": (blocks > DETAIL_FLOOR).mean(axis=(1, 2)),
    }


@QUALITY.register("baseline", info={"needs_model": False})
class Baseline(QualityMethod):
    """The geometric mean of sharpness, resolution, contrast and detail coverage of the crop (module doc)."""

    name = "baseline"

    def __init__(self, batch_size: int = 256):
        self.batch_size = check_batch_size(batch_size)

    def _content(self) -> str:
        return f"v1 geometric {SHARP_REF} {CONTRAST_REF} {DETAIL_FLOOR} {BLOCK} {FACE_BOX}"

    def _score(self, batch: np.ndarray) -> np.ndarray:
        return np.prod(np.stack(list(terms(batch).values())), axis=0) ** 0.25

    def components(self, images) -> dict[str, np.ndarray]:
        """{term: (N,)} of the four terms the score combines, for crops of any size (resized to 112x112)."""
        from ..base import as_crops

        x = as_crops(images, self.name)
        x = np.stack([resize_image(np.ascontiguousarray(im), self.input_size) for im in x]) if len(x) else x
        return terms(x) if len(x) else {t: np.zeros(0) for t in TERMS}

    def describe(self) -> str:
        return "baseline (sharpness, resolution, contrast, detail coverage; no model)"

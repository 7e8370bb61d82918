"""Masked faces and augmentation: virtual mask adding (2-D and 3-D-aware), occluders, and on-device training ops.

    from facezoo.augment import Masker
    out = Masker(method="3d", texture="insightface")(image, landmarks, np.random.default_rng(seed)).image

Modules (one concept each):
  raster.py       vectorised triangle rasteriser with a z-buffer (numpy)
  meanface.py     the 3-D mean face and its mask surface, from anthropometric means
  pose.py         weak-perspective pose fit of 3-D points to 2-D landmarks
  landmarks.py    5 points (+ contour) of any landmark layout; the template points of aligned crops
  textures.py     procedural textures (TEXTURES), user images, probability mixes (MIXES)
  layer.py        textured mesh -> RGBA layer (2x supersampled, Lambert shade)
  mask2d.py       2-D method: the frontal mask warped by a thin-plate spline through the landmarks
  mask3d.py       3-D method: the mask surface posed with the face, z-buffered
  occluders.py    glasses, sunglasses, headband, headscarf, hand, random erasing (OCCLUDERS)
  blend.py        compositing with shading matched to the face (torch)
  filters.py      batched Gaussian blur and luma (torch)
  masker.py       Masker: one face in, masked and occluded out, deterministic from a seed
  sets.py         `facezoo data mask`: folders, RecordIO, .bin pairs, MegaFace probes; contact sheets
  crop_eye.py     FaceX-Zoo's upper-face crop
  base.py         AUGMENTS registry, op base class, per-step random draws
  pipeline.py     the on-device pipeline and presets (data.augment)
  photometric.py, geometric.py, randaugment.py, erasing.py, mask_op.py   the registered ops

Names are imported lazily (module __getattr__), so importing facezoo.augment loads nothing.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Masker": "masker",
    "MaskResult": "masker",
    "METHODS": "masker",
    "parse_occluders": "masker",
    "render_mask_2d": "mask2d",
    "render_mask_3d": "mask3d",
    "face_pose": "mask3d",
    "fit_pose": "pose",
    "rotation": "pose",
    "FaceLandmarks": "landmarks",
    "face_landmarks": "landmarks",
    "template_landmarks": "landmarks",
    "TEXTURES": "textures",
    "MIXES": "textures",
    "parse_textures": "textures",
    "OCCLUDERS": "occluders",
    "composite": "blend",
    "composite_image": "blend",
    "AUGMENTS": "base",
    "PRESETS": "pipeline",
    "build_pipeline": "pipeline",
    "crop_eye": "crop_eye",
    "mask_set": "sets",
    "contact_sheet": "sets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

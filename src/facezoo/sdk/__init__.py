"""Deployment SDK: face detection, 5-point alignment, embedding, verification, galleries and serving.

    from facezoo.sdk import FaceAnalyzer, Gallery
    fa = FaceAnalyzer("mtcnn", "model.pt")
    fa.verify("a.jpg", "b.jpg", far=1e-4)

Names are imported lazily (module __getattr__): importing facezoo.sdk loads no model code, torch or onnxruntime.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "FaceAnalyzer": "pipeline",
    "build_detector": "pipeline",
    "load_image": "pipeline",
    "Face": "face",
    "Gallery": "gallery",
    "Match": "gallery",
    "EnrollResult": "gallery",
    "enroll_folder": "gallery",
    "align_face": "align",
    "align_faces": "align",
    "arcface_template": "align",
    "estimate_norm": "align",
    "create_detector": "detect.base",
    "Detector": "detect.base",
    "Detections": "detect.base",
    "calibrate_thresholds": "thresholds",
    "calibrate": "thresholds",
    "write_thresholds": "thresholds",
    "draw_faces": "draw",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *_EXPORTS})

"""The detector interface: uint8 RGB image in, boxes + scores + 5 landmarks out, sorted by score."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np

from ...errors import DataError
from ...registry import Registry

DETECTORS: Registry = Registry("detector")
# Modules whose import registers detectors; imported on first use, never at package import.
_MODULES = ("mtcnn", "scrfd", "retinaface", "dlib_mmod")


@dataclass
class Detections:
    """boxes (N, 4) float32 x1, y1, x2, y2; scores (N,) float32 in [0, 1]; kps (N, 5, 2) float32 or None,
    sorted by descending score, in the pixel coordinates of the image given to `detect`."""

    boxes: np.ndarray
    scores: np.ndarray
    kps: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls, with_kps: bool = True) -> Detections:
        return cls(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32) if with_kps else None
        )

    def take(self, idx) -> Detections:
        """The detections at `idx` (indices or boolean mask), order kept."""
        return Detections(self.boxes[idx], self.scores[idx], None if self.kps is None else self.kps[idx])


def check_image(image, where: str = "image") -> np.ndarray:
    """An (H, W, 3) uint8 RGB array, or a DataError saying what was given and what is expected."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 1:
        raise DataError(
            f"{where}: expected a uint8 (H, W, 3) RGB image, got {arr.dtype} {arr.shape}; "
            "decode it with facezoo.data.image.read_image_file or PIL and convert to RGB."
        )
    return arr


class Detector:
    """Base class: subclasses implement `detect`; `detect_batch` loops unless a subclass batches."""

    def detect(self, image: np.ndarray, max_faces: int | None = None) -> Detections:
        """Faces in one uint8 (H, W, 3) RGB image, best first, at most `max_faces`."""
        raise NotImplementedError

    def detect_batch(self, images, max_faces: int | None = None) -> list[Detections]:
        return [self.detect(im, max_faces) for im in images]


def registered() -> Registry:
    """DETECTORS with every built-in detector module imported (so registered)."""
    for module in _MODULES:
        importlib.import_module(f"{__package__}.{module}")
    return DETECTORS


def create_detector(name: str, **kwargs) -> Detector:
    """Build a registered detector, e.g. create_detector("scrfd", model="det_10g.onnx")."""
    return registered().create(name, **kwargs)

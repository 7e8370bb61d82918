"""Bounded detection time: a detector wrapper that detects on a downscaled copy of a large image.

Detection cost grows with the pixel count (MTCNN's pyramid, dlib's upsampling); a face recognisable at all is
still found once the image's longer side is scaled to `max_side` (the fixed-size detectors letterbox to 640 anyway).
With s = max_side / max(H, W) < 1 the copy is (round(H s), round(W s)); boxes and landmarks found on it are mapped
back by dividing x by sx = w' / W and y by sy = h' / H, so alignment crops the full-resolution image.
"""

from __future__ import annotations

import numpy as np

from ..detect.base import Detections, Detector


class DownscaledDetector(Detector):
    """`inner` run on images whose longer side is at most `max_side` pixels; results in the original's pixels."""

    def __init__(self, inner: Detector, max_side: int):
        self.inner, self.max_side = inner, int(max_side)

    def detect(self, image: np.ndarray, max_faces: int | None = None) -> Detections:
        from ...data.image import resize_image

        h, w = image.shape[:2]
        s = self.max_side / max(h, w)
        if s >= 1:
            return self.inner.detect(image, max_faces)
        nh, nw = max(1, round(h * s)), max(1, round(w * s))
        dets = self.inner.detect(resize_image(np.ascontiguousarray(image), (nh, nw)), max_faces)
        scale = np.float32([nw / w, nh / h])
        boxes = (dets.boxes.reshape(-1, 2, 2) / scale).reshape(-1, 4).astype(np.float32)
        kps = None if dets.kps is None else (dets.kps / scale).astype(np.float32)
        return Detections(boxes, dets.scores, kps)

    def __getattr__(self, name):  # thresholds, names and the like of the wrapped detector
        if name in ("inner", "max_side"):
            raise AttributeError(name)
        return getattr(self.inner, name)


def bound_detection(analyzer, max_side: int) -> None:
    """Wrap `analyzer.detector` (when it is a Detector, and not already wrapped) in a DownscaledDetector."""
    detector = getattr(analyzer, "detector", None)
    if isinstance(detector, Detector) and not isinstance(detector, DownscaledDetector):
        analyzer.detector = DownscaledDetector(detector, max_side)

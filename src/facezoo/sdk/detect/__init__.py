"""Face detectors by name: DETECTORS.create("mtcnn" | "scrfd" | "retinaface" | "dlib_mmod", **kwargs)."""

from .base import DETECTORS, Detections, Detector, create_detector

__all__ = ["DETECTORS", "Detections", "Detector", "create_detector"]

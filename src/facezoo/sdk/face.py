"""One detected face: where it is, how sure the detector is, its aligned crop and its embedding."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Face:
    """bbox (4,) x1, y1, x2, y2 in pixels; kps (5, 2) eyes, nose, mouth corners (x, y) or None;
    crop uint8 (H, W, 3) RGB aligned to the ArcFace template; embedding (D,) float32 as the model gives it;
    quality: the crop's face image quality (FaceAnalyzer(quality=...), facezoo.quality; higher = better) or None."""

    bbox: np.ndarray
    det_score: float
    kps: np.ndarray | None = None
    crop: np.ndarray | None = None
    embedding: np.ndarray | None = None
    quality: float | None = None

    @property
    def normed_embedding(self) -> np.ndarray | None:
        """embedding / ||embedding||: cosine similarity is then a dot product."""
        if self.embedding is None:
            return None
        e = np.asarray(self.embedding, np.float32)
        return e / max(float(np.linalg.norm(e)), 1e-12)

    def to_dict(self, crops: bool = False) -> dict:
        """JSON-ready: bbox, det_score, kps (lists); embedding and quality when present; crop only if asked."""
        d = {
            "bbox": [float(v) for v in self.bbox],
            "det_score": float(self.det_score),
            "kps": None if self.kps is None else np.asarray(self.kps, float).tolist(),
        }
        if self.embedding is not None:
            d["embedding"] = np.asarray(self.embedding, float).tolist()
        if self.quality is not None:
            d["quality"] = float(self.quality)
        if crops and self.crop is not None:
            d["crop"] = np.asarray(self.crop).tolist()
        return d

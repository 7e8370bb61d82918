"""`magface_norm`: the L2 norm of a recognition model's raw embedding (one view), a = ||e(x)||_2.

MagFace (Meng et al., CVPR 2021) trains the norm to grow with quality: its margin rises with a and a regulariser
g(a) = a / u_a^2 + 1 / a pushes easy, clean faces to large norms (facezoo.models.heads.adaptive.MagFace), so for
a model trained with the magface head the norm is a quality score at no extra cost. Any other model's norm also
tends to fall on hard images (InsightFace's "XNorm", use_norm_score in IJB pooling) but nothing trains it to: a
weaker, uncalibrated quality. describe() says which it is (read from the checkpoint's training config; unknown
for ONNX files and pretrained names).
"""

from __future__ import annotations

import numpy as np

from ..base import QualityMethod, check_batch_size, training_config
from . import QUALITY


@QUALITY.register("magface_norm", info={"needs_model": True})
class MagFaceNorm(QualityMethod):
    """||e(x)||_2 of `model` (anything facezoo.load_model takes: a .pt, an .onnx, an Embedder)."""

    name = "magface_norm"

    def __init__(self, model, device: str = "auto", batch_size: int = 64, runtime: str | None = None):
        from ...models.loader import load_model

        self.batch_size = check_batch_size(batch_size)
        config = training_config(model)
        self.head = ((config or {}).get("head") or {}).get("name") if config is not None else None
        self.embedder = load_model(model, device, runtime, batch_size=batch_size)
        self.input_size = tuple(self.embedder.input_size)

    @property
    def magface(self) -> bool | None:
        """True / False: trained with the magface head or not; None: unknown (no training config)."""
        return None if self.head is None else self.head == "magface"

    def _content(self) -> str:
        return self.embedder.fingerprint

    def _score(self, batch: np.ndarray) -> np.ndarray:
        return np.linalg.norm(self.embedder(batch).astype(np.float64), axis=1)

    def score_faces(self, crops, embedder=None, embeddings=None) -> np.ndarray:
        if embedder is self.embedder and embeddings is not None:
            return np.linalg.norm(np.asarray(embeddings, np.float64), axis=1)
        return self.score(crops)

    def describe(self) -> str:
        kind = {
            True: "a MagFace model",
            False: f"trained with {self.head}, not MagFace: a weaker quality",
            None: "training head unknown",
        }[self.magface]
        return f"magface_norm of {self.embedder.name} ({kind})"

"""`sdd_fiqa`: a quality regressor trained on SDD-FIQA pseudo-labels (Ou et al., CVPR 2021).

The regressor is a facezoo backbone whose embedding layer has one output (model.embedding_size = 1: the scalar
head), trained with the quality_regression mode (facezoo.train.modes.quality_regression, Huber loss) on the labels
of facezoo.quality.labels; `facezoo quality labels` then `facezoo quality train` make one. Its checkpoint is an
ordinary facezoo checkpoint whose training config says mode quality_regression; an ONNX export keeps working
(embedding size 1). A recognition model is refused: its checkpoint names another mode, its embeddings are wider.
score = the regressor's output, in the units of its training labels: by default (scale=standard) standard
deviations above the average training image (0 = average, -1 = worse than ~84% of the training set).
"""

from __future__ import annotations

import numpy as np

from ...errors import ModelError
from ..base import QualityMethod, check_batch_size, training_config
from . import QUALITY

MODE = "quality_regression"


@QUALITY.register("sdd_fiqa", info={"needs_model": True})
class SddFiqa(QualityMethod):
    """The output of a quality regressor `model` (a .pt written by `facezoo quality train`, or its .onnx export)."""

    name = "sdd_fiqa"

    def __init__(self, model, device: str = "auto", batch_size: int = 64, runtime: str | None = None):
        from ...models.loader import load_model

        self.batch_size = check_batch_size(batch_size)
        config = training_config(model)
        if config is not None and config.get("mode") != MODE:
            head = (config.get("head") or {}).get("name", "?")
            raise ModelError(
                f"{model}: a recognition model (trained with mode {config.get('mode')}, head {head}), not a quality "
                f"model. sdd_fiqa needs a regressor from `facezoo quality train`; for this model's feature norm use "
                f"magface_norm:{model}."
            )
        self.embedder = load_model(model, device, runtime, batch_size=batch_size)
        if self.embedder.embedding_size != 1:
            raise ModelError(
                f"{self.embedder.name}: gives {self.embedder.embedding_size}-d embeddings, so it is a recognition "
                "model, not a quality regressor (one output). Train one with `facezoo quality train`."
            )
        self.input_size = tuple(self.embedder.input_size)

    def _content(self) -> str:
        return self.embedder.fingerprint

    def _score(self, batch: np.ndarray) -> np.ndarray:
        return self.embedder(batch)[:, 0]

    def describe(self) -> str:
        return f"sdd_fiqa regressor {self.embedder.name}"

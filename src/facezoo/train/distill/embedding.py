"""Embedding matching: the student's embedding pulled onto the teacher's, sample by sample (same size D).

l2:     mean_i ||s_i - t_i||^2, on unit vectors s = s/||s||, t = t/||t|| (normalize=true, the default: face
        embeddings are compared by angle) or on the raw embeddings.
cosine: mean_i (1 - cos(s_i, t_i)).
"""

from __future__ import annotations

import torch.nn.functional as F

from . import DISTILL_LOSSES
from .base import DistillLoss, wide


@DISTILL_LOSSES.register("l2")
class EmbeddingL2(DistillLoss):
    name = "l2"

    def __init__(self, student_shape, teacher_shape, normalize: bool = True):
        super().__init__(student_shape, teacher_shape)
        self.same_size()
        self.normalize = bool(normalize)

    def forward(self, student, teacher, labels):
        s, t = wide(student), wide(teacher)
        if self.normalize:
            s, t = F.normalize(s, dim=1), F.normalize(t, dim=1)
        return (s - t).pow(2).sum(dim=1).mean()


@DISTILL_LOSSES.register("cosine")
class EmbeddingCosine(DistillLoss):
    name = "cosine"

    def __init__(self, student_shape, teacher_shape):
        super().__init__(student_shape, teacher_shape)
        self.same_size()

    def forward(self, student, teacher, labels):
        return (1.0 - F.cosine_similarity(wide(student), wide(teacher), dim=1)).mean()

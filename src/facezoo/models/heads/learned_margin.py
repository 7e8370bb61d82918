"""Learned per-class margins: adam_softmax (AdaM-Softmax, the margin part of AdaptiveFace)."""

from __future__ import annotations

import torch
from torch import Tensor

from . import HEADS
from .base import CosineHead, check_positive, gather_target, put_target, target_cosines
from .context import Batch, RowIndex


@HEADS.register("adam_softmax")
class AdaMSoftmax(CosineHead):
    """AdaM-Softmax (Liu et al., CVPR 2019, AdaptiveFace), FaceX-Zoo's form: a learnable CosFace margin per class.

    target s * (cos_y - m_y), non-targets s * cos, m_c = clamp(margin_c, 0, 1); batch_loss adds the regulariser
    lambda * (1 - (1/C) sum_c m_c) over every class of every rank (it keeps the margins from shrinking to 0).
    The margin of class c is the last column of its row, weight (C, D + 1), so sharding, Partial FC (the sampled
    rows get the margin gradient, the regulariser's value still counts every class) and the row optimiser carry it;
    margins start U(0.3, 0.4). FaceX-Zoo clamps the parameter in place each step; here the clamp is in the graph
    (same forward values). Defaults s = 30, lambda = 70 (FaceX-Zoo's; its recipe uses s = 32).
    """

    name = "adam_softmax"

    def __init__(self, embedding_size: int, num_classes: int, s: float = 30.0, lamda: float = 70.0):
        super().__init__(embedding_size, num_classes, row_size=embedding_size + 1)
        check_positive(self.name, s=s)
        self.s, self.lamda = float(s), float(lamda)
        with torch.no_grad():
            self.weight[:, embedding_size].uniform_(0.3, 0.4)

    def hparams(self) -> dict:
        return {"s": self.s, "lamda": self.lamda}

    def margins(self, weight: Tensor) -> Tensor:
        """(C',) per-class margins m_c in [0, 1] of class rows `weight`."""
        return weight[:, self.embedding_size].clamp(0.0, 1.0)

    def cosines(self, embeddings: Tensor, weight: Tensor, rows: RowIndex = None) -> Tensor:
        return super().cosines(embeddings, weight[:, : self.embedding_size], rows)

    def target_cosines(self, embeddings: Tensor, weight: Tensor, labels: Tensor, rows: RowIndex = None) -> Tensor:
        return target_cosines(embeddings, weight[:, : self.embedding_size], labels)

    def logits(
        self, embeddings: Tensor, weight: Tensor, labels: Tensor, state: dict | None = None, rows: RowIndex = None
    ) -> Tensor:
        cos = self.cosines(embeddings, weight, rows)
        cos_y, index, valid = gather_target(cos, labels)
        m_y = self.margins(weight).to(cos.dtype).gather(0, labels.clamp(min=0))
        return put_target(cos * self.s, index, valid, (cos_y - m_y) * self.s, cos_y * self.s)

    def batch_loss(self, batch: Batch) -> Tensor:
        used = self.margins(batch.weight)
        mine = self.margins(self.weight.detach()).sum() + (used - used.detach()).sum()  # value: every class
        total = batch.reduce.sum_replicated(mine)
        return self.lamda * (1.0 - total / self.total_classes)

"""The distillation-loss interface: forward(student, teacher, labels) -> scalar, on what the loss `reads`.

reads:
  "embedding"  student (b, D_s) and teacher (b, D_t) embeddings, not normalised;
  "cosines"    student and teacher class cosines cos(x_i, w_j) (B, C') of the global batch against this rank's
               class columns (the loss scales them and reduces across ranks itself);
  "features"   the outputs of the hint layers named by kwargs student_layer / teacher_layer (maps (b, C, H, W) or
               embeddings when the name is "").
batch_wide: the loss relates samples to each other (pairs, triplets, ranks): the mode gives it the global batch
(every rank computes it whole; gradients reach each rank's own samples), else a mean over the local samples.
Built as DISTILL_LOSSES.create(name, student_shape=(per-sample shape), teacher_shape=..., **kwargs).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from ...errors import ConfigError


class DistillLoss(nn.Module):
    reads: ClassVar[str] = "embedding"
    batch_wide: ClassVar[bool] = False
    name: ClassVar[str] = "distill"

    def __init__(self, student_shape: tuple, teacher_shape: tuple):
        super().__init__()
        self.student_shape, self.teacher_shape = tuple(student_shape), tuple(teacher_shape)

    def forward(self, student: Tensor, teacher: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError

    def same_size(self) -> None:
        """ConfigError unless student and teacher embeddings have one size (losses that compare them entry-wise)."""
        if self.student_shape != self.teacher_shape:
            raise ConfigError(
                f"distillation loss '{self.name}' compares embeddings entry by entry, but the student's are "
                f"{self.student_shape} and the teacher's {self.teacher_shape}; use fitnet (a learnt regressor) or a "
                "relational loss (rkd_distance, rkd_angle, pkt, sp, ekd), or make model.embedding_size match"
            )


def wide(x: Tensor) -> Tensor:
    """float32 for half-precision inputs (sums and exponentials need it); float32/float64 kept."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def positive(loss: str, **values: float) -> None:
    for key, value in values.items():
        if not value > 0:
            raise ConfigError(f"distillation loss '{loss}': {key}={value!r} must be > 0")

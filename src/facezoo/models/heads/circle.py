"""CircleLoss head, classification form (Sun et al., CVPR 2020) with its optimum-based weights."""

from __future__ import annotations

from torch import Tensor

from . import HEADS
from .base import CosineHead, check_positive, gather_target, put_target


@HEADS.register("circleloss")
class CircleLoss(CosineHead):
    """target gamma * a_p (cos_y - D_p), negatives gamma * a_n (cos_j - D_n), softmax cross-entropy.

    a_p = max(0, O_p - cos_y), a_n = max(0, cos_j - O_n) (detached), O_p = 1 + m, O_n = -m, D_p = 1 - m, D_n = m.
    Defaults m = 0.25, gamma = 256 (the paper's and FaceX-Zoo's).
    """

    name = "circleloss"

    def __init__(self, embedding_size: int, num_classes: int, m: float = 0.25, gamma: float = 256.0):
        super().__init__(embedding_size, num_classes)
        check_positive(self.name, gamma=gamma)
        self.m, self.gamma = float(m), float(gamma)

    def hparams(self) -> dict:
        return {"m": self.m, "gamma": self.gamma}

    def negative(self, cos: Tensor) -> Tensor:
        alpha = (cos.detach() + self.m).clamp(min=0.0)  # a_n = max(0, cos - O_n)
        return alpha * (cos - self.m) * self.gamma

    def margin(self, cos: Tensor, labels: Tensor, norms: Tensor, state: dict | None = None) -> Tensor:
        cos_y, index, valid = gather_target(cos, labels)
        alpha_p = (1.0 + self.m - cos_y.detach()).clamp(min=0.0)
        target = alpha_p * (cos_y - (1.0 - self.m)) * self.gamma
        return put_target(self.negative(cos), index, valid, target, self.negative(cos_y))

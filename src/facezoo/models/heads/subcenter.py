"""Sub-center ArcFace (Deng et al., ECCV 2020): K sub-centres per class, the closest one decides.

cos_j = max_k cos(x, w_jk) over the class's kept sub-centres, then ArcFace on the target (threshold variant):
target s * cos(theta_y + m), non-targets s * cos_j. Row j of the weight holds its K sub-centres, (C, K * D).
Dropping (drop_step > 0): every training forward counts, per class, which sub-centre was the closest to the
class's samples (buffer `hits`, (C, K)); at training forward number drop_step each class keeps only its dominant
sub-centre (buffer `keep`), as the paper does before its second stage. (The paper then also drops samples far from
their dominant sub-centre, an offline data cleaning step not done here.) Defaults K = 3, s = 64, m = 0.5.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import ConfigError, ModelError
from . import HEADS
from .base import NORM_EPS
from .context import RowIndex, StepInputs
from .margin import TargetMarginHead, arc_margin


def head_rows(rows: RowIndex, columns: Tensor) -> Tensor:
    """Head row index of each column index in `columns`, for a weight holding `rows` (None: all, in order)."""
    if rows is None:
        return columns
    if isinstance(rows, slice):
        return columns + (rows.start or 0)
    return rows[columns]


@HEADS.register("subcenter_arcface")
class SubCenterArcFace(TargetMarginHead):
    """Sub-center ArcFace with optional dropping of non-dominant sub-centres (see the module docstring)."""

    name = "subcenter_arcface"
    class_rows = ("weight", "hits", "keep")

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float = 64.0,
        m: float = 0.5,
        k: int = 3,
        drop_step: int = 0,
    ):
        if int(k) != k or k < 1:
            raise ConfigError(f"head 'subcenter_arcface': k={k!r} must be a positive integer (paper: 3).")
        if int(drop_step) != drop_step or drop_step < 0:
            raise ConfigError(f"head 'subcenter_arcface': drop_step={drop_step!r} must be an integer >= 0 (0: never).")
        super().__init__(embedding_size, num_classes, s, row_size=int(k) * embedding_size)
        if not 0 <= m < math.pi:
            raise ConfigError(f"head 'subcenter_arcface': m={m!r} must be an angle in [0, pi) radians (typical 0.5).")
        self.m, self.k, self.drop_step = float(m), int(k), int(drop_step)
        self.register_buffer("hits", torch.zeros(num_classes, self.k, dtype=torch.long))
        self.register_buffer("keep", torch.ones(num_classes, self.k, dtype=torch.long))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def hparams(self) -> dict:
        return {"s": self.s, "m": self.m, "k": self.k, "drop_step": self.drop_step}

    def _kept(self, rows: RowIndex, count: int) -> Tensor:
        keep = self.keep if rows is None else self.keep[rows]
        if keep.shape[0] != count:
            raise ModelError(
                f"head 'subcenter_arcface': a weight of {count} class rows needs `rows` (which of the head's "
                f"{self.num_classes} rows they are) for its per-class sub-centre masks"
            )
        return keep.bool()

    def subcosines(self, embeddings: Tensor, weight: Tensor) -> Tensor:
        """(B, C', K) cosines to every sub-centre (float32 at least)."""
        unit = embeddings / embeddings.norm(p=2, dim=1).clamp(min=NORM_EPS).unsqueeze(1)
        centres = F.normalize(weight.view(weight.shape[0], self.k, self.embedding_size), dim=2, eps=NORM_EPS)
        cos = (unit @ centres.reshape(-1, self.embedding_size).t()).view(len(unit), weight.shape[0], self.k)
        return (cos.float() if cos.dtype in (torch.float16, torch.bfloat16) else cos).clamp(-1.0, 1.0)

    def cosines(self, embeddings: Tensor, weight: Tensor, rows: RowIndex = None) -> Tensor:
        cos = self.subcosines(embeddings, weight)
        kept = self._kept(rows, weight.shape[0]).unsqueeze(0)
        return torch.where(kept, cos, torch.full_like(cos, -2.0)).amax(dim=2)

    def target_subcosines(self, embeddings: Tensor, weight: Tensor, labels: Tensor, rows: RowIndex) -> Tensor:
        """(B, K) cosines to the target class's sub-centres, -2 for dropped ones (rows with label -1: any)."""
        index = labels.clamp(min=0)
        unit = embeddings / embeddings.norm(p=2, dim=1).clamp(min=NORM_EPS).unsqueeze(1)
        centres = weight.index_select(0, index).view(len(index), self.k, self.embedding_size)
        cos = (F.normalize(centres, dim=2, eps=NORM_EPS).to(unit.dtype) @ unit.unsqueeze(2)).squeeze(2)
        kept = self._kept(rows, weight.shape[0])[index]
        return torch.where(kept, cos.clamp(-1.0, 1.0), torch.full_like(cos, -2.0))

    def target_cosines(self, embeddings: Tensor, weight: Tensor, labels: Tensor, rows: RowIndex = None) -> Tensor:
        cos = self.target_subcosines(embeddings, weight, labels, rows).amax(dim=1)
        return torch.where(labels >= 0, cos, torch.zeros_like(cos))

    @torch.no_grad()
    def step_state(self, inputs: StepInputs) -> dict:
        """Training: count the dominant sub-centre of each sample's class (its rows on this rank) and, at forward
        number drop_step, keep only each class's most frequent one. No margin state."""
        if not self.training or inputs.embeddings is None:
            return {}
        labels = inputs.labels
        mine = labels >= 0
        closest = self.target_subcosines(inputs.embeddings, inputs.weight, labels, inputs.rows).argmax(dim=1)
        classes = head_rows(inputs.rows, labels.clamp(min=0))
        self.hits.index_put_((classes, closest), mine.long(), accumulate=True)
        self.steps += 1
        if self.drop_step:
            dominant = F.one_hot(self.hits.argmax(dim=1), self.k).to(self.keep.dtype)
            self.keep.copy_(torch.where(self.steps == self.drop_step, dominant, self.keep))
        return {}

    def logits(
        self, embeddings: Tensor, weight: Tensor, labels: Tensor, state: dict | None = None, rows: RowIndex = None
    ) -> Tensor:
        if state is None:  # a plain forward: this call's own step (with the embeddings the counts need)
            x, w = embeddings.detach(), weight.detach()
            norms = x.norm(p=2, dim=1)
            inputs = StepInputs(norms, torch.zeros_like(norms), labels >= 0, embeddings=x, weight=w, labels=labels)
            inputs.rows = rows
            state = self.step_state(inputs)
        return super().logits(embeddings, weight, labels, state, rows)

    def target(self, cos_y: Tensor, norms: Tensor, state: dict) -> Tensor:
        return arc_margin(cos_y, self.m)

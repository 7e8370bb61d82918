"""CIFP (Xu et al., CVPR 2021, TFace): consistent instance false positive rate, the fairness term.

On a CosFace head (target cos_y - m, s = 64, m = 0.35), a penalty lowers each target logit by its sample's
false positives at a global false-positive rate:
  - misclassified negatives: cos_ij > cos_y (excluded from the false positives, as in TFace);
  - threshold th: the far_rank-th largest of the other negative cosines over the whole batch and every class,
    far_rank = ceil(far * (B (C - 1) - #misclassified)), far = 1 / (C - 1) by default (about one false positive
    per sample), C the class columns of the loss over every rank (Partial FC: the sampled ones);
  - false positives of row i: the other negatives with cos_ij > th; p_ij = cos_ij when cos_y - m > cos_ij, else
    cos_ij with the class centre detached (gradient only to the embedding); penalty_i = mean_j p_ij^2;
  - target logit s * (cos_y - m - (1 + cos'_y) penalty_i), cos'_y with the centre detached.
Under sharding the threshold comes from a global top-k (each rank's top far-rank candidates gathered) and the
penalty's sums from all-reduces, so the loss equals single-process training. Comparisons and the threshold are
detached. It cannot be chunked: a target logit's penalty sums over every column of its row, with gradient.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ...errors import ConfigError
from . import HEADS
from .base import CosineHead, check_positive, gather_target, put_target
from .context import LOCAL, RowIndex, StepInputs


@HEADS.register("cifp")
class CIFP(CosineHead):
    """CIFP on CosFace (see the module docstring). Defaults s = 64, m = 0.35, far = 1 / (C - 1)."""

    name = "cifp"
    needs_target_cos = True
    cannot_chunk = (
        "its penalty on each target logit sums over every class column of the row with gradient, so one chunk's "
        "logits depend on all the others"
    )

    def __init__(
        self, embedding_size: int, num_classes: int, s: float = 64.0, m: float = 0.35, far: float | None = None
    ):
        super().__init__(embedding_size, num_classes)
        check_positive(self.name, s=s)
        if far is not None and not 0 < far <= 1:
            raise ConfigError(f"head 'cifp': far={far!r} must be in (0, 1] (default: 1 / (classes - 1)).")
        self.s, self.m, self.far = float(s), float(m), far

    def hparams(self) -> dict:
        return {"s": self.s, "m": self.m, "far": self.far}

    @torch.no_grad()
    def step_state(self, inputs: StepInputs) -> dict:
        """{"th": the global false-positive threshold, "target_cos", "valid", "reduce"}."""
        reduce, cos_y, valid = inputs.reduce, inputs.target_cos, inputs.valid
        negatives = len(cos_y) * max(inputs.num_columns - 1, 1)
        far = self.far if self.far is not None else 1.0 / max(inputs.num_columns - 1, 1)
        k = max(1, math.ceil(far * negatives))  # host-known upper bound of far_rank
        best = cos_y.new_full((k,), float("-inf"))
        misclassified = torch.zeros((), dtype=torch.long, device=cos_y.device)
        for cos, labels in inputs.columns():
            columns = torch.arange(cos.shape[1], device=cos.device)
            tmp = cos - 2.0 * (columns.unsqueeze(0) == labels.unsqueeze(1)).to(cos.dtype)
            mis = valid.unsqueeze(1) & (tmp > cos_y.to(cos.dtype).unsqueeze(1))
            misclassified += mis.sum()
            candidates = torch.cat([best, (tmp - 2.0 * mis.to(tmp.dtype)).flatten().to(best.dtype)])
            best = candidates.topk(min(k, len(candidates))).values
        misclassified = reduce.sum(misclassified)
        everyone = reduce.gather(best).topk(k).values  # sorted, descending
        rank = torch.ceil(far * (negatives - misclassified).to(torch.float64)).long().clamp(1, k)
        th = everyone.gather(0, (rank - 1).view(1)).squeeze(0)  # a device index: no host sync
        return {"th": th, "target_cos": cos_y, "valid": valid, "reduce": reduce}

    def logits(
        self, embeddings: Tensor, weight: Tensor, labels: Tensor, state: dict | None = None, rows: RowIndex = None
    ) -> Tensor:
        cos = self.cosines(embeddings, weight, rows)
        fixed = self.cosines(embeddings, weight.detach(), rows)  # gradient only to the embedding
        state = self.resolve_state(cos, labels, embeddings.norm(p=2, dim=1), state)
        reduce = state.get("reduce", LOCAL)
        cos_y, index, valid = gather_target(cos, labels)
        fixed_y = fixed.gather(1, index).squeeze(1)
        columns = torch.arange(cos.shape[1], device=cos.device)
        target_mask = (columns.unsqueeze(0) == labels.unsqueeze(1)).to(cos.dtype)
        tmp, tmp_fixed = cos - 2.0 * target_mask, fixed - 2.0 * target_mask
        with torch.no_grad():
            every_y = state["target_cos"].to(cos.dtype).unsqueeze(1)  # the global target cosines (comparisons)
            mis = state["valid"].unsqueeze(1) & (tmp > every_y)
            chosen = ~mis & (tmp > state["th"].to(cos.dtype))
            keep_grad = (every_y - self.m) > torch.where(chosen, tmp, 0.0)
        false_pos = torch.where(chosen, torch.where(keep_grad, tmp, tmp_fixed), torch.zeros_like(tmp)).pow(2)
        with torch.no_grad():
            count = reduce.sum((false_pos > 0).sum(dim=1).to(cos.dtype)).clamp(min=1)
        penalty = reduce.sum_owned(false_pos.sum(dim=1)) / count
        target = (cos_y - self.m) - (1.0 + fixed_y) * penalty
        return put_target(cos * self.s, index, valid, target * self.s, cos_y * self.s)

    def margin(self, cos: Tensor, labels: Tensor, norms: Tensor, state: dict | None = None) -> Tensor:
        raise NotImplementedError("CIFP computes its logits in logits() (it needs the centre-detached cosines)")

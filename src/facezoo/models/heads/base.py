"""Head interface: class centres W (C, D) and logits for softmax cross-entropy.

`logits(embeddings, weight, labels)` works on any subset of class rows (one rank's shard, a Partial FC
sample): `labels[i]` is sample i's target column in that subset, or -1 when its class is not among the rows
(then row i gets no target margin). A sharded classifier therefore reuses every head unchanged.

Margins are computed on the gathered (B,) target cosines and scattered back, so the (B, C') tensor is touched
as few times as possible, with no host syncs and no data-dependent boolean indexing.

Per-step state: `step_state(norms, target_cos, valid)` computes, once per step and from the whole batch, the
detached values a margin needs beyond its own columns (CurricularFace t and cos(theta_y + m) of every row,
AdaFace's z, SphereFace's lambda) and updates the running buffers (training mode). `logits(..., state)` then uses
them without touching the buffers, so a caller that splits the classes into chunks, shards them over ranks or
recomputes logits in backward updates each buffer exactly once per step. With state=None, logits() computes it
from its own call (targets absent from `weight` count as unknown), as a plain forward does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError, ModelError

NORM_EPS = 1e-12  # floor on ||x|| and ||w|| before dividing (F.normalize's default)


def check_positive(head: str, **values: float) -> None:
    """Raise ConfigError naming the hyper-parameter when a value that must be > 0 is not."""
    for key, value in values.items():
        if not value > 0:
            raise ConfigError(f"head '{head}': {key}={value!r} must be > 0; set head.kwargs.{key} to a positive value.")


def gather_target(values: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(B,) target entries values[i, labels[i]], the (B, 1) gather index and the (B,) bool `valid` mask.

    Rows with label -1 read column 0 (any column would do); callers must ignore them via `valid`.
    """
    valid = labels >= 0
    index = labels.clamp(min=0).long().unsqueeze(1)
    return values.gather(1, index).squeeze(1), index, valid


def put_target(out: Tensor, index: Tensor, valid: Tensor, target: Tensor, current: Tensor) -> Tensor:
    """out[i, index[i]] = target[i] where valid[i], in place on `out` (a fresh activation), returned.

    `current` (B,) must equal out's present value at index (computed from the same inputs, not gathered from
    `out`, whose in-place update would invalidate the gather's saved tensor): rows without a target scatter back
    their own value, so no data-dependent indexing is needed and gradients flow through both paths.
    """
    src = torch.where(valid, target.to(out.dtype), current.to(out.dtype))
    return out.scatter_(1, index, src.unsqueeze(1))


def target_cosines(embeddings: Tensor, weight: Tensor, labels: Tensor) -> Tensor:
    """(B,) cos(theta_y) = <x_i/||x_i||, w_{y_i}/||w_{y_i}||> for rows with labels[i] >= 0, 0 elsewhere.

    O(B D): one (B, D) gather of the target rows, no (B, C') product; a sharded caller sums it over ranks.
    """
    valid = labels >= 0
    unit = embeddings / embeddings.norm(p=2, dim=1).clamp(min=NORM_EPS).unsqueeze(1)
    rows = F.normalize(weight.index_select(0, labels.clamp(min=0)), dim=1, eps=NORM_EPS)
    cos = (unit * rows.to(unit.dtype)).sum(dim=1).clamp(-1.0, 1.0)
    return torch.where(valid, cos, torch.zeros_like(cos))


class Head(nn.Module):
    """Base of every head: `weight` (num_classes, embedding_size) class centres, init N(0, 0.01^2).

    forward(x (B, D), labels (B,) int) -> logits (B, C) for plain cross-entropy.
    Stateful heads keep state in buffers (saved in checkpoints) and update it only in training mode, in
    `step_state` (once per step; see the module docstring).
    """

    name = "head"
    needs_target_cos = False  # step_state reads target_cos (the classifier then computes and shares it)

    def __init__(self, embedding_size: int, num_classes: int):
        super().__init__()
        if int(embedding_size) <= 0 or int(num_classes) <= 0:
            raise ConfigError(
                f"head '{self.name}': embedding_size={embedding_size} and num_classes={num_classes} "
                "must both be positive integers; check model.embedding_size and data.num_classes."
            )
        self.embedding_size = int(embedding_size)
        self.num_classes = int(num_classes)
        self.weight = nn.Parameter(torch.empty(self.num_classes, self.embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Logits (B, num_classes) of `embeddings` (B, D) against all class centres."""
        if embeddings.dim() != 2 or embeddings.shape[1] != self.embedding_size:
            raise ModelError(
                f"head '{self.name}' expects embeddings of shape (batch, {self.embedding_size}), got "
                f"{tuple(embeddings.shape)}; make the backbone's embedding_size match the head's."
            )
        if labels.shape != embeddings.shape[:1]:
            raise ModelError(
                f"head '{self.name}': labels shape {tuple(labels.shape)} does not match the batch "
                f"({embeddings.shape[0]},); pass one integer class index per embedding."
            )
        return self.logits(embeddings, self.weight, labels)

    def logits(self, embeddings: Tensor, weight: Tensor, labels: Tensor, state: dict | None = None) -> Tensor:
        """Logits (B, C') against class rows `weight` (C', D); labels index those rows or are -1.

        state: this step's `step_state(...)` (None: computed from this call, updating buffers in training mode).
        """
        raise NotImplementedError

    def step_state(self, norms: Tensor, target_cos: Tensor, valid: Tensor) -> dict:
        """Detached per-step values for the margin, from the whole batch; updates running buffers (training).

        norms (B,) = ||x_i||; target_cos (B,) = cos(theta_{y_i}) where valid (B,) bool (only read by heads with
        needs_target_cos). Called once per step; the default head has no state.
        """
        return {}

    def regularizer(self, embeddings: Tensor) -> Tensor:
        """Scalar added to the loss by the trainer (e.g. MagFace's lambda_g * g(a)); 0 by default."""
        return embeddings.new_zeros(())

    def hparams(self) -> dict:
        """Hyper-parameters shown by extra_repr."""
        return {}

    def extra_repr(self) -> str:
        items = {"embedding_size": self.embedding_size, "num_classes": self.num_classes, **self.hparams()}
        return ", ".join(f"{k}={v}" for k, v in items.items())


class CosineHead(Head):
    """logits = margin(cos, labels, norms), cos = normalize(x) @ normalize(W).T clamped to [-1, 1].

    Subclasses implement `margin`; `norms` = ||x|| (B,) (used by MagFace and AdaFace).
    """

    def logits(self, embeddings: Tensor, weight: Tensor, labels: Tensor, state: dict | None = None) -> Tensor:
        norms = embeddings.norm(p=2, dim=1)
        unit = embeddings / norms.clamp(min=NORM_EPS).unsqueeze(1)
        cos = unit @ F.normalize(weight, dim=1, eps=NORM_EPS).t()
        if cos.dtype in (torch.float16, torch.bfloat16):
            # s * cos needs more than 8-11 mantissa bits (s=64: bf16 spacing 0.25-0.5 in logits); under
            # autocast the matmul runs in low precision and the margin math runs in float32.
            cos, norms = cos.float(), norms.float()
        return self.margin(cos.clamp_(-1.0, 1.0), labels, norms, state)

    def margin(self, cos: Tensor, labels: Tensor, norms: Tensor, state: dict | None = None) -> Tensor:
        """Logits (B, C') from cosines (B, C'), target columns `labels` (-1: none), feature norms (B,) and the
        step state (None: `resolve_state` derives it from these columns)."""
        raise NotImplementedError

    def resolve_state(self, cos: Tensor, labels: Tensor, norms: Tensor, state: dict | None) -> dict:
        """`state`, or when None this call's own: step_state(||x||, cos gathered at the labels, labels >= 0)."""
        if state is not None:
            return state
        with torch.no_grad():
            cos_y, _, valid = gather_target(cos, labels)
            return self.step_state(norms.detach(), cos_y, valid)

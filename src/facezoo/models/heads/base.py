"""Head interface: class centres W (C, F) and, per step, logits and a loss over any subset of class rows.

`logits(embeddings, weight, labels, state, rows)` works on any subset of class rows (one rank's shard, a Partial
FC sample, a chunk of columns): `labels[i]` is sample i's target column in that subset, or -1 when its class is
not among the rows (then row i gets no target margin); `rows` says which of the head's rows `weight` holds, for
heads with per-class buffers. A sharded classifier therefore reuses every head unchanged.

Each row of W is one class: F = D for most heads; heads with more per-class values keep them in the row (K
sub-centres, a learnable margin), so sharding, Partial FC sampling, chunking and the row optimiser carry them.

Margins are computed on the gathered (B,) target cosines and scattered back, so the (B, C') tensor is touched
as few times as possible, with no host syncs and no data-dependent boolean indexing.

Per-step state: `step_state(StepInputs)` computes, once per step and from the whole batch, the detached values a
margin needs beyond its own columns (CurricularFace's t and every row's cos(theta_y + m), AdaFace's z, AdaCos's
scale) and updates the running buffers (training mode). `logits(..., state)` then uses them without touching the
buffers, so a caller that splits the classes into chunks, shards them over ranks or recomputes logits in backward
updates each buffer exactly once per step. With state=None, logits() computes it from its own call (targets
absent from `weight` count as unknown), as a plain forward does.

The loss: `loss(...)` returns per-sample losses, softmax cross-entropy over every class column by default (see
criteria.py); binary one-vs-all heads override it. `batch_loss(Batch)` adds terms on the whole batch (DDL, SCF,
AdaM-Softmax's margin regulariser); `regularizer(x)` a per-sample mean on the local samples (MagFace).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError, ModelError
from .context import LOCAL, Batch, Reducer, RowIndex, StepInputs
from .criteria import softmax_cross_entropy

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
    """Base of every head: `weight` (num_classes, row_size) class rows, init N(0, 0.01^2).

    forward(x (B, D), labels (B,) int) -> logits (B, C) (for softmax heads, of plain cross-entropy).
    Stateful heads keep state in buffers (saved in checkpoints) and update it only in training mode, in
    `step_state` (once per step; see the module docstring).

    Class attributes a head may set:
      needs_target_cos: step_state reads every row's target cosine (the classifier then shares it over ranks);
      cannot_chunk / cannot_sample: why the head cannot split its columns into chunks / train with Partial FC
        (empty: it can; the classifier raises ConfigError with the reason);
      class_rows: state entries with one row per class (sharded over ranks, gathered in checkpoints);
      loss_form: "softmax" (cross-entropy over all classes) or "separable" (a sum of per-class terms).
    """

    name = "head"
    needs_target_cos = False
    cannot_chunk = ""
    cannot_sample = ""
    class_rows: tuple[str, ...] = ("weight",)
    loss_form = "softmax"

    def __init__(self, embedding_size: int, num_classes: int, row_size: int | None = None):
        super().__init__()
        if int(embedding_size) <= 0 or int(num_classes) <= 0:
            raise ConfigError(
                f"head '{self.name}': embedding_size={embedding_size} and num_classes={num_classes} "
                "must both be positive integers; check model.embedding_size and data.num_classes."
            )
        self.embedding_size = int(embedding_size)
        self.num_classes = int(num_classes)
        self.total_classes = self.num_classes  # classes over every rank (bind_classes)
        self.weight = nn.Parameter(torch.empty(self.num_classes, int(row_size or embedding_size)))
        nn.init.normal_(self.weight, std=0.01)

    def bind_classes(self, total_classes: int) -> None:
        """Called by a sharded classifier before training: the number of classes over every rank (this head may
        hold a shard). Heads whose initial values depend on it (AdaCos's scale, a bias) re-initialise them."""
        self.total_classes = int(total_classes)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Logits (B, num_classes) of `embeddings` (B, D) against all class rows."""
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

    def logits(
        self, embeddings: Tensor, weight: Tensor, labels: Tensor, state: dict | None = None, rows: RowIndex = None
    ) -> Tensor:
        """Logits (B, C') against class rows `weight` (C', F); labels index those rows or are -1.

        state: this step's `step_state(...)` (None: computed from this call, updating buffers in training mode).
        rows: which of the head's rows `weight` holds (None: all, in order); heads with per-class buffers use it.
        """
        raise NotImplementedError

    def loss(
        self,
        embeddings: Tensor,
        weight: Tensor,
        labels: Tensor,
        state: dict | None = None,
        rows: RowIndex = None,
        chunk: int = 0,
        reduce: Reducer = LOCAL,
    ) -> Tensor:
        """(B,) per-sample loss over class rows `weight` and, through `reduce`, every other rank's rows:
        softmax cross-entropy of the margin logits (chunk > 0: `chunk` columns at a time)."""
        return softmax_cross_entropy(self, embeddings, weight, labels, state, rows, chunk, reduce)

    def column_loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """(B,) this block of columns' share of each sample's loss, for loss_form "separable" heads."""
        raise NotImplementedError(f"head '{self.name}' has a softmax loss, not a separable one")

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters held whole on every rank but used in the column-split logits (a learnable bias): their
        gradient is summed over ranks by the loss. Other non-row parameters may only enter batch_loss."""
        return []

    def step_state(self, inputs: StepInputs) -> dict:
        """Detached per-step values for the margin, from the whole batch; updates running buffers (training).

        Called once per step (see StepInputs); the default head has no state.
        """
        return {}

    def batch_loss(self, batch: Batch) -> Tensor:
        """Scalar term on the whole batch added to the loss (DDL, SCF, AdaM-Softmax's regulariser); 0 here."""
        return batch.embeddings.new_zeros(())

    def regularizer(self, embeddings: Tensor) -> Tensor:
        """Per-sample mean on the local samples added to the loss (MagFace's lambda_g * g(a)); 0 by default."""
        return embeddings.new_zeros(())

    def cosines(self, embeddings: Tensor, weight: Tensor, rows: RowIndex = None) -> Tensor:
        """(B, C') cos(theta) in [-1, 1] (float32 at least) between the embeddings and class rows `weight`."""
        unit = embeddings / embeddings.norm(p=2, dim=1).clamp(min=NORM_EPS).unsqueeze(1)
        cos = unit @ F.normalize(weight, dim=1, eps=NORM_EPS).t()
        if cos.dtype in (torch.float16, torch.bfloat16):
            # s * cos needs more than 8-11 mantissa bits (s=64: bf16 spacing 0.25-0.5 in logits); under
            # autocast the matmul runs in low precision and the margin math runs in float32.
            cos = cos.float()
        return cos.clamp(-1.0, 1.0)

    def target_cosines(self, embeddings: Tensor, weight: Tensor, labels: Tensor, rows: RowIndex = None) -> Tensor:
        """(B,) cos(theta_y) for rows with labels >= 0, 0 elsewhere, in O(B D) (see target_cosines)."""
        return target_cosines(embeddings, weight, labels)

    def hparams(self) -> dict:
        """Hyper-parameters shown by extra_repr."""
        return {}

    def extra_repr(self) -> str:
        items = {"embedding_size": self.embedding_size, "num_classes": self.num_classes, **self.hparams()}
        return ", ".join(f"{k}={v}" for k, v in items.items())


class CosineHead(Head):
    """logits = margin(cos, labels, norms, state), cos = cosines(x, W) (normalised, clamped to [-1, 1]).

    Subclasses implement `margin`; `norms` = ||x|| (B,) (used by MagFace and AdaFace).
    """

    def logits(
        self, embeddings: Tensor, weight: Tensor, labels: Tensor, state: dict | None = None, rows: RowIndex = None
    ) -> Tensor:
        cos = self.cosines(embeddings, weight, rows)
        norms = embeddings.norm(p=2, dim=1).to(cos.dtype)
        return self.margin(cos, labels, norms, state)

    def margin(self, cos: Tensor, labels: Tensor, norms: Tensor, state: dict | None = None) -> Tensor:
        """Logits (B, C') from cosines (B, C'), target columns `labels` (-1: none), feature norms (B,) and the
        step state (None: `resolve_state` derives it from these columns)."""
        raise NotImplementedError

    def resolve_state(self, cos: Tensor, labels: Tensor, norms: Tensor, state: dict | None) -> dict:
        """`state`, or when None this call's own: step_state over these columns (targets absent: unknown)."""
        if state is not None:
            return state
        with torch.no_grad():
            cos = cos.detach()
            cos_y, _, valid = gather_target(cos, labels)
            inputs = StepInputs(
                norms=norms.detach(),
                target_cos=torch.where(valid, cos_y, torch.zeros_like(cos_y)),
                valid=valid,
                columns=lambda: iter([(cos, labels)]),
                num_classes=self.total_classes,
                num_columns=cos.shape[1],
                labels=labels,
            )
            return self.step_state(inputs)

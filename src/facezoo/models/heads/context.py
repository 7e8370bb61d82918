"""What a head sees of the step beyond its own class columns.

- Reducer: the collectives over the ranks that hold the other class columns (train.classifier supplies the
  torch.distributed one; this base, one process, is the identity), so heads whose formula needs global statistics
  (AdaCos's median and exp-sum, CIFP's false-positive threshold) are exact under sharding without importing train.
- StepInputs: what `Head.step_state` reads once per step (norms, target cosines, a pass over the columns).
- Batch: the global batch for terms beside the class logits (`Head.batch_loss`, the auxiliary losses).

Gradient rules under sharding (B = global batch, W ranks; each rank computes the same loss value):
  - a term every rank computes identically from the whole batch (triplet, DDL's negatives, SCF's kappa) uses
    `Batch.replicated()`, whose backward divides by W, because the all-gather's backward sums the W copies;
  - a term split over ranks by class (target cosines, centre loss) uses `Batch.embeddings` and combines the ranks'
    parts with `Reducer.sum_replicated` (each rank back-propagates into its own part only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ...errors import ModelError

RowIndex = slice | Tensor | None  # which of a head's class rows a weight holds: None all, a slice, or indices


class Reducer:
    """Collectives over the ranks that hold the other class columns; every method is the identity here."""

    world_size = 1

    def sum(self, x: Tensor) -> Tensor:
        """SUM over ranks (no gradient)."""
        return x

    def max(self, x: Tensor) -> Tensor:
        """MAX over ranks (no gradient)."""
        return x

    def gather(self, x: Tensor) -> Tensor:
        """Every rank's x (same shape) concatenated along dim 0 (no gradient)."""
        return x

    def sum_replicated(self, x: Tensor) -> Tensor:
        """SUM over ranks with gradient, for a sum every rank then uses identically: backward is the identity
        (each rank back-propagates the same downstream gradient into its own part)."""
        return x

    def sum_owned(self, x: Tensor) -> Tensor:
        """SUM over ranks with gradient, for a sum only some ranks use (a row's target column lives on one
        rank): backward all-reduces the gradient."""
        return x

    def shared_grad(self, grad: Tensor) -> Tensor:
        """Gradient of a parameter every rank holds whole but uses only on its own columns: SUM over ranks."""
        return grad

    def replicated(self, x: Tensor) -> Tensor:
        """x (the all-gathered batch) for a term every rank computes identically: identity forward, gradient
        divided by the world size backward."""
        return x


LOCAL = Reducer()


def _no_columns() -> Iterator[tuple[Tensor, Tensor]]:
    return iter(())


@dataclass
class StepInputs:
    """Per-step inputs of Head.step_state, computed once per step from the whole (global) batch.

    columns(): detached (cos (B, c), labels (B,) relative to those c columns, -1 elsewhere) for every column
    block of this rank's class rows in use, to accumulate row statistics; combine ranks with `reduce`.
    embeddings / weight / labels / rows: the detached global batch, this rank's class rows in use, the labels
    as columns of those rows (-1: not among them) and which head rows they are (heads with per-class buffers).
    """

    norms: Tensor  # (B,) ||x_i||
    target_cos: Tensor  # (B,) cos(theta_{y_i}) where valid (heads with needs_target_cos; zeros otherwise)
    valid: Tensor  # (B,) bool: the row's target cosine is known
    columns: Callable[[], Iterator[tuple[Tensor, Tensor]]] = _no_columns
    reduce: Reducer = LOCAL
    num_classes: int = 0  # classes of the whole classifier (every rank)
    num_columns: int = 0  # class columns in this step's loss over every rank (Partial FC: the sampled ones)
    embeddings: Tensor | None = None
    weight: Tensor | None = None
    labels: Tensor | None = None
    rows: RowIndex = None


@dataclass
class Batch:
    """The step's global batch for terms beside the class logits (see the module docstring's gradient rules).

    embeddings (B, D): every rank's samples (the all-gathered batch); labels (B,) global class ids; shard_labels
    (B,): rows of this rank's class shard, -1 for classes on other ranks; sample_loss (B,): the head's loss of
    each sample (global); weight / local_labels / rows: this rank's class rows in use and the labels as their
    columns (-1 elsewhere), for `target_cos`.
    """

    embeddings: Tensor
    labels: Tensor
    shard_labels: Tensor
    sample_loss: Tensor
    head: torch.nn.Module | None = field(default=None, repr=False)
    weight: Tensor | None = field(default=None, repr=False)
    local_labels: Tensor | None = field(default=None, repr=False)
    rows: RowIndex = None
    state: dict = field(default_factory=dict, repr=False)
    reduce: Reducer = LOCAL
    _cache: dict = field(default_factory=dict, repr=False)

    def replicated(self) -> Tensor:
        """The embeddings for a term every rank computes identically (gradient / world size)."""
        if "replicated" not in self._cache:
            self._cache["replicated"] = self.reduce.replicated(self.embeddings)
        return self._cache["replicated"]

    def target_cos(self) -> Tensor:
        """(B,) cos(theta_{y_i}) with gradient into the embeddings and the class rows, exact over ranks."""
        if self.head is None:
            raise ModelError("this batch has no head (no class centres): a loss that needs target cosines needs one")
        if "target_cos" not in self._cache:
            local = self.head.target_cosines(self.embeddings, self.weight, self.local_labels, self.rows)
            self._cache["target_cos"] = self.reduce.sum_replicated(local)
        return self._cache["target_cos"]

    @classmethod
    def local(cls, head, embeddings: Tensor, labels: Tensor, sample_loss: Tensor | None = None) -> Batch:
        """The one-process batch of `head` (all its classes present; None: no class centres, e.g. a triplet
        training mode): for tests and single-process callers."""
        if sample_loss is None:
            sample_loss = embeddings.new_zeros(len(labels))
        return cls(embeddings, labels, labels, sample_loss, head, None if head is None else head.weight, labels)

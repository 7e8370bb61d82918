"""Class-sharded margin classifier with Partial FC sampling (model parallel over ranks) and auxiliary losses.

Rank r holds class rows [start_r, end_r) (shard_range). Each step:
  1. embeddings and labels of the global batch are all-gathered (the embedding gather carries gradients);
  2. labels become columns of the local shard, -1 where the class lives on another rank;
  3. Partial FC (sample_rate < 1): the shard keeps every positive class of the global batch plus random negatives,
     k = min(shard, max(int(rate * shard), global batch)) rows (host-known: no sync); those rows are copied into a
     leaf (k, D) tensor `sampled`, so backward yields a (k, D) gradient and the optimiser (train/optim.py
     RowOptimizer) updates only those rows of the weight and of its state;
  4. the head's per-step state is computed once from the whole global batch (Head.step_state): every row's target
     cosine (an all-reduce SUM of a (B,) vector that is zero where the class is not local) for heads that need it,
     and a pass over the columns for heads that need row statistics (AdaCos, NPCFace, CIFP), through the Reducer
     below, so sharded or chunked logits equal single-process full-FC ones;
  5. the head's per-sample loss over its rows (Head.loss: softmax cross-entropy across ranks by default, a sum of
     binary terms for one-vs-all heads; see models/heads/criteria.py), chunk_size columns at a time when chunked
     (forward keeps O(B) per row, backward recomputes each chunk: memory O(B x chunk));
  6. terms on the whole batch: Head.batch_loss (DDL, SCF, AdaM-Softmax) and the auxiliary losses (head.aux:
     centre, focal, triplet; models/losses), each with its weight, plus the head's per-sample regulariser on the
     local samples (DDP's averaging makes it global).
With one process every collective is the identity and this is ordinary full-FC (or sampled) training.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError, ModelError
from ..models.heads.context import LOCAL, Batch, Reducer, StepInputs
from ..models.heads.criteria import chunk_labels, chunk_rows
from ..models.losses import LOSSES
from .distributed import World, all_gather_nograd, all_gather_with_grad, all_reduce, gather_rows, shard_range

CHUNK_BUDGET = 2**26  # chunk_size "auto": chunk once B x C' exceeds this many logits (256 MiB per fp32 copy)


def chunk_columns(chunk_size: int | str, batch: int, columns: int, budget: int = CHUNK_BUDGET) -> int:
    """Columns per chunk for a (batch, columns) logit matrix; 0 = one piece (the unchunked path).

    chunk_size "auto": 0 while batch * columns <= budget, else max(1, budget // batch); an int N > 0: N (0 when
    N >= columns); 0: never chunk.
    """
    if chunk_size == "auto":
        return 0 if batch * columns <= budget else max(1, budget // batch)
    chunk_size = int(chunk_size)
    return chunk_size if 0 < chunk_size < columns else 0


class _SumReplicated(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return all_reduce(x.clone())

    @staticmethod
    def backward(ctx, grad):
        return grad


class _SumOwned(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return all_reduce(x.clone())

    @staticmethod
    def backward(ctx, grad):
        return all_reduce(grad.clone())


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.factor, None


class DistReducer(Reducer):
    """The head Reducer over torch.distributed's default group (see models/heads/context.py)."""

    def __init__(self, world: World):
        self.world_size = world.world_size

    def sum(self, x):
        return all_reduce(x)

    def max(self, x):
        return all_reduce(x, dist.ReduceOp.MAX)

    def gather(self, x):
        return all_gather_nograd(x)

    def sum_replicated(self, x):
        return _SumReplicated.apply(x)

    def sum_owned(self, x):
        return _SumOwned.apply(x)

    def shared_grad(self, grad):
        return all_reduce(grad)

    def replicated(self, x):
        return _ScaleGrad.apply(x, 1.0 / self.world_size)


def _aux_spec(item) -> tuple[str, float, dict]:
    """(name, weight, kwargs) of an AuxLossConfig or a plain {name, weight, kwargs} mapping."""
    if isinstance(item, dict):
        unknown = set(item) - {"name", "weight", "kwargs"}
        if unknown or "name" not in item:
            raise ConfigError(f"head.aux entry {item!r}: give name, weight and optional kwargs")
        return item["name"], float(item.get("weight", 1.0)), dict(item.get("kwargs") or {})
    return item.name, float(item.weight), dict(item.kwargs)


class ShardedClassifier(nn.Module):
    """forward(local embeddings (b, D), local labels (b,)) -> the global-batch mean loss (same on every rank).

    `head` is a facezoo Head built for this rank's shard (num_classes = end - start); its buffers and any
    regulariser work as in single-process training. chunk_size: see chunk_columns (HeadConfig.chunk_size).
    aux: auxiliary losses (AuxLossConfig or {name, weight, kwargs}) added with their weights.
    Partial FC: after backward the gradient is on `sampled` (k, D), rows `rows` of head.weight; head.weight
    itself gets none (the trainer's RowOptimizer writes the sampled rows back).
    parameters() holds the head's and the auxiliary losses' parameters: build the optimiser over it.
    """

    def __init__(
        self,
        head: nn.Module,
        num_classes: int,
        world: World | None = None,
        sample_rate: float = 1.0,
        chunk_size: int | str = "auto",
        aux=(),
    ):
        super().__init__()
        if not 0.0 < sample_rate <= 1.0:
            raise ConfigError(f"sample_rate must be in (0, 1], got {sample_rate}")
        if chunk_size != "auto" and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 0):
            raise ConfigError(
                f"head.chunk_size must be 'auto' or an integer >= 0 (0 = no chunking), got {chunk_size!r}"
            )
        if sample_rate < 1.0 and head.cannot_sample:
            raise ConfigError(
                f"head '{head.name}' cannot train with Partial FC (head.sample_rate={sample_rate}): "
                f"{head.cannot_sample}; use head.sample_rate=1."
            )
        if chunk_size != "auto" and chunk_size > 0 and head.cannot_chunk:
            raise ConfigError(
                f"head '{head.name}' cannot split its classes into chunks (head.chunk_size={chunk_size}): "
                f"{head.cannot_chunk}; use head.chunk_size=0 (or auto, which never chunks it)."
            )
        self.head = head
        self.num_classes = num_classes
        world = world or World()
        self.start, self.end = shard_range(num_classes, world.rank, world.world_size)
        if head.weight.shape[0] != self.end - self.start:
            raise ValueError(
                f"head has {head.weight.shape[0]} rows, shard [{self.start}, {self.end}) needs {self.end - self.start}"
            )
        head.bind_classes(num_classes)
        self.sample_rate = sample_rate
        self.chunk_size = chunk_size
        self.world = world
        self.reducer: Reducer = DistReducer(world) if world.distributed else LOCAL
        self.aux = nn.ModuleList()
        self.aux_weights: list[float] = []
        for item in aux:
            name, weight, kwargs = _aux_spec(item)
            if not weight >= 0:
                raise ConfigError(f"head.aux '{name}': weight={weight!r} must be >= 0 (e.g. 0.01)")
            loss = LOSSES.create(name, embedding_size=head.embedding_size, num_classes=self.end - self.start, **kwargs)
            loss.check(head)
            self.aux.append(loss)
            self.aux_weights.append(weight)
        self.rows: torch.Tensor | None = None  # Partial FC: this step's rows of head.weight (sorted)
        self.sampled: torch.Tensor | None = None  # leaf (k, D) copy of head.weight[rows]; gets the gradient
        self.columns = num_classes  # class columns of the loss over every rank (Partial FC: of this sample)
        self._pinned = False

    @classmethod
    def from_config(cls, head: nn.Module, num_classes: int, world: World | None, cfg) -> ShardedClassifier:
        """From a HeadConfig: sample_rate, chunk_size and the auxiliary losses."""
        return cls(head, num_classes, world, cfg.sample_rate, cfg.chunk_size, aux=cfg.aux)

    def is_sharded(self, tensor: torch.Tensor) -> bool:
        """Whether `tensor` is laid out like this rank's rows of the head weight (weight, momentum, Adam moments)."""
        return tensor.dim() >= 1 and tensor.shape == self.head.weight.shape

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """This rank's rows -> all classes' rows (every rank must call it)."""
        return gather_rows(tensor, self.num_classes, self.world)

    def shard(self, tensor: torch.Tensor) -> torch.Tensor:
        """All classes' rows -> this rank's rows."""
        return tensor[self.start : self.end]

    def _class_rows(self, module: nn.Module) -> tuple[str, ...]:
        return tuple(getattr(module, "class_rows", ()))

    def _full(self, module: nn.Module) -> dict:
        rows = self._class_rows(module)
        return {k: self.gather(v) if k in rows else v for k, v in module.state_dict().items()}

    def _sharded(self, module: nn.Module, state: dict) -> dict:
        rows = self._class_rows(module)
        return {k: self.shard(v) if k in rows else v for k, v in state.items()}

    def full_state_dict(self) -> dict:
        """The head's state (and the auxiliary losses', keys "aux.<i>.<name>") with the per-class rows of every
        rank (class centres, per-class buffers): independent of the world size."""
        state = self._full(self.head)
        for i, loss in enumerate(self.aux):
            state.update({f"aux.{i}.{k}": v for k, v in self._full(loss).items()})
        return state

    def load_full_state_dict(self, state: dict) -> None:
        head = {k: v for k, v in state.items() if not k.startswith("aux.")}
        self.head.load_state_dict(self._sharded(self.head, head))
        for i, loss in enumerate(self.aux):
            prefix = f"aux.{i}."
            part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            if loss.state_dict() and not part:
                raise ModelError(
                    f"the checkpoint has no state for auxiliary loss {i} ('{loss.name}'): it was saved with other "
                    "head.aux settings; resume with the recipe it was trained with"
                )
            loss.load_state_dict(self._sharded(loss, part))

    def local_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Global class ids -> columns of this shard, -1 for classes held by other ranks."""
        local = labels - self.start
        return torch.where((local >= 0) & (local < self.end - self.start), local, torch.full_like(local, -1))

    def num_sampled(self, global_batch: int) -> int:
        """Partial FC rows kept: k = min(shard, max(int(sample_rate * shard), global batch)).

        From host-known sizes only (no sync), and >= the number of distinct positives a batch can hold.
        """
        num_local = self.end - self.start
        return min(num_local, max(1, int(self.sample_rate * num_local), global_batch))

    def sample(self, local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Partial FC: sorted row indices (every positive + random negatives) and labels remapped to those rows.

        Positives score 2, the others U(0, 1) from the global RNG (the trainer seeds it per step, so runs and
        resumes repeat the draws); the top num_sampled(B) are kept. Scatter / topk only: no host sync.
        """
        num_local = self.end - self.start
        score = torch.rand(num_local + 1, device=local.device)  # slot num_local absorbs labels -1
        score.scatter_(0, torch.where(local >= 0, local, num_local), 2.0)
        keep = torch.topk(score[:num_local], self.num_sampled(len(local)), sorted=False).indices.sort().values
        return keep, self.remap(keep, local)

    def remap(self, rows: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
        """Shard columns -> positions in `rows` (-1 for labels -1; every positive must be among rows)."""
        position = torch.full((self.end - self.start,), -1, dtype=local.dtype, device=local.device)
        position.scatter_(0, rows, torch.arange(len(rows), dtype=local.dtype, device=local.device))
        return torch.where(local >= 0, position[local.clamp(min=0)], local)

    def sampled_columns(self, global_batch: int) -> int:
        """Columns over every rank of a Partial FC sample drawn for `global_batch` labels (host-known, no sync)."""
        world = self.world.world_size
        sizes = [e - s for s, e in (shard_range(self.num_classes, r, world) for r in range(world))]
        return sum(min(n, max(1, int(self.sample_rate * n), global_batch)) for n in sizes)

    def _take(self, rows: torch.Tensor, columns: int) -> None:
        """rows -> self.rows, and head.weight[rows] copied into the leaf `sampled` (reused while k is constant);
        `columns`: the sample's column count over every rank."""
        weight = self.head.weight
        shape = (len(rows), weight.shape[1])
        if (
            self.sampled is None
            or self.sampled.shape != shape
            or self.sampled.dtype != weight.dtype
            or self.sampled.device != weight.device
        ):
            self.sampled = torch.empty(shape, dtype=weight.dtype, device=weight.device, requires_grad=True)
        with torch.no_grad():
            torch.index_select(weight, 0, rows, out=self.sampled)  # no (k, D) temporary
        self.rows, self.columns = rows, columns

    def pin_sample(self, labels: torch.Tensor) -> None:
        """Choose this optimiser step's rows from the local labels of all its micro-batches (every rank calls it).

        Without it each forward samples afresh, which is right for one forward per optimiser step; with
        gradient accumulation the trainer pins one sample for all micro-batches, so `sampled.grad` sums
        gradients of the same rows. `end_step()` unpins.
        """
        if self.sample_rate < 1.0:
            local = self.local_labels(all_gather_nograd(labels))
            self._take(self.sample(local)[0], self.sampled_columns(len(local)))
            self._pinned = True

    def end_step(self) -> None:
        """Forget the pinned sample (after the optimiser step)."""
        self._pinned = False

    def _chunk(self, batch: int, columns: int) -> int:
        if self.head.cannot_chunk:
            return 0
        return chunk_columns(self.chunk_size, batch, columns)

    def step_inputs(self, total, weight, local, rows, chunk) -> StepInputs:
        """The head's StepInputs from the global batch (detached), shared over ranks through the reducer."""
        head, reduce = self.head, self.reducer
        x, w = total.detach(), weight.detach()
        norms = x.norm(p=2, dim=1)
        if head.needs_target_cos:
            cos = reduce.sum(head.target_cosines(x, w, local, rows))  # zero off-shard: SUM
        else:
            cos = torch.zeros_like(norms)
        step = chunk or w.shape[0]

        def columns():
            for start in range(0, w.shape[0], step):
                stop = min(start + step, w.shape[0])
                yield head.cosines(x, w[start:stop], chunk_rows(rows, start, stop)), chunk_labels(local, start, stop)

        return StepInputs(
            norms=norms,
            target_cos=cos,
            valid=torch.ones_like(local, dtype=torch.bool),  # every class lives on some rank
            columns=columns,
            reduce=reduce,
            num_classes=self.num_classes,
            num_columns=self.columns if self.sample_rate < 1.0 else self.num_classes,
            embeddings=x,
            weight=w,
            labels=local,
            rows=rows,
        )

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        head = self.head
        total = all_gather_with_grad(embeddings)
        global_labels = all_gather_nograd(labels)
        shard_labels = self.local_labels(global_labels)
        local, weight, rows = shard_labels, head.weight, None
        if self.sample_rate < 1.0:
            if not self._pinned:
                self._take(self.sample(shard_labels)[0], self.sampled_columns(len(shard_labels)))
            local, weight, rows = self.remap(self.rows, shard_labels), self.sampled, self.rows
        chunk = self._chunk(total.shape[0], weight.shape[0])
        with torch.no_grad():
            state = head.step_state(self.step_inputs(total, weight, local, rows, chunk))
        sample_loss = head.loss(total, weight, local, state, rows, chunk, self.reducer)
        batch = Batch(total, global_labels, shard_labels, sample_loss, head, weight, local, rows, state, self.reducer)
        loss = sample_loss.mean() + head.batch_loss(batch)
        for weight_, aux in zip(self.aux_weights, self.aux):
            loss = loss + weight_ * aux(batch)
        # The regulariser is a per-sample mean: computed on local samples, DDP's averaging makes it global.
        return loss + head.regularizer(embeddings)

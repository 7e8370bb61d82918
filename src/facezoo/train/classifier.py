"""Class-sharded margin-softmax classifier with Partial FC sampling (model parallel over ranks).

Rank r holds class centres [start_r, end_r) (shard_range). Each step:
  1. embeddings and labels of the global batch are all-gathered (the embedding gather carries gradients);
  2. labels become columns of the local shard, -1 where the class lives on another rank;
  3. the head's per-step state is computed once from the whole global batch (Head.step_state); heads that need
     every row's target cosine (CurricularFace) get it from an all-reduce SUM of a (B,) vector that is zero where
     the class is not local, so sharded or chunked logits equal single-process full-FC ones;
  4. Partial FC (sample_rate < 1): the shard keeps every positive class of the global batch plus random negatives,
     k = min(shard, max(int(rate * shard), global batch)) rows (host-known: no sync); those rows are copied into a
     leaf (k, D) tensor `sampled`, so backward yields a (k, D) gradient and the optimiser (train/optim.py
     RowOptimizer) updates only those rows of the weight and of its state;
  5. the head computes margin logits on its rows (Head.logits works on any subset of class rows);
  6. softmax cross-entropy across ranks, loss_i = log sum_j exp(z_ij) - z_iy over the columns of every rank, with
     one all-reduce MAX of the row maxima and one all-reduce SUM of the exp-sums and target terms:
     - unchunked (DistCrossEntropy): the (B, C') logits and probabilities are kept for backward;
     - chunked (ChunkedMarginCrossEntropy, chunk_size columns at a time): forward keeps only the running row
       max / sum-exp / target logit (online softmax), backward recomputes each chunk's margin logits and
       back-propagates (p - onehot) / B; memory O(B x chunk) instead of several (B, C') tensors.
With one process every collective is the identity and this is ordinary full-FC (or sampled) training.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.heads.base import target_cosines
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


def _chunk_labels(labels: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Columns [start, stop) -> labels relative to the chunk, -1 where the target is outside it."""
    local = labels - start
    return torch.where((local >= 0) & (local < stop - start), local, torch.full_like(local, -1))


def _float_logits(logits: torch.Tensor) -> torch.Tensor:
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits  # sums need float32


class DistCrossEntropy(torch.autograd.Function):
    """Mean softmax cross-entropy of logits split by columns over ranks; labels -1 = target on another rank.

    Backward is local: d loss / d z_ij = (p_ij - [j = y_i]) / B, with p the globally normalised softmax.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        row_max = logits.detach().amax(dim=1)
        all_reduce(row_max, torch.distributed.ReduceOp.MAX)
        prob = (logits.detach() - row_max.unsqueeze(1)).exp_()
        sum_exp = all_reduce(prob.sum(dim=1))
        prob.div_(sum_exp.unsqueeze(1))
        valid = labels >= 0
        index = labels.clamp(min=0).unsqueeze(1)
        target = all_reduce(prob.gather(1, index).squeeze(1) * valid)  # exactly one rank owns each target
        ctx.save_for_backward(prob, index, valid)
        return -target.clamp_min(torch.finfo(prob.dtype).tiny).log().mean()

    @staticmethod
    def backward(ctx, grad_output):
        prob, index, valid = ctx.saved_tensors
        grad = prob.scatter_add_(1, index, -valid.to(prob.dtype).unsqueeze(1))
        return grad.mul_(grad_output / prob.shape[0]), None


class ChunkedMarginCrossEntropy(torch.autograd.Function):
    """DistCrossEntropy(head.logits(x, W, labels, state), labels) computed `chunk` columns of W at a time.

    Forward (no graph kept): per chunk z = head.logits(x, W[a:b], labels - a, state); online softmax
    m <- max(m, max_j z_ij), s <- s exp(m_old - m) + sum_j exp(z_ij - m), target logit t_i from the chunk that
    holds it; then MAX / SUM all-reduces over ranks; loss = mean_i(m_i + log s_i - t_i).
    Backward: recompute each chunk's logits under autograd and back-propagate (exp(z - m) / s - onehot) / B into
    x and W[a:b]. The step state is fixed (computed once per step), so running buffers are not touched here.
    Saved: x (B, D), W, labels, m, s: O(B) beyond the inputs; peak O(B x chunk) per chunk.
    """

    @staticmethod
    def forward(ctx, embeddings, weight, labels, head, state, chunk):
        batch, columns = embeddings.shape[0], weight.shape[0]
        dtype = torch.promote_types(embeddings.dtype, torch.float32)
        row_max = embeddings.new_full((batch,), float("-inf"), dtype=dtype)
        sum_exp = embeddings.new_zeros((batch,), dtype=dtype)
        target = embeddings.new_zeros((batch,), dtype=dtype)
        for start in range(0, columns, chunk):  # host-known bounds: no sync
            stop = min(start + chunk, columns)
            sub = _chunk_labels(labels, start, stop)
            z = _float_logits(head.logits(embeddings, weight[start:stop], sub, state)).to(dtype)
            new_max = torch.maximum(row_max, z.amax(dim=1))
            sum_exp = sum_exp * (row_max - new_max).exp() + (z - new_max.unsqueeze(1)).exp().sum(dim=1)
            row_max = new_max
            z_y = z.gather(1, sub.clamp(min=0).unsqueeze(1)).squeeze(1)
            target += torch.where(sub >= 0, z_y, torch.zeros_like(z_y))
        global_max = all_reduce(row_max.clone(), torch.distributed.ReduceOp.MAX)
        sum_exp = all_reduce(sum_exp * (row_max - global_max).exp())
        target = all_reduce(target)  # exactly one rank (and one chunk) holds each target
        ctx.head, ctx.state, ctx.chunk = head, state, chunk
        ctx.save_for_backward(embeddings, weight, labels, global_max, sum_exp)
        return (global_max + sum_exp.log() - target).mean()

    @staticmethod
    def backward(ctx, grad_output):
        embeddings, weight, labels, row_max, sum_exp = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_x = torch.zeros_like(embeddings) if need_x else None
        grad_w = torch.zeros_like(weight) if need_w else None
        scale = grad_output / embeddings.shape[0]
        columns = weight.shape[0]
        for start in range(0, columns, ctx.chunk):
            stop = min(start + ctx.chunk, columns)
            sub = _chunk_labels(labels, start, stop)
            with torch.enable_grad():
                x = embeddings.detach().requires_grad_(need_x)
                w = weight[start:stop].detach().requires_grad_(need_w)
                z = ctx.head.logits(x, w, sub, ctx.state)
                with torch.no_grad():
                    grad = (_float_logits(z).to(row_max.dtype) - row_max.unsqueeze(1)).exp_().div_(sum_exp.unsqueeze(1))
                    grad.scatter_add_(1, sub.clamp(min=0).unsqueeze(1), -(sub >= 0).to(grad.dtype).unsqueeze(1))
                    grad.mul_(scale)
                inputs = [t for t, need in ((x, need_x), (w, need_w)) if need]
                grads = iter(torch.autograd.grad(z, inputs, grad.to(z.dtype), allow_unused=True))
            gx = next(grads) if need_x else None
            gw = next(grads) if need_w else None
            if gx is not None:
                grad_x += gx
            if gw is not None:
                grad_w[start:stop] = gw
        return grad_x, grad_w, None, None, None, None


class ShardedClassifier(nn.Module):
    """forward(local embeddings (b, D), local labels (b,)) -> the global-batch mean loss (same on every rank).

    `head` is a facezoo Head built for this rank's shard (num_classes = end - start); its buffers and any
    regulariser work as in single-process training. chunk_size: see chunk_columns (HeadConfig.chunk_size).
    Partial FC: after backward the gradient is on `sampled` (k, D), rows `rows` of head.weight; head.weight
    itself gets none (the trainer's RowOptimizer writes the sampled rows back).
    """

    def __init__(
        self,
        head: nn.Module,
        num_classes: int,
        world: World | None = None,
        sample_rate: float = 1.0,
        chunk_size: int | str = "auto",
    ):
        super().__init__()
        from ..errors import ConfigError

        if not 0.0 < sample_rate <= 1.0:
            raise ConfigError(f"sample_rate must be in (0, 1], got {sample_rate}")
        if chunk_size != "auto" and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 0):
            raise ConfigError(
                f"head.chunk_size must be 'auto' or an integer >= 0 (0 = no chunking), got {chunk_size!r}"
            )
        self.head = head
        self.num_classes = num_classes
        world = world or World()
        self.start, self.end = shard_range(num_classes, world.rank, world.world_size)
        if head.weight.shape[0] != self.end - self.start:
            raise ValueError(
                f"head has {head.weight.shape[0]} rows, shard [{self.start}, {self.end}) needs {self.end - self.start}"
            )
        self.sample_rate = sample_rate
        self.chunk_size = chunk_size
        self.world = world
        self.rows: torch.Tensor | None = None  # Partial FC: this step's rows of head.weight (sorted)
        self.sampled: torch.Tensor | None = None  # leaf (k, D) copy of head.weight[rows]; gets the gradient
        self._pinned = False

    def is_sharded(self, tensor: torch.Tensor) -> bool:
        """Whether `tensor` is laid out like this rank's rows of the head weight (weight, momentum, Adam moments)."""
        return tensor.dim() >= 1 and tensor.shape == self.head.weight.shape

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """This rank's rows -> all classes' rows (every rank must call it)."""
        return gather_rows(tensor, self.num_classes, self.world)

    def shard(self, tensor: torch.Tensor) -> torch.Tensor:
        """All classes' rows -> this rank's rows."""
        return tensor[self.start : self.end]

    def full_state_dict(self) -> dict:
        """The head's state with the class centres of every rank: independent of the world size."""
        return {k: self.gather(v) if k == "weight" else v for k, v in self.head.state_dict().items()}

    def load_full_state_dict(self, state: dict) -> None:
        self.head.load_state_dict({k: self.shard(v) if k == "weight" else v for k, v in state.items()})

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

    def _take(self, rows: torch.Tensor) -> None:
        """rows -> self.rows, and head.weight[rows] copied into the leaf `sampled` (reused while k is constant)."""
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
        self.rows = rows

    def pin_sample(self, labels: torch.Tensor) -> None:
        """Choose this optimiser step's rows from the local labels of all its micro-batches (every rank calls it).

        Without it each forward samples afresh, which is right for one forward per optimiser step; with
        gradient accumulation the trainer pins one sample for all micro-batches, so `sampled.grad` sums
        gradients of the same rows. `end_step()` unpins.
        """
        if self.sample_rate < 1.0:
            self._take(self.sample(self.local_labels(all_gather_nograd(labels)))[0])
            self._pinned = True

    def end_step(self) -> None:
        """Forget the pinned sample (after the optimiser step)."""
        self._pinned = False

    def step_state(self, total: torch.Tensor, local: torch.Tensor) -> dict:
        """The head's step state from the global batch: norms (B,), and target cosines shared over ranks."""
        with torch.no_grad():
            x = total.detach()
            norms = x.norm(p=2, dim=1)
            valid = torch.ones_like(local, dtype=torch.bool)  # every class lives on some rank
            if getattr(self.head, "needs_target_cos", False):
                cos = all_reduce(target_cosines(x, self.head.weight.detach(), local))  # zero off-shard: SUM
            else:
                cos = torch.zeros_like(norms)
        return self.head.step_state(norms, cos, valid)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        total = all_gather_with_grad(embeddings)
        local = self.local_labels(all_gather_nograd(labels))
        state = self.step_state(total, local)
        weight = self.head.weight
        if self.sample_rate < 1.0:
            if not self._pinned:
                self._take(self.sample(local)[0])
            local = self.remap(self.rows, local)
            weight = self.sampled
        chunk = chunk_columns(self.chunk_size, total.shape[0], weight.shape[0])
        if chunk:
            loss = ChunkedMarginCrossEntropy.apply(total, weight, local, self.head, state, chunk)
        else:
            loss = DistCrossEntropy.apply(_float_logits(self.head.logits(total, weight, local, state)), local)
        # The regulariser is a per-sample mean: computed on local samples, DDP's averaging makes it global.
        return loss + self.head.regularizer(embeddings)

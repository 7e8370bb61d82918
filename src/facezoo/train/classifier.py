"""Class-sharded margin-softmax classifier with Partial FC sampling (model parallel over ranks).

Rank r holds class centres [start_r, end_r) (shard_range). Each step:
  1. embeddings and labels of the global batch are all-gathered (the embedding gather carries gradients);
  2. labels become columns of the local shard, -1 where the class lives on another rank;
  3. Partial FC (sample_rate < 1): the shard keeps every positive class of the global batch plus random
     negatives up to sample_rate * shard size; only those rows enter the logits, so only they get gradients;
  4. the head computes margin logits on its rows (Head.logits works on any subset of class rows);
  5. DistCrossEntropy: loss_i = log sum_j exp(z_ij) - z_iy over the columns of every rank, with one all-reduce
     MAX of the row maxima and one all-reduce SUM of the exp-sums and target probabilities.
With one process every collective is the identity and this is ordinary full-FC (or sampled) training.
"""

from __future__ import annotations

import torch
from torch import nn

from .distributed import World, all_gather_nograd, all_gather_with_grad, all_reduce, gather_rows, shard_range


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


class ShardedClassifier(nn.Module):
    """forward(local embeddings (b, D), local labels (b,)) -> the global-batch mean loss (same on every rank).

    `head` is a facezoo Head built for this rank's shard (num_classes = end - start); its buffers and any
    regulariser work as in single-process training.
    """

    def __init__(self, head: nn.Module, num_classes: int, world: World = World(), sample_rate: float = 1.0):
        super().__init__()
        if not 0.0 < sample_rate <= 1.0:
            from ..errors import ConfigError

            raise ConfigError(f"sample_rate must be in (0, 1], got {sample_rate}")
        self.head = head
        self.num_classes = num_classes
        self.start, self.end = shard_range(num_classes, world.rank, world.world_size)
        if head.weight.shape[0] != self.end - self.start:
            raise ValueError(f"head has {head.weight.shape[0]} rows, shard [{self.start}, {self.end}) needs "
                             f"{self.end - self.start}")
        self.sample_rate = sample_rate
        self.world = world

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

    def sample(self, local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Partial FC: row indices (every positive + random negatives) and labels remapped to those rows.

        Keeps max(#positives, int(sample_rate * shard size)) rows; negatives are drawn from the global RNG
        (the trainer seeds it per step, so runs and resumes repeat the same draws).
        """
        num_local = self.end - self.start
        num_sample = max(1, int(self.sample_rate * num_local))
        score = torch.rand(num_local, device=local.device)
        score[local[local >= 0]] = 2.0  # positives first
        keep = torch.topk(score, max(num_sample, int((score > 1.0).sum())), sorted=False).indices.sort().values
        remap = torch.full((num_local,), -1, dtype=local.dtype, device=local.device)
        remap[keep] = torch.arange(len(keep), dtype=local.dtype, device=local.device)
        return keep, torch.where(local >= 0, remap[local.clamp(min=0)], local)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        total = all_gather_with_grad(embeddings)
        local = self.local_labels(all_gather_nograd(labels))
        weight = self.head.weight
        if self.sample_rate < 1.0:
            rows, local = self.sample(local)
            weight = weight[rows]
        logits = self.head.logits(total, weight, local)
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()  # the softmax sums need float32
        # The regulariser is a per-sample mean: computed on local samples, DDP's averaging makes it global.
        return DistCrossEntropy.apply(logits, local) + self.head.regularizer(embeddings)

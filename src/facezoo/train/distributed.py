"""torch.distributed helpers: world info from torchrun's environment and autograd-aware collectives.

World size 1 needs no process group: every helper here is then the identity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def world_from_env() -> World:
    """RANK / WORLD_SIZE / LOCAL_RANK as torchrun sets them (defaults: one process)."""
    env = os.environ
    return World(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def init_distributed(world: World, device: torch.device) -> None:
    """Join the process group torchrun describes: NCCL for CUDA devices, gloo otherwise."""
    if world.distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def shard_range(num_classes: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, end) of the classes rank `rank` holds: C // W each, the remainder to the first ranks."""
    base, extra = divmod(num_classes, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


class _AllGather(torch.autograd.Function):
    """Concatenate every rank's (b, ...) tensor along dim 0 (equal b on every rank).

    Backward: sum the incoming gradients over ranks (each rank's loss term touched every sample), keep this
    rank's slice, and multiply by W to cancel DDP's averaging of backbone gradients over ranks, so the
    backbone receives d(global mean loss)/d(params) exactly as single-process training would.
    """

    @staticmethod
    def forward(ctx, x):
        world_size = dist.get_world_size()
        parts = [torch.empty_like(x) for _ in range(world_size)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.world_size, ctx.size = dist.get_rank(), world_size, x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.size : (ctx.rank + 1) * ctx.size] * ctx.world_size


class _AllGatherReplicated(_AllGather):
    """_AllGather for a loss every rank computes whole on the gathered batch (pairwise and batch-hard losses): each
    rank already holds the full gradient of that loss, so backward keeps this rank's slice and multiplies by W to
    cancel DDP's averaging (no collective)."""

    @staticmethod
    def backward(ctx, grad):
        return grad[ctx.rank * ctx.size : (ctx.rank + 1) * ctx.size] * ctx.world_size


def all_gather_replicated(x: torch.Tensor) -> torch.Tensor:
    """The global batch for a loss computed identically on every rank (see _AllGatherReplicated)."""
    return _AllGatherReplicated.apply(x) if dist.is_initialized() and dist.get_world_size() > 1 else x


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    return _AllGather.apply(x) if dist.is_initialized() and dist.get_world_size() > 1 else x


def all_gather_nograd(x: torch.Tensor) -> torch.Tensor:
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def all_reduce(x: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
    """In-place all-reduce when distributed; the identity otherwise."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(x, op=op)
    return x


def gather_rows(shard: torch.Tensor, num_rows: int, world: World) -> torch.Tensor:
    """Concatenate every rank's row shard (sizes from shard_range, possibly uneven) into the full tensor."""
    if not world.distributed:
        return shard
    most = shard_range(num_rows, 0, world.world_size)
    size = most[1] - most[0]
    padded = shard.new_zeros((size, *shard.shape[1:]))
    padded[: shard.shape[0]] = shard
    parts = [torch.empty_like(padded) for _ in range(world.world_size)]
    dist.all_gather(parts, padded)
    return torch.cat(
        [
            p[: e - s]
            for p, (s, e) in zip(parts, (shard_range(num_rows, r, world.world_size) for r in range(world.world_size)))
        ]
    )

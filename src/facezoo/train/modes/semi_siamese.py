"""Semi-siamese training (Du et al., "Semi-Siamese Training for Shallow Face Learning", ECCV 2020; FaceX-Zoo's SST).

For shallow data (about two images per identity), where a class-centre matrix learns little. Each micro-batch
holds P identities x 2 images (x1, x2) (IdentitySampler with K = 2). Two networks:
  probe P: the trained, deployable backbone (DDP-wrapped);
  gallery G: a momentum copy, G <- mu G + (1 - mu) P after each optimiser step (mu = 0.999), no gradient, its
    BatchNorm on batch statistics like the probe's (held in eval mode with the probe's under model.freeze=[bn]).
A queue of Q unit gallery features with their labels replaces the class centres. With p = P(x)/||P(x)||,
g = G(x)/||G(x)||, the W ranks' gallery features of the global batch are gathered and placed at the next W x P
queue positions t (the oldest entries); then for the probe side p1 against the gallery side g2 (and the swap):
  cos_ij = p1_i . q_j with q = queue, g2 written at t;  target column t_i (where g2_i sits);
  margin on the target: AM cos - m, or Arc cos(theta + m);  queue entries of the probe's identity from earlier
  steps are masked out (mask_same_identity: they are positives, not negatives);
  loss = (CE(s cos(p1, q[g2]), t) + CE(s cos(p2, q[g1]), t)) / 2, averaged over the probes.
Then one side's gallery features, g1 or g2 at random (a draw that is the same on every rank), are written at t
and the queue pointer moves on by W x P. Queue, labels, pointer and gallery network are checkpointed, so resume
is exact and does not depend on the world size; W ranks of P identities equal one process of W x P identities
(the same global batch), up to BatchNorm's per-rank batch statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from ...errors import ConfigError, ModelError
from ..distributed import all_gather_nograd, all_reduce
from . import MODES
from .parts import IdentityBatchMode

ARC_EPS = 1e-6  # cos clamped to [-1 + eps, 1 - eps] before arccos (finite gradient)


def margin_logits(cos: torch.Tensor, target: torch.Tensor, kind: str, s: float, m: float) -> torch.Tensor:
    """s * cos (B, N) with the margin on column target[i] of row i: AM cos - m, Arc cos(arccos(cos) + m)."""
    cos_y = cos.gather(1, target.unsqueeze(1)).squeeze(1)
    if kind == "am":
        cos_m = cos_y - m
    else:
        cos_m = torch.cos(torch.acos(cos_y.clamp(-1 + ARC_EPS, 1 - ARC_EPS)) + m)
    return s * cos.scatter(1, target.unsqueeze(1), cos_m.unsqueeze(1))


@dataclass
class SemiSiameseOptions:
    queue_size: int = 16384  # gallery features standing in for class centres (>= W x P of a micro-batch)
    momentum: float = 0.999  # mu of the gallery network's update
    margin: Literal["am", "arc"] = "am"
    s: float = 30.0
    m: float = 0.35
    mask_same_identity: bool = True  # leave earlier queue entries of a probe's identity out of its negatives


@MODES.register("semi_siamese")
class SemiSiamese(IdentityBatchMode):
    Config = SemiSiameseOptions

    def __init__(self, ctx, options: SemiSiameseOptions):
        super().__init__(ctx, options)
        cfg, w = ctx.cfg, ctx.world
        self.pairs = ctx.micro_batch // 2  # identities per micro-batch on this rank
        o = options
        if o.queue_size < self.pairs * w.world_size:
            raise ConfigError(
                f"semi_siamese.queue_size={o.queue_size} is smaller than the {self.pairs * w.world_size} identities "
                "of one micro-batch over all ranks; raise it (the paper uses 16384)"
            )
        if not 0.0 <= o.momentum < 1.0 or not o.s > 0 or not o.m >= 0:
            raise ConfigError(
                f"semi_siamese: momentum must be in [0, 1), s > 0 and m >= 0; got momentum={o.momentum}, s={o.s}, "
                f"m={o.m} (the paper: 0.999, 30, 0.35 with AM)"
            )
        self.setup_identity_batches("semi_siamese", 2)
        self.gallery = ctx.build_backbone()
        self.gallery.load_state_dict(self.backbone.state_dict())
        self.gallery.requires_grad_(False)
        g = torch.Generator().manual_seed(cfg.seed)
        queue = F.normalize(torch.randn(o.queue_size, cfg.model.embedding_size, generator=g), dim=1)
        self.queue = queue.to(ctx.device)  # (Q, D) unit vectors; random directions until filled
        self.queue_labels = torch.full((o.queue_size,), -1, dtype=torch.long, device=ctx.device)  # -1: none yet
        self.ptr = 0  # next queue position to write
        self.calls = 0  # micro-batches so far (seeds the side that is enqueued)

    def _pairs(self, x: torch.Tensor, labels: torch.Tensor, skipped: int):
        """(x1, x2, labels, valid) of the P pair slots: the batch is [a, a, b, b, ...]; after corrupt samples were
        dropped (skipped > 0, rare: one host sync) the complete pairs fill the slots, the rest repeat the first
        pair with valid False (so every rank still gathers P features)."""
        if not skipped:
            ones = torch.ones(self.pairs, dtype=torch.bool, device=x.device)
            return x[0::2], x[1::2], labels[0::2], ones
        y = labels.cpu().tolist()
        starts = [i for i in range(len(y) - 1) if y[i] == y[i + 1] and (i == 0 or y[i - 1] != y[i])]
        kept = len(starts)
        first = (starts + [0] * self.pairs)[: self.pairs] if kept else [0] * self.pairs
        a = torch.tensor(first, device=x.device)
        b = torch.tensor([i + 1 if kept else i for i in first], device=x.device).clamp(max=len(y) - 1)
        valid = torch.arange(self.pairs, device=x.device) < kept
        return x[a], x[b], labels[a], valid

    # ---- the loss ------------------------------------------------------------------------------------------
    def _side(self, p, gallery_all, where, target, y, queue_labels):
        """Per-probe CE of probes p (P, D) against the queue with gallery_all (W P, D) written at `where`."""
        o = self.options
        cos = (p @ self.queue.t()).index_copy(1, where, p @ gallery_all.t()).clamp(-1.0, 1.0)
        logits = margin_logits(cos, target, o.margin, o.s, o.m)
        if o.mask_same_identity:
            same = (queue_labels.unsqueeze(0) == y.unsqueeze(1)).scatter(1, target.unsqueeze(1), False)
            logits = logits.masked_fill(same, float("-inf"))
        return F.cross_entropy(logits, target, reduction="none")

    def loss(self, batch, generator):
        ctx, w = self.ctx, self.ctx.world
        x, labels = ctx.prepare(batch, generator)
        x1, x2, y, valid = self._pairs(x, labels, batch["skipped"])
        both = torch.cat([x1, x2])
        with ctx.autocast():
            p = self.model(both)  # one forward of both sides (DDP: one forward per backward)
            with torch.no_grad():
                g = self.gallery(both)
        p, g = F.normalize(p.float(), dim=1), F.normalize(g.float(), dim=1)
        n = self.pairs
        g1, g2 = all_gather_nograd(g[:n]), all_gather_nograd(g[n:])
        y_all = all_gather_nograd(y)
        where = (self.ptr + torch.arange(n * w.world_size, device=x.device)) % len(self.queue)
        target = where[w.rank * n : (w.rank + 1) * n]
        queue_labels = self.queue_labels.index_copy(0, where, y_all)
        per_probe = 0.5 * (
            self._side(p[:n], g2, where, target, y, queue_labels)
            + self._side(p[n:], g1, where, target, y, queue_labels)
        )
        self._enqueue(g1, g2, y_all, where)
        local = (per_probe * valid).sum() / valid.sum().clamp(min=1)
        # the value is the global batch's mean (what is logged); the gradient is the local mean's, which DDP averages
        totals = all_reduce(torch.stack([(per_probe * valid).sum(), valid.sum().to(per_probe.dtype)]).detach())
        return local + (totals[0] / totals[1].clamp(min=1) - local).detach()

    @torch.no_grad()
    def _enqueue(self, g1, g2, labels, where):
        """Write one side's gallery features (the same side on every rank) at `where`; a non-finite batch is not
        written (skip_nonfinite), with no host sync."""
        draw = torch.rand((), generator=torch.Generator().manual_seed(self.ctx.cfg.seed * 1_000_003 + self.calls))
        side = g1 if float(draw) < 0.5 else g2  # a CPU draw: no device sync
        finite = torch.isfinite(side).all()
        self.queue = torch.where(finite, self.queue.index_copy(0, where, side), self.queue)
        self.queue_labels = torch.where(finite, self.queue_labels.index_copy(0, where, labels), self.queue_labels)
        self.ptr = (self.ptr + len(where)) % len(self.queue)
        self.calls += 1

    @torch.no_grad()
    def end_step(self):
        """G <- mu G + (1 - mu) P over the parameters (lerp by 1 - mu)."""
        gallery = list(self.gallery.parameters())
        probe = [t.detach() for t in self.backbone.parameters()]
        torch._foreach_lerp_(gallery, probe, 1.0 - self.options.momentum)

    # ---- state ---------------------------------------------------------------------------------------------
    def state_dict(self):
        return {
            "gallery": self.gallery.state_dict(),
            "queue": self.queue,
            "queue_labels": self.queue_labels,
            "ptr": self.ptr,
            "calls": self.calls,
        }

    def check_resume(self, state, path):
        queue = state.get("queue")
        if queue is None or tuple(queue.shape) != tuple(self.queue.shape):
            shape = None if queue is None else tuple(queue.shape)
            raise ModelError(
                f"{path}: its queue has shape {shape}, this run's is {tuple(self.queue.shape)}; resume needs the same "
                "semi_siamese.queue_size and model.embedding_size (or use a new output folder)"
            )

    def load_state_dict(self, state):
        self.gallery.load_state_dict(state["gallery"])
        self.queue = state["queue"].to(self.ctx.device)
        self.queue_labels = state["queue_labels"].to(self.ctx.device)
        self.ptr, self.calls = int(state["ptr"]), int(state["calls"])

    def describe(self):
        cfg, o, s = self.ctx.cfg, self.options, self.sampler
        kind = "AM" if o.margin == "am" else "Arc"
        return (
            f"probe {cfg.model.backbone} + momentum gallery (mu {o.momentum}), queue {o.queue_size}, {kind} s {o.s} "
            f"m {o.m}, on {len(s.identities)} identities of >= 2 images ({s.excluded} with fewer left out), "
            f"{self.pairs} pairs per micro-batch"
        )

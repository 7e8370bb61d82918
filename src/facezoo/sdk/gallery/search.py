"""Exact gallery search: blockwise cosine scores (torch matmul + topk, any device) over the in-memory gallery.

Scores are cosine similarities: both the stored vectors and the queries are L2-normalised, so score = q . g.
Memory is bounded by blocks: each (queries x gallery rows) score block holds at most `budget` elements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch


class Match(NamedTuple):
    """One search hit: the identity, its cosine score and the source (e.g. image path) of the matching entry."""

    identity: str
    score: float
    source: str | None


@dataclass
class Cache:
    """The gallery in memory, entries grouped by identity: vectors (M, D) on `device`, labels (M,) identity index."""

    vectors: np.ndarray  # (M, D) float32, CPU (faiss input; shares memory with `matrix` on CPU)
    matrix: torch.Tensor  # (M, D) float32 on device
    labels: torch.Tensor  # (M,) int64 on device: index into `names`
    labels_np: np.ndarray
    names: list[str]
    sources: list[str | None]
    device: str
    ids: np.ndarray | None = None  # (M,) int64 entry ids (the faiss index's ids)
    _order: np.ndarray | None = None

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Row index of each entry id in `ids` (any shape); -1 for -1 and for ids not in this gallery."""
        if self._order is None:
            self._order = np.argsort(self.ids, kind="stable")
        ordered = self.ids[self._order]
        pos = np.clip(np.searchsorted(ordered, ids), 0, max(0, len(ordered) - 1))
        found = (ids >= 0) & (len(ordered) > 0) & (ordered[pos] == ids) if len(ordered) else np.zeros(ids.shape, bool)
        return np.where(found, self._order[pos] if len(ordered) else -1, -1)


def top_entries(cache: Cache, q: torch.Tensor, k: int, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k entries per query: (Q, k) scores and row indices, merging per-block top-k over gallery blocks."""
    m = cache.matrix.shape[0]
    best_s = torch.full((q.shape[0], 0), -math.inf, device=q.device)
    best_i = torch.zeros((q.shape[0], 0), dtype=torch.int64, device=q.device)
    for start in range(0, m, block):
        sims = q @ cache.matrix[start : start + block].T
        s, i = sims.topk(min(k, sims.shape[1]), dim=1)
        best_s, pos = torch.cat([best_s, s], 1).topk(min(k, best_s.shape[1] + s.shape[1]), dim=1)
        best_i = torch.cat([best_i, i + start], 1).gather(1, pos)
    return best_s, best_i


def top_identities(cache: Cache, q: torch.Tensor, k: int, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k identities per query by best entry score: (Q, k) scores and the row index of each best entry.

    Per gallery block: block max per identity by scatter-reduce (amax), the entry achieving it by a second
    scatter over rows equal to that max; then a running elementwise max over blocks.
    """
    n_ids, m = len(cache.names), cache.matrix.shape[0]
    nq = q.shape[0]
    best = torch.full((nq, n_ids), -math.inf, device=q.device)
    arg = torch.zeros((nq, n_ids), dtype=torch.int64, device=q.device)
    for start in range(0, m, block):
        sims = q @ cache.matrix[start : start + block].T
        lbl = cache.labels[start : start + block].expand(nq, -1)
        bmax = torch.full_like(best, -math.inf).scatter_reduce_(1, lbl, sims, "amax")
        rows = torch.arange(start, start + sims.shape[1], device=q.device).expand(nq, -1)
        cand = torch.where(sims == bmax.gather(1, lbl), rows, torch.full_like(rows, -1))
        barg = torch.full_like(arg, -1).scatter_reduce_(1, lbl, cand, "amax")
        better = bmax > best
        best = torch.where(better, bmax, best)
        arg = torch.where(better, barg, arg)
    s, ids = best.topk(min(k, n_ids), dim=1)
    return s, arg.gather(1, ids)


def exact_search(cache: Cache, q: np.ndarray, k: int, per_identity: bool, budget: int) -> list[list[Match]]:
    """Top-k matches of normalised queries q (Q, D): one per identity (its best entry), or the top-k entries."""
    m, n_ids = cache.matrix.shape[0], len(cache.names)
    block = min(m, max(1, budget // 64))  # gallery rows per block
    qb = max(1, budget // max(1, max(block, n_ids if per_identity else k)))  # queries per block
    out: list[list[Match]] = []
    for start in range(0, q.shape[0], qb):
        qt = torch.from_numpy(q[start : start + qb]).to(cache.device)
        top = top_identities if per_identity else top_entries
        s, rows = top(cache, qt, k, block)
        out.extend(matches(cache, s.cpu().numpy(), rows.cpu().numpy()))
    return out


def matches(cache: Cache, scores: np.ndarray, rows: np.ndarray) -> list[list[Match]]:
    """(Q, k) scores and gallery rows -> Match lists; rows < 0 (no hit) are dropped."""
    lab = cache.labels_np
    return [
        [Match(cache.names[lab[r]], float(s), cache.sources[r]) for s, r in zip(srow, rrow) if r >= 0]
        for srow, rrow in zip(scores, rows)
    ]

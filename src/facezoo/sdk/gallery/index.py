"""Approximate gallery search with faiss (an optional dependency): IVF or HNSW inner-product indexes, and the
recall@k that measures one against exact search."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ...errors import ConfigError
from .search import Cache, Match, matches, top_entries

INDEX_KINDS = ("exact", "ivf", "hnsw")
APPROXIMATE = ("ivf", "hnsw")
# faiss's own defaults, except nprobe (16, not 1) and efSearch (128, not 16): see Gallery.build_index
DEFAULT_PARAMS = {"nlist": None, "nprobe": 16, "hnsw_m": 32, "ef_search": 128, "ef_construction": 40}


def import_faiss(kind: str):
    """Import faiss lazily (an optional dependency); ConfigError saying how to install it if absent."""
    try:
        import faiss
    except ImportError:
        raise ConfigError(
            f"index='{kind}' needs faiss, which is not installed. Install it with `pip install faiss-cpu` "
            "(or faiss-gpu), or use index='exact'."
        ) from None
    return faiss


def check_params(**params) -> dict:
    """The parameters, each None or a positive int (else ConfigError naming it)."""
    for name, value in params.items():
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name} must be a positive int, got {value!r}.")
    return params


@dataclass
class AnnIndex:
    """A faiss index over a Cache's rows, built lazily, with the parameters to rebuild it after a change."""

    kind: str
    params: dict = field(default_factory=lambda: dict(DEFAULT_PARAMS))
    index: object = None

    def build(self, cache: Cache):
        """The faiss index for `cache`, built when missing (the gallery drops it when it changes)."""
        if self.index is not None:
            return self.index
        faiss = import_faiss(self.kind)
        x, p = cache.vectors, self.params
        m, d = x.shape
        if self.kind == "ivf":
            nlist = p["nlist"] or int(4 * math.sqrt(m))
            nlist = max(1, min(nlist, m // 39 if m >= 39 else 1))
            quantizer = faiss.IndexFlatIP(d)
            idx = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(0)
            sample = x if m <= 256 * nlist else x[np.sort(rng.choice(m, 256 * nlist, replace=False))]
            idx.train(np.ascontiguousarray(sample))
            idx.nprobe = min(p["nprobe"], nlist)  # faiss's wrapper keeps `quantizer` referenced by `idx`
        else:
            idx = faiss.IndexHNSWFlat(d, p["hnsw_m"], faiss.METRIC_INNER_PRODUCT)
            idx.hnsw.efConstruction = p["ef_construction"]
            idx.hnsw.efSearch = p["ef_search"]
        idx.add(x)
        self.index = idx
        return idx

    def top(self, cache: Cache, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, k) approximate scores and rows (-1 where fewer were found) of normalised queries q (Q, D)."""
        idx = self.build(cache)
        return idx.search(np.ascontiguousarray(q, dtype=np.float32), min(k, cache.vectors.shape[0]))

    def search(self, cache: Cache, q: np.ndarray, k: int, per_identity: bool) -> list[list[Match]]:
        """Top-k matches per query: entries, or one per identity (its best entry found)."""
        if not per_identity:
            return matches(cache, *self.top(cache, q, k))
        # several entries may share an identity: over-fetch, keep each identity's first (best) hit
        scores, rows = self.top(cache, q, k * 8)
        out = []
        for srow, rrow in zip(scores, rows):
            seen: set[int] = set()
            hits = []
            for s, r in zip(srow, rrow):
                if r < 0 or cache.labels_np[r] in seen:
                    continue
                seen.add(cache.labels_np[r])
                hits.append(Match(cache.names[cache.labels_np[r]], float(s), cache.sources[r]))
                if len(hits) == k:
                    break
            out.append(hits)
        return out


def recall_at_k(ann: AnnIndex, cache: Cache, q: np.ndarray, k: int) -> float:
    """Mean over queries of |approximate top-k  intersect  exact top-k| / k (entries, not identities)."""
    _, exact = top_entries(cache, torch.from_numpy(q).to(cache.device), k, 1 << 16)
    _, approx = ann.top(cache, q, k)
    exact = exact.cpu().numpy()
    hits = [len(set(e.tolist()) & set(a[a >= 0].tolist())) for e, a in zip(exact, approx)]
    return float(np.mean(hits)) / k

"""Approximate gallery search with faiss (an optional dependency): IVF or HNSW inner-product indexes over the
gallery's entry ids, saved beside the gallery, and the recall@k that measures one against exact search.

On disk: GALLERY.faiss, written atomically (temp file, fsync, rename: a kill leaves the old file or none), holding
MAGIC, an 8-byte little-endian manifest length, the JSON manifest, then faiss's serialised index. The manifest ties
the index to one state of one gallery: its gallery_id (a UUID in the gallery file) and content_version (a counter
every write transaction of the gallery moves on), with the kind, parameters, entries, dimension, the payload's
length and CRC-32. An index whose manifest does not match the gallery's current state is stale and never used.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...errors import ConfigError, DataError
from ...io import atomic_write
from .search import Cache, Match, matches, top_entries

INDEX_KINDS = ("exact", "ivf", "hnsw")
APPROXIMATE = ("ivf", "hnsw")
# faiss's own defaults, except nprobe (16, not 1) and efSearch (128, not 16): see Gallery.build_index
DEFAULT_PARAMS = {"nlist": None, "nprobe": 16, "hnsw_m": 32, "ef_search": 128, "ef_construction": 40}
MAGIC = b"facezoo-faiss-index 1\n"
SUFFIX = ".faiss"


def import_faiss(kind: str):
    """Import faiss lazily (an optional dependency); ConfigError saying how to install it if absent."""
    try:
        import faiss
    except ImportError:
        raise ConfigError(
            f"a '{kind}' index (--kind {kind}, index='{kind}') needs faiss, which is not installed. Install it with "
            "`pip install faiss-cpu` (or faiss-gpu), or search exactly (index='exact')."
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
    """A faiss index over a Cache's entry ids, built lazily, with the parameters to rebuild it after a change and
    the gallery state (gallery_id, content_version) it reflects."""

    kind: str
    params: dict = field(default_factory=lambda: dict(DEFAULT_PARAMS))
    index: object = None
    version: int | None = None
    recall: dict | None = None  # the last recall@k measured against exact search: {"k", "queries", "recall"}

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
            hnsw = faiss.IndexHNSWFlat(d, p["hnsw_m"], faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = p["ef_construction"]
            hnsw.hnsw.efSearch = p["ef_search"]
            idx = faiss.IndexIDMap(hnsw)
        idx.add_with_ids(np.ascontiguousarray(x), np.ascontiguousarray(cache.ids, dtype=np.int64))
        self.index = idx
        return idx

    def update(self, added: tuple[np.ndarray, np.ndarray] | None, removed: np.ndarray | None) -> bool:
        """Apply a gallery change in place: added (vectors (N, D), ids (N,)), removed ids. False when this kind
        cannot (HNSW graphs do not delete: rebuilt instead)."""
        if self.index is None:
            return False
        if removed is not None and len(removed):
            if self.kind != "ivf":
                return False
            self.index.remove_ids(np.ascontiguousarray(removed, dtype=np.int64))
        if added is not None and len(added[1]):
            vectors, ids = added
            self.index.add_with_ids(np.ascontiguousarray(vectors), np.ascontiguousarray(ids, dtype=np.int64))
        return True

    def top(self, cache: Cache, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, k) approximate scores and rows (-1 where fewer were found) of normalised queries q (Q, D)."""
        idx = self.build(cache)
        scores, ids = idx.search(np.ascontiguousarray(q, dtype=np.float32), min(k, cache.vectors.shape[0]))
        return scores, cache.rows_of(ids)

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

    # ------------------------------------------------------------------ on disk

    def save(self, path: Path, gallery_id: str, entries: int, dim: int) -> None:
        """Write the index and its manifest atomically to `path`; DataError naming it when the write fails (the
        previous file, if any, is left as it was)."""
        faiss = import_faiss(self.kind)
        payload = faiss.serialize_index(self.index).tobytes()
        manifest = {
            "format": "facezoo-faiss-index",
            "gallery_id": gallery_id,
            "content_version": self.version,
            "kind": self.kind,
            "params": self.params,
            "entries": entries,
            "dim": dim,
            "bytes": len(payload),
            "crc32": zlib.crc32(payload),
            "recall": self.recall,
        }
        head = json.dumps(manifest).encode()
        try:
            with atomic_write(path) as f:
                f.write(MAGIC + struct.pack("<Q", len(head)) + head)
                f.write(payload)
        except OSError as e:
            full = (
                " (the disk is full: free space and rebuild with `facezoo gallery index`)"
                if e.errno in (errno.ENOSPC, errno.EDQUOT)
                else ""
            )
            raise DataError(
                f"{path}: cannot write the gallery's index ({e.strerror or e}){full}; the gallery itself is unchanged "
                "and searches exactly until the index is rebuilt."
            ) from None


def read_manifest(path: Path) -> tuple[dict, int] | None:
    """(manifest, payload offset) of an index file, or None when it is absent or not one."""
    try:
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                return None
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 1 << 20:
                return None
            return json.loads(f.read(n)), len(MAGIC) + 8 + n
    except (OSError, ValueError, struct.error):
        return None


def load_index(path: Path, gallery_id: str, version: int, dim: int) -> AnnIndex | None:
    """The index saved at `path` when it matches the gallery's current state (id, content version, dimension)
    and its payload is whole (length, CRC-32); None otherwise (stale, damaged or absent: rebuild it)."""
    found = read_manifest(path)
    if found is None:
        return None
    manifest, offset = found
    if (manifest.get("gallery_id"), manifest.get("content_version"), manifest.get("dim")) != (gallery_id, version, dim):
        return None
    kind = manifest.get("kind")
    if kind not in APPROXIMATE:
        return None
    faiss = import_faiss(kind)
    with open(path, "rb") as f:
        f.seek(offset)
        payload = f.read()
    if len(payload) != manifest.get("bytes") or zlib.crc32(payload) != manifest.get("crc32"):
        return None
    index = faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8))
    params = {**DEFAULT_PARAMS, **(manifest.get("params") or {})}
    return AnnIndex(kind, params, index, version, manifest.get("recall"))


def remove_index(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def recall_at_k(ann: AnnIndex, cache: Cache, q: np.ndarray, k: int) -> float:
    """Mean over queries of |approximate top-k  intersect  exact top-k| / k (entries, not identities)."""
    _, exact = top_entries(cache, torch.from_numpy(q).to(cache.device), k, 1 << 16)
    _, approx = ann.top(cache, q, k)
    exact = exact.cpu().numpy()
    hits = [len(set(e.tolist()) & set(a[a >= 0].tolist())) for e, a in zip(exact, approx)]
    return float(np.mean(hits)) / k

"""The gallery's faiss index over its life: built on demand, saved beside the gallery (GALLERY.faiss, index.py),
loaded by every process that opens the gallery while it matches the gallery's state, updated in place by this
process's writes, rebuilt when stale. A mixin of store.Gallery (it uses the store's lock, metadata and cache).
"""

from __future__ import annotations

import logging
import uuid

import numpy as np

from ...errors import ConfigError, DataError
from .index import (
    APPROXIMATE,
    DEFAULT_PARAMS,
    INDEX_KINDS,
    AnnIndex,
    check_params,
    import_faiss,
    load_index,
    read_manifest,
    recall_at_k,
    remove_index,
)

log = logging.getLogger("facezoo.gallery")


class IndexedGallery:
    """build_index, recall_at_k, index_info and the index bookkeeping of add / remove / search."""

    def _state(self) -> tuple[str | None, int]:
        """(gallery_id, content_version) now."""
        return self._meta("gallery_id"), int(self._meta("content_version") or 0)

    def _index(self, kind: str | None) -> AnnIndex:
        """The current faiss index: in memory, else loaded from index_path when its manifest matches this
        gallery's state, else rebuilt (same kind and parameters as the stale one, or `kind`/ivf defaults) and
        saved. A stale index is never searched."""
        gallery_id, version = self._state()
        cache = self._load()
        dim = cache.vectors.shape[1]
        ann = self._ann
        if ann is not None and ann.version == version and ann.index is not None and kind in (None, ann.kind):
            return ann
        if gallery_id is not None:
            loaded = load_index(self.index_path, gallery_id, version, dim)
            if loaded is not None and kind in (None, loaded.kind):
                self._ann = loaded
                return loaded
        if ann is None or kind not in (None, ann.kind):
            manifest = (read_manifest(self.index_path) or ({},))[0]
            old = kind or manifest.get("kind") or "ivf"
            params = manifest.get("params") if manifest.get("kind") == old else None
            ann = AnnIndex(old, {**DEFAULT_PARAMS, **(params or {})})
        import_faiss(ann.kind)
        ann.index, ann.version = None, version
        ann.build(cache)
        self._ann = ann
        self._save(ann)
        return ann

    def _save(self, ann: AnnIndex) -> None:
        """Write `ann` to index_path (atomically, outside any transaction); an older file first gets a gallery_id."""
        gallery_id = self._meta("gallery_id")
        if gallery_id is None:
            gallery_id = str(uuid.uuid4())
            with self._transaction():
                self._set_meta("gallery_id", gallery_id)
        ann.save(self.index_path, gallery_id, int(ann.index.ntotal), int(ann.index.d))

    def _update_index(self, before: tuple, after: int, added, removed) -> None:
        """After this process's write moved the gallery from state `before` to version `after`: update the saved
        index in place (IVF: add and remove; HNSW: add) when it reflected `before`, else leave it stale (rebuilt
        on its next use). A failure here never undoes the committed write."""
        gallery_id, version = before
        ann = self._ann
        if ann is None or ann.version != version or ann.index is None:
            if gallery_id is None or not self.index_path.exists():
                return
            try:
                ann = load_index(self.index_path, gallery_id, version, self.embedding_size or 0)
            except ConfigError:
                return
            if ann is None:
                return
        if not ann.update(added, np.asarray(removed, np.int64)):
            ann.index = None  # rebuilt on the next approximate search
            self._ann = ann
            return
        ann.version, ann.recall, self._ann = after, None, ann
        try:
            self._save(ann)
        except DataError as e:  # the gallery write is committed; the saved index is merely stale now
            log.warning("%s", e)

    def build_index(
        self,
        kind: str = "ivf",
        nlist: int | None = None,
        nprobe: int = 16,
        hnsw_m: int = 32,
        ef_search: int = 128,
        ef_construction: int = 40,
    ) -> None:
        """Build an approximate inner-product index (faiss) over the gallery and save it beside it (index_path);
        searches use it from index_threshold entries up (any size with index='ivf'/'hnsw').

        ivf: k-means into nlist cells (default 4 sqrt(M), at most M/39) searched nprobe at a time; hnsw: a graph
        with hnsw_m links per node, built with ef_construction candidates (faiss's 40; 128 lifts recall@10 on
        clustered face galleries from about 0.98 to 1.0 at four times the build time, and matters more past
        100k faces: benchmarks/RESULTS.md) and searched with ef_search. kind='exact' drops the index (and its
        file). Kept current by this process's adds and removes, rebuilt with the same parameters when stale.
        """
        if kind not in INDEX_KINDS:
            raise ConfigError(f"unknown index kind '{kind}'; choose one of {', '.join(INDEX_KINDS)}.")
        with self._lock:
            if kind == "exact":
                self._ann = None
                remove_index(self.index_path)
                return
            import_faiss(kind)
            params = check_params(
                nprobe=nprobe, hnsw_m=hnsw_m, ef_search=ef_search, ef_construction=ef_construction, nlist=nlist
            )
            ann = AnnIndex(kind, params)
            ann.version = self._state()[1]
            ann.build(self._load())
            self._ann = ann
            self._save(ann)

    def index_info(self) -> dict | None:
        """The saved index's manifest (kind, params, entries, recall, ...) plus "current": whether it matches the
        gallery's state; None without one."""
        found = read_manifest(self.index_path)
        if found is None:
            return None
        manifest = found[0]
        with self._lock:
            state = self._state()
        current = (manifest.get("gallery_id"), manifest.get("content_version")) == state
        keys = ("kind", "params", "entries", "content_version", "recall")
        return {"path": str(self.index_path), **{k: manifest.get(k) for k in keys}, "current": current}

    def recall_at_k(self, queries, k: int = 10, index: str | None = None) -> float:
        """Mean over queries of |approximate top-k  intersect  exact top-k| / k (entries, not identities), of the
        index searches use (recorded in its manifest)."""
        with self._lock:
            kind = index or (self._ann.kind if self._ann is not None else None)
            if kind not in APPROXIMATE:
                raise ConfigError("recall_at_k measures an approximate index: call build_index('ivf' or 'hnsw') first.")
            cache = self._load()
            q = self._queries(queries, cache.vectors.shape[1])
            k = min(k, cache.vectors.shape[0])
            if k == 0:
                raise ConfigError(f"{self.path}: the gallery is empty; add embeddings before measuring recall.")
            ann = self._index(kind)
            recall = recall_at_k(ann, cache, q, k)
            ann.recall = {"k": k, "queries": int(q.shape[0]), "recall": round(recall, 6)}
            self._save(ann)
            return recall

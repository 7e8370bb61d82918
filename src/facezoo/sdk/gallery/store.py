"""The gallery store: L2-normalised face embeddings in one SQLite file, with an in-memory copy for search.

Storage: one SQLite database (standard library sqlite3) with tables `meta` (format, embedding size, model key),
`identities` (name) and `entries` (identity, source, vector as little-endian float32 blob). Every write runs in one
transaction in rollback-journal mode with synchronous=FULL, so a crash or an exception mid-write leaves the previous
state: SQLite rolls a hot journal back the next time the file is opened. At rest the gallery is the single file.
Search runs on a copy in memory (search.Cache), reloaded when any process commits a change; each loaded vector is
checked (length, finite, unit norm), so a tampered blob is one DataError naming the entry, never a wrong answer.
Each write transaction moves `content_version` on; a faiss index saved beside the file (GALLERY.faiss, index.py)
records the version it reflects, is updated in place by this process's writes, and is rebuilt when stale. Searches
with index='auto' use it from index_threshold entries up (default 20,000), exact search below.
A write that fails (disk full, I/O error) rolls back and is one DataError naming the file: the gallery is unchanged.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ...errors import ConfigError, DataError, FacezooError
from ...io import remove_stale
from .index import APPROXIMATE, INDEX_KINDS, SUFFIX, AnnIndex
from .indexed import IndexedGallery
from .search import Cache, Match, exact_search
from .vectors import as_matrix, check_identity, decode_rows, normalise, unknown_identity

log = logging.getLogger("facezoo.gallery")
INDEX_THRESHOLD = 20_000  # entries from which search(index="auto") uses the faiss index (exact below)

FORMAT = "facezoo-gallery"
FORMAT_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS identities (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY,
    identity_id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    source TEXT,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_identity ON entries(identity_id);
"""


class Entry(NamedTuple):
    """One stored embedding: its row id, identity, source and the L2-normalised (D,) float32 vector."""

    id: int
    identity: str
    source: str | None
    embedding: np.ndarray


def _blob(vec: np.ndarray) -> bytes:
    """A (D,) vector as little-endian float32 bytes."""
    return vec.astype("<f4", copy=False).tobytes()


class Gallery(IndexedGallery):
    """An identity gallery of L2-normalised embeddings stored in one SQLite file. Open with Gallery.open(path)."""

    def __init__(self, conn: sqlite3.Connection, path: Path, device: str, index_threshold: int | None = None):
        self._conn = conn
        self.path = path
        self.index_path = path.with_name(path.name + SUFFIX)
        self.device = device
        self.index_threshold = INDEX_THRESHOLD if index_threshold is None else index_threshold
        self._lock = threading.RLock()
        self._cache: Cache | None = None
        self._version: int | None = None
        self._ann: AnnIndex | None = None

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        path,
        embedding_size: int | None = None,
        create: bool = True,
        model_key: str | None = None,
        device: str | torch.device = "cpu",
        index_threshold: int | None = None,
    ) -> Gallery:
        """Open (or create) the gallery at `path`.

        embedding_size: D, checked against the file (set on the first add when None). model_key: the embedding
        model's identity (checkpoint sha256 or name); a gallery built by another model raises ConfigError, since
        cosine scores between two models' embeddings are meaningless. device: where search runs.
        index_threshold: entries from which search(index='auto') uses the faiss index (default 20,000).
        """
        path = Path(path)
        if index_threshold is not None and (not isinstance(index_threshold, int) or index_threshold < 0):
            raise ConfigError(f"index_threshold must be a non-negative int, got {index_threshold!r}.")
        if embedding_size is not None and (not isinstance(embedding_size, int) or embedding_size < 1):
            raise ConfigError(f"embedding_size must be a positive int, got {embedding_size!r}.")
        exists = path.exists()
        if not exists and not create:
            raise DataError(
                f"{path}: no gallery there. Check the path, or create one with `facezoo gallery enroll {path} FOLDER` "
                "or `facezoo gallery add` (Gallery.open(path, create=True) in Python)."
            )
        if exists and path.is_dir():
            raise DataError(f"{path}: is a folder; a gallery is a single file (e.g. gallery.db).")
        if not exists:
            path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(path.with_name(path.name + SUFFIX))  # temp files of an index write that was killed
        conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            gallery = cls(conn, path, str(torch.device(device)), index_threshold)
            gallery._init(exists, embedding_size, model_key)
        except sqlite3.DatabaseError as e:
            conn.close()
            raise DataError(
                f"{path}: not a readable facezoo gallery ({e}). Check the path or rebuild the gallery."
            ) from None
        except BaseException:
            conn.close()
            raise
        return gallery

    def _init(self, exists: bool, embedding_size: int | None, model_key: str | None) -> None:
        """Set pragmas, create the schema in a new file, check format / size / model key in an existing one."""
        c = self._conn
        c.execute("PRAGMA journal_mode=DELETE")  # one file at rest (WAL would add -wal/-shm files)
        c.execute("PRAGMA synchronous=FULL")
        c.execute("PRAGMA foreign_keys=ON")
        with self._transaction():
            tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if exists and tables and "meta" not in tables:
                raise DataError(f"{self.path}: an SQLite file but not a facezoo gallery. Choose another path.")
            if not tables:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    c.execute(statement)
                c.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [
                        ("format", FORMAT),
                        ("format_version", str(FORMAT_VERSION)),
                        ("gallery_id", str(uuid.uuid4())),
                        ("content_version", "0"),
                    ],
                )
            meta = dict(c.execute("SELECT key, value FROM meta"))
            if meta.get("format") != FORMAT:
                raise DataError(f"{self.path}: not a facezoo gallery (format {meta.get('format')!r}).")
            if int(meta.get("format_version", 0)) > FORMAT_VERSION:
                raise DataError(
                    f"{self.path}: gallery format version {meta['format_version']} is newer than this facezoo "
                    f"understands ({FORMAT_VERSION}). Upgrade facezoo."
                )
            if embedding_size is not None:
                self._claim_size(embedding_size)
            if model_key is not None:
                self._check_model_key(meta.get("model_key"), str(model_key))

    def _check_model_key(self, stored: str | None, model_key: str) -> None:
        if stored is None:
            if self._count() > 0:
                raise ConfigError(
                    f"{self.path}: the gallery has entries but no recorded model key, so it cannot be checked against "
                    f"model '{model_key}'. Re-enroll into a new gallery file (or open it without model_key in Python)."
                )
            self._set_meta("model_key", model_key)
        elif stored != model_key:
            raise ConfigError(
                f"{self.path}: the gallery was built with model '{stored}' but is opened with model '{model_key}'; "
                "embeddings of different models cannot be compared. Use the same model, or a new gallery file."
            )

    def _set_meta(self, key: str, value: str) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def _meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    @contextlib.contextmanager
    def _transaction(self):
        """BEGIN IMMEDIATE ... COMMIT; ROLLBACK on any exception (the previous state stays intact). A failed write
        (disk full, I/O error, a locked file) is one DataError naming the file."""
        with self._lock:
            if self._conn is None:
                raise FacezooError(f"{self.path}: the gallery is closed; open it again with Gallery.open().")
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                    self._conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already (SQLITE_FULL)
                        self._conn.execute("ROLLBACK")
                    raise
            except (sqlite3.OperationalError, OSError) as e:
                full = (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)) or "full" in str(e)
                hint = "free disk space and retry" if full else "check the file, its folder and the disk, and retry"
                raise DataError(
                    f"{self.path}: writing the gallery failed ({e}); nothing was written, the gallery is unchanged. "
                    f"{hint[0].upper() + hint[1:]}."
                ) from None

    def _bump(self) -> int:
        """Move content_version on inside a write transaction (and give an older file its gallery_id)."""
        if self._meta("gallery_id") is None:
            self._set_meta("gallery_id", str(uuid.uuid4()))
        version = int(self._meta("content_version") or 0) + 1
        self._set_meta("content_version", str(version))
        return version

    @property
    def content_version(self) -> int:
        """The counter every write transaction moves on (0 for a new gallery)."""
        return int(self._meta_read("content_version") or 0)

    def close(self) -> None:
        """Close the file; the gallery cannot be used afterwards."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._invalidate()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise FacezooError(f"{self.path}: the gallery is closed; open it again with Gallery.open().")
        return self._conn

    # ------------------------------------------------------------------ metadata and listing

    @property
    def embedding_size(self) -> int | None:
        """D, or None before the first add."""
        value = self._meta_read("embedding_size")
        return None if value is None else int(value)

    @property
    def model_key(self) -> str | None:
        """The embedding model's identity recorded in the file, or None."""
        return self._meta_read("model_key")

    def _meta_read(self, key: str) -> str | None:
        with self._lock:
            self._db()
            return self._meta(key)

    def identities(self) -> list[str]:
        """Identity names, sorted."""
        with self._lock:
            return [r[0] for r in self._db().execute("SELECT name FROM identities ORDER BY name")]

    def _count(self, identity: str | None = None) -> int:
        if identity is None:
            return self._db().execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        sql = "SELECT COUNT(*) FROM entries JOIN identities i ON i.id = identity_id WHERE i.name=?"
        return self._db().execute(sql, (identity,)).fetchone()[0]

    def count(self, identity: str | None = None) -> int:
        """Number of stored embeddings, in the whole gallery or for one identity."""
        with self._lock:
            return self._count(identity)

    def __len__(self) -> int:
        """Number of stored embeddings (faces); len(identities()) counts people."""
        return self.count()

    def __contains__(self, identity: str) -> bool:
        with self._lock:
            return self._identity_id(identity) is not None

    def _identity_id(self, identity: str) -> int | None:
        row = self._db().execute("SELECT id FROM identities WHERE name=?", (identity,)).fetchone()
        return None if row is None else row[0]

    def _unknown(self, identity: str) -> ConfigError:
        names = [r[0] for r in self._db().execute("SELECT name FROM identities")]
        return unknown_identity(str(self.path), identity, names)

    def entries(self, identity: str) -> list[Entry]:
        """The stored embeddings of one identity, oldest first; ConfigError if it is not enrolled."""
        with self._lock:
            ident = self._identity_id(identity)
            if ident is None:
                raise self._unknown(identity)
            sql = "SELECT id, source, vector FROM entries WHERE identity_id=? ORDER BY id"
            rows = self._db().execute(sql, (ident,)).fetchall()
            d = int(self._meta("embedding_size") or 0)
        vectors = decode_rows([r[2] for r in rows], d, str(self.path), [(r[0], identity) for r in rows])
        return [Entry(r[0], identity, r[1], v) for r, v in zip(rows, vectors)]

    # ------------------------------------------------------------------ writing

    def add(
        self,
        identity: str,
        embeddings,
        sources: Sequence[str | None] | None = None,
        replace: bool = False,
    ) -> int:
        """Add (N, D) embeddings (L2-normalised here) to `identity`, creating it if new; returns N.

        sources: N strings (e.g. image paths) kept with the entries. replace=True drops the identity's previous
        entries in the same transaction. All or nothing: on any error nothing is written.
        """
        return self.add_many([(identity, embeddings, sources)], replace=replace)

    def add_many(self, items: Iterable[tuple], replace: bool = False) -> int:
        """add() for many (identity, embeddings[, sources]) items in ONE transaction (one fsync); returns rows added."""
        checked = [self._check_item(*item) for item in items]
        total, removed = 0, []
        with self._transaction() as c:
            before = self._state()
            first_new = (c.execute("SELECT MAX(id) FROM entries").fetchone()[0] or 0) + 1
            for identity, arr, sources in checked:
                self._claim_size(arr.shape[1], identity)
                ident = self._identity_id(identity)
                if ident is None:
                    ident = c.execute("INSERT INTO identities (name) VALUES (?)", (identity,)).lastrowid
                elif replace:
                    removed += [r[0] for r in c.execute("SELECT id FROM entries WHERE identity_id=?", (ident,))]
                    c.execute("DELETE FROM entries WHERE identity_id=?", (ident,))
                c.executemany(
                    "INSERT INTO entries (identity_id, source, vector) VALUES (?, ?, ?)",
                    ((ident, src, _blob(vec)) for vec, src in zip(arr, sources)),
                )
                total += arr.shape[0]
            added = c.execute("SELECT id, vector FROM entries WHERE id >= ? ORDER BY id", (first_new,)).fetchall()
            after = self._bump()
            self._invalidate()
        d = len(added[0][1]) // 4 if added else 0
        vectors = np.frombuffer(b"".join(r[1] for r in added), dtype="<f4").reshape(len(added), d)
        self._update_index(before, after, (vectors, np.array([r[0] for r in added], np.int64)), removed)
        return total

    @staticmethod
    def _check_item(identity: str, embeddings, sources: Sequence[str | None] | None = None):
        """Validate one add() item; returns (identity, normalised (N, D) float32, N sources)."""
        check_identity(identity)
        arr = as_matrix(embeddings, f"embeddings for '{identity}'")
        if arr.shape[0] == 0:
            raise DataError(f"embeddings for '{identity}': no rows given; pass at least one (D,) embedding.")
        if sources is None:
            sources = [None] * arr.shape[0]
        sources = list(sources)
        if len(sources) != arr.shape[0]:
            raise ConfigError(
                f"sources for '{identity}': {len(sources)} given for {arr.shape[0]} embeddings; pass one per row."
            )
        if not all(s is None or isinstance(s, str) for s in sources):
            raise ConfigError(f"sources for '{identity}' must be strings (e.g. image paths) or None.")
        return identity, normalise(arr, f"embeddings for '{identity}'"), sources

    def _claim_size(self, d: int, identity: str | None = None) -> None:
        """Record D as the gallery's embedding size when it has none; another stored size is an error (both
        stores): ConfigError for an asked embedding_size (identity None), DataError for an identity's embeddings."""
        stored = self._record_size(d)
        if stored is None:
            return
        if identity is None:
            raise ConfigError(
                f"{self.path}: the gallery holds {stored}-d embeddings but embedding_size={d} "
                "was asked for. Use the model that built it, or a new gallery."
            )
        raise DataError(
            f"embeddings for '{identity}' are {d}-d but {self.path} holds {stored}-d "
            "embeddings. Embed with the model that built the gallery, or use a new gallery."
        )

    def _record_size(self, d: int) -> int | None:
        """Record D when the file has none yet; returns the stored D when it is another size, else None."""
        stored = self._meta("embedding_size")
        if stored is None:
            self._set_meta("embedding_size", str(d))
        return int(stored) if stored is not None and int(stored) != d else None

    def remove(self, identity: str) -> int:
        """Remove an identity and all its entries; returns how many entries went. ConfigError if unknown."""
        with self._transaction() as c:
            ident = self._identity_id(identity)
            if ident is None:
                raise self._unknown(identity)
            before = self._state()
            removed = [r[0] for r in c.execute("SELECT id FROM entries WHERE identity_id=?", (ident,))]
            n = c.execute("DELETE FROM entries WHERE identity_id=?", (ident,)).rowcount
            c.execute("DELETE FROM identities WHERE id=?", (ident,))
            after = self._bump()
            self._invalidate()
        self._update_index(before, after, None, removed)
        return n

    def _invalidate(self) -> None:
        self._cache = None
        self._version = None

    # ------------------------------------------------------------------ loading

    def _load(self, device: str | None = None) -> Cache:
        """The in-memory copy, reloaded when this or another process changed the file, or the device changed."""
        device = str(torch.device(device)) if device is not None else self.device
        with self._lock:
            version = self._db().execute("PRAGMA data_version").fetchone()[0]  # moves on other connections' commits
            if self._cache is not None and self._version == version:
                if self._cache.device != device:
                    cache = self._cache
                    cache.matrix = cache.matrix.to(device)
                    cache.labels = cache.labels.to(device)
                    cache.device = device
                return self._cache
            if self._version is not None and self._version != version:
                self._invalidate()
            rows = (
                self._db()
                .execute(
                    "SELECT i.name, e.source, e.vector, e.id FROM entries e JOIN identities i ON i.id = e.identity_id "
                    "ORDER BY e.identity_id, e.id"
                )
                .fetchall()
            )
            d = self._meta("embedding_size")
            d = int(d) if d is not None else 0
            names: list[str] = []
            labels = np.empty(len(rows), dtype=np.int64)
            for i, (name, _, _, _) in enumerate(rows):
                if not names or names[-1] != name:
                    names.append(name)
                labels[i] = len(names) - 1
            vectors = decode_rows([r[2] for r in rows], d, str(self.path), [(r[3], r[0]) for r in rows])
            matrix = torch.from_numpy(vectors).to(device)
            self._cache = Cache(
                vectors,
                matrix,
                torch.from_numpy(labels).to(device),
                labels,
                names,
                [r[1] for r in rows],
                device,
                np.array([r[3] for r in rows], dtype=np.int64),
            )
            self._version = version
            return self._cache

    def _queries(self, queries, d: int) -> np.ndarray:
        q = as_matrix(queries, "queries")
        if d and q.shape[1] != d:
            raise DataError(
                f"queries are {q.shape[1]}-d but {self.path} holds {d}-d embeddings. Embed them with the model "
                "that built the gallery."
            )
        return normalise(q, "queries")

    # ------------------------------------------------------------------ search

    def search(
        self,
        queries,
        top_k: int = 5,
        per_identity: bool = True,
        index: str = "auto",
        device: str | torch.device | None = None,
        block_elements: int = 1 << 24,
    ) -> list[list[Match]]:
        """For each query (Q, D) the top_k matches, best first, by cosine score.

        per_identity: one match per identity (its best entry), else the top_k entries. index: 'exact' (blockwise
        torch matmul + topk on `device`), 'ivf'/'hnsw' (faiss: the saved index when current, else built, saved and
        used), 'auto' (the faiss index from index_threshold entries up, of the kind build_index chose or 'ivf';
        exact below, or without faiss). block_elements bounds the size of each (queries x gallery rows) score block.
        """
        if not isinstance(top_k, int) or top_k < 1:
            raise ConfigError(f"top_k must be a positive int, got {top_k!r}.")
        if index not in (*INDEX_KINDS, "auto"):
            raise ConfigError(f"unknown index '{index}'; choose one of auto, {', '.join(INDEX_KINDS)}.")
        with self._lock:
            cache = self._load(device)
            q = self._queries(queries, cache.vectors.shape[1])
            if cache.matrix.shape[0] == 0:
                return [[] for _ in range(q.shape[0])]
            ann = None
            if index in APPROXIMATE:
                ann = self._index(index)
            elif index == "auto" and cache.matrix.shape[0] >= self.index_threshold:
                try:
                    ann = self._index(None)
                except ConfigError as e:  # no faiss: exact search is still right, only slower
                    log.warning("%s: %s Searching exactly.", self.path, e)
            if ann is not None:
                return ann.search(cache, q, top_k, per_identity)
            return exact_search(cache, q, top_k, per_identity, block_elements)

"""A gallery in PostgreSQL with pgvector, for galleries past one machine: the Gallery API (open, add, add_many,
remove, identities, count, entries, search, build_index, recall_at_k) on a database server (extra
facezoo[pgvector]: psycopg 3; the server needs the `vector` extension).

    PgGallery.open("postgresql://user@host:5432/db?gallery=faces")   # or open_gallery(url); --gallery URL on the CLI

`gallery=NAME` (default facezoo) prefixes the tables NAME_meta, NAME_identities, NAME_entries, so one database holds
several galleries. Vectors are stored L2-normalised in a vector(D) column; scores are inner products computed by the
server (`<#>` is the negative inner product). Exact search scans (per identity: DISTINCT ON the identity, its best
entry); build_index('hnsw'|'ivf') creates pgvector's HNSW or IVFFlat index, which search uses from index_threshold
entries up. Every write is one transaction (writers serialised by a lock on the meta table), and moves
content_version on, as in the SQLite store.
"""

from __future__ import annotations

import contextlib
import re
import threading
import uuid
from collections.abc import Iterable, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np

from ...errors import ConfigError, DataError, FacezooError
from .index import APPROXIMATE, INDEX_KINDS, check_params
from .search import Match
from .store import FORMAT, FORMAT_VERSION, INDEX_THRESHOLD, Entry, Gallery
from .vectors import as_matrix, decode_rows, normalise, unknown_identity

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")


def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise ConfigError(
            "a postgresql:// gallery needs psycopg: pip install 'facezoo[pgvector]' (psycopg[binary]), or give a "
            "file path for an SQLite gallery."
        ) from None
    return psycopg


def _text(vec: np.ndarray) -> str:
    """pgvector's text form '[v1,v2,...]'; float32 -> shortest float64 repr round-trips exactly through strtof."""
    return "[" + ",".join(repr(float(v)) for v in vec) + "]"


def _parse(text: str) -> np.ndarray:
    return np.array(text.strip("[]").split(","), dtype=np.float32)


def _masked(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    return urlunsplit(parts)


class PgGallery:
    """An identity gallery of L2-normalised embeddings in PostgreSQL + pgvector. Open with PgGallery.open(url)."""

    def __init__(self, conn, url: str, prefix: str, index_threshold: int | None):
        self._conn, self.path, self._p = conn, _masked(url), prefix
        self.index_threshold = INDEX_THRESHOLD if index_threshold is None else index_threshold
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        url: str,
        embedding_size: int | None = None,
        create: bool = True,
        model_key: str | None = None,
        device=None,
        index_threshold: int | None = None,
    ) -> PgGallery:
        """Connect to the gallery at `url` (creating its tables unless create=False); the same checks of embedding
        size and model key as Gallery.open. `device` is accepted for the same signature (search runs in the server)."""
        psycopg = _psycopg()
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        prefix = query.pop("gallery", "facezoo")
        if not _NAME.match(prefix):
            raise ConfigError(f"{_masked(url)}: gallery={prefix!r} must be a lower-case SQL name (letters, digits, _).")
        conninfo = urlunsplit(parts._replace(query=urlencode(query)))
        try:
            conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
        except psycopg.Error as e:
            raise DataError(
                f"{_masked(url)}: cannot connect to the gallery's PostgreSQL server ({str(e).strip()[:300]}). "
                "Check the URL, that the server runs, and the user's rights."
            ) from None
        gallery = cls(conn, url, prefix, index_threshold)
        try:
            gallery._init(create, embedding_size, model_key)
        except BaseException:
            conn.close()
            raise
        return gallery

    def _t(self, name: str) -> str:
        return f"{self._p}_{name}"

    def _init(self, create: bool, embedding_size: int | None, model_key: str | None) -> None:
        with self._transaction() as c:
            c.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self._t("meta"),))
            exists = c.execute("SELECT to_regclass(%s)", (self._t("meta"),)).fetchone()[0] is not None
            if not exists:
                if not create:
                    raise DataError(f"{self.path}: no gallery '{self._p}' there. Check the URL or create it.")
                try:
                    c.execute("CREATE EXTENSION IF NOT EXISTS vector")
                except _psycopg().Error as e:
                    raise DataError(
                        f"{self.path}: the server has no pgvector extension ({str(e).strip()[:200]}); install it "
                        "(e.g. apt-get install postgresql-15-pgvector) or ask the database's administrator."
                    ) from None
                c.execute(f"CREATE TABLE {self._t('meta')} (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                c.execute(f"CREATE TABLE {self._t('identities')} (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
                c.execute(
                    f"CREATE TABLE {self._t('entries')} (id BIGSERIAL PRIMARY KEY, identity_id BIGINT NOT NULL "
                    f"REFERENCES {self._t('identities')}(id) ON DELETE CASCADE, source TEXT, vector vector NOT NULL)"
                )
                c.execute(f"CREATE INDEX {self._t('entries_identity')} ON {self._t('entries')} (identity_id)")
                rows = [("format", FORMAT), ("format_version", str(FORMAT_VERSION)), ("gallery_id", str(uuid.uuid4()))]
                for row in [*rows, ("content_version", "0")]:
                    c.execute(f"INSERT INTO {self._t('meta')} VALUES (%s, %s)", row)
            meta = dict(c.execute(f"SELECT key, value FROM {self._t('meta')}").fetchall())
            if meta.get("format") != FORMAT:
                raise DataError(f"{self.path}: table {self._t('meta')} is not a facezoo gallery's.")
            if embedding_size is not None:
                if not isinstance(embedding_size, int) or embedding_size < 1:
                    raise ConfigError(f"embedding_size must be a positive int, got {embedding_size!r}.")
                Gallery._claim_size(self, embedding_size)
            if model_key is not None:
                Gallery._check_model_key(self, meta.get("model_key"), str(model_key))

    @contextlib.contextmanager
    def _transaction(self):
        """One transaction; any failure rolls it back (a server error is one DataError: the gallery is unchanged)."""
        psycopg = _psycopg()
        with self._lock:
            conn = self._db()
            try:
                with conn.transaction():
                    yield conn
            except (psycopg.OperationalError, psycopg.errors.DiskFull, psycopg.errors.InsufficientResources) as e:
                raise DataError(
                    f"{self.path}: writing the gallery failed ({str(e).strip()[:300]}); nothing was written, the "
                    "gallery is unchanged. Check the server and its disk, and retry."
                ) from None

    def _db(self):
        if self._conn is None:
            raise FacezooError(f"{self.path}: the gallery is closed; open it again with PgGallery.open().")
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ metadata (the names Gallery's helpers use)

    def _meta(self, key: str) -> str | None:
        row = self._db().execute(f"SELECT value FROM {self._t('meta')} WHERE key=%s", (key,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, key: str, value: str) -> None:
        self._db().execute(
            f"INSERT INTO {self._t('meta')} VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (key, value),
        )

    def _count(self, identity: str | None = None) -> int:
        return self.count(identity)

    def _record_size(self, d: int) -> int | None:
        stored = self._meta("embedding_size")
        if stored is None:
            self._set_meta("embedding_size", str(d))
            self._db().execute(f"ALTER TABLE {self._t('entries')} ALTER COLUMN vector TYPE vector({int(d)})")
        return int(stored) if stored is not None and int(stored) != d else None

    @property
    def embedding_size(self) -> int | None:
        with self._lock:
            value = self._meta("embedding_size")
        return None if value is None else int(value)

    @property
    def model_key(self) -> str | None:
        with self._lock:
            return self._meta("model_key")

    @property
    def content_version(self) -> int:
        with self._lock:
            return int(self._meta("content_version") or 0)

    def _bump(self) -> None:
        version = int(self._meta("content_version") or 0) + 1
        self._set_meta("content_version", str(version))

    def identities(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db().execute(f"SELECT name FROM {self._t('identities')} ORDER BY name")]

    def count(self, identity: str | None = None) -> int:
        with self._lock:
            if identity is None:
                return self._db().execute(f"SELECT COUNT(*) FROM {self._t('entries')}").fetchone()[0]
            sql = (
                f"SELECT COUNT(*) FROM {self._t('entries')} e JOIN {self._t('identities')} i "
                "ON i.id = e.identity_id WHERE i.name=%s"
            )
            return self._db().execute(sql, (identity,)).fetchone()[0]

    def __len__(self) -> int:
        return self.count()

    def __contains__(self, identity: str) -> bool:
        with self._lock:
            return self._identity_id(identity) is not None

    def _identity_id(self, identity: str) -> int | None:
        row = self._db().execute(f"SELECT id FROM {self._t('identities')} WHERE name=%s", (identity,)).fetchone()
        return None if row is None else row[0]

    def _unknown(self, identity: str) -> ConfigError:
        names = [r[0] for r in self._db().execute(f"SELECT name FROM {self._t('identities')}")]
        return unknown_identity(self.path, identity, names)

    def entries(self, identity: str) -> list[Entry]:
        """The stored embeddings of one identity, oldest first (checked as in Gallery.entries)."""
        with self._lock:
            ident = self._identity_id(identity)
            if ident is None:
                raise self._unknown(identity)
            sql = f"SELECT id, source, vector::text FROM {self._t('entries')} WHERE identity_id=%s ORDER BY id"
            rows = self._db().execute(sql, (ident,)).fetchall()
            d = self.embedding_size or 0
        blobs = [_parse(r[2]).astype("<f4").tobytes() for r in rows]
        vectors = decode_rows(blobs, d, self.path, [(r[0], identity) for r in rows])
        return [Entry(r[0], identity, r[1], v) for r, v in zip(rows, vectors)]

    # ------------------------------------------------------------------ writing

    def add(self, identity: str, embeddings, sources: Sequence[str | None] | None = None, replace: bool = False) -> int:
        return self.add_many([(identity, embeddings, sources)], replace=replace)

    def add_many(self, items: Iterable[tuple], replace: bool = False) -> int:
        """Gallery.add_many: all items in one transaction, all or nothing."""
        checked = [Gallery._check_item(*item) for item in items]
        total = 0
        with self._transaction() as c:
            c.execute(f"LOCK TABLE {self._t('meta')} IN SHARE ROW EXCLUSIVE MODE")  # one writer at a time
            for identity, arr, sources in checked:
                Gallery._claim_size(self, arr.shape[1], identity)
                ident = self._identity_id(identity)
                if ident is None:
                    sql = f"INSERT INTO {self._t('identities')} (name) VALUES (%s) RETURNING id"
                    ident = c.execute(sql, (identity,)).fetchone()[0]
                elif replace:
                    c.execute(f"DELETE FROM {self._t('entries')} WHERE identity_id=%s", (ident,))
                with c.cursor() as cur:
                    cur.executemany(
                        f"INSERT INTO {self._t('entries')} (identity_id, source, vector) VALUES (%s, %s, %s::vector)",
                        [(ident, src, _text(vec)) for vec, src in zip(arr, sources)],
                    )
                total += arr.shape[0]
            self._bump()
        return total

    def remove(self, identity: str) -> int:
        with self._transaction() as c:
            c.execute(f"LOCK TABLE {self._t('meta')} IN SHARE ROW EXCLUSIVE MODE")
            ident = self._identity_id(identity)
            if ident is None:
                raise self._unknown(identity)
            n = c.execute(f"DELETE FROM {self._t('entries')} WHERE identity_id=%s", (ident,)).rowcount
            c.execute(f"DELETE FROM {self._t('identities')} WHERE id=%s", (ident,))
            self._bump()
        return n

    # ------------------------------------------------------------------ search

    def _index_kind(self) -> str | None:
        return self._meta("index_kind")

    def _entries_sql(self, approximate: bool) -> str:
        order = "e.vector <#> %(q)s::vector" + ("" if approximate else ", e.identity_id, e.id")
        return (
            f"SELECT e.id, i.name, -(e.vector <#> %(q)s::vector), e.source FROM {self._t('entries')} e "
            f"JOIN {self._t('identities')} i ON i.id = e.identity_id ORDER BY {order} LIMIT %(k)s"
        )

    def _identities_sql(self) -> str:
        return (
            "SELECT name, score, source FROM (SELECT DISTINCT ON (e.identity_id) e.identity_id, i.name, "
            f"-(e.vector <#> %(q)s::vector) AS score, e.source FROM {self._t('entries')} e "
            f"JOIN {self._t('identities')} i ON i.id = e.identity_id "
            "ORDER BY e.identity_id, e.vector <#> %(q)s::vector, e.id) best "
            "ORDER BY score DESC, identity_id LIMIT %(k)s"
        )

    def _top(self, c, q: np.ndarray, k: int, approximate: bool) -> list[tuple]:
        """(entry id, identity, score, source) of the top-k entries of one query; approximate: through the index."""
        c.execute("SET LOCAL enable_indexscan = " + ("on" if approximate else "off"))
        return c.execute(self._entries_sql(approximate), {"q": _text(q), "k": k}).fetchall()

    def search(
        self,
        queries,
        top_k: int = 5,
        per_identity: bool = True,
        index: str = "auto",
        device=None,
        block_elements: int | None = None,
    ) -> list[list[Match]]:
        """Gallery.search, computed by the server: 'exact' scans; 'hnsw'/'ivf' (or 'auto' from index_threshold
        entries up, when build_index made one) go through pgvector's index, per identity over-fetching 8 top_k."""
        if not isinstance(top_k, int) or top_k < 1:
            raise ConfigError(f"top_k must be a positive int, got {top_k!r}.")
        if index not in (*INDEX_KINDS, "auto"):
            raise ConfigError(f"unknown index '{index}'; choose one of auto, {', '.join(INDEX_KINDS)}.")
        q = as_matrix(queries, "queries")
        with self._lock:
            d = self.embedding_size
            if d and q.shape[1] != d:
                raise DataError(f"queries are {q.shape[1]}-d but {self.path} holds {d}-d embeddings.")
            q = normalise(q, "queries")
            kind = self._index_kind()
            if index in APPROXIMATE and kind != index:
                raise ConfigError(f"{self.path}: no '{index}' index; build it first (build_index('{index}')).")
            approximate = index in APPROXIMATE or (index == "auto" and kind and len(self) >= self.index_threshold)
            out = []
            with self._transaction() as c:
                if approximate:
                    c.execute(f"SET LOCAL hnsw.ef_search = {int(self._meta('ef_search') or 128)}")
                    c.execute(f"SET LOCAL ivfflat.probes = {int(self._meta('nprobe') or 16)}")
                for row in q:
                    if not per_identity:
                        out.append([Match(n, float(s), src) for _, n, s, src in self._top(c, row, top_k, approximate)])
                    elif approximate:
                        hits, seen = [], set()
                        for _, name, s, src in self._top(c, row, 8 * top_k, True):
                            if name not in seen and len(hits) < top_k:
                                seen.add(name)
                                hits.append(Match(name, float(s), src))
                        out.append(hits)
                    else:
                        rows = c.execute(self._identities_sql(), {"q": _text(row), "k": top_k}).fetchall()
                        out.append([Match(n, float(s), src) for n, s, src in rows])
            return out

    def build_index(
        self,
        kind: str = "hnsw",
        nlist=None,
        nprobe: int = 16,
        hnsw_m: int = 16,
        ef_search: int = 128,
        ef_construction: int = 64,
    ) -> None:
        """pgvector's HNSW (m, ef_construction; searched with hnsw.ef_search) or IVFFlat (lists = nlist, default
        rows / 1000 at least 1; searched with ivfflat.probes = nprobe) inner-product index; 'exact' drops it."""
        if kind not in INDEX_KINDS:
            raise ConfigError(f"unknown index kind '{kind}'; choose one of {', '.join(INDEX_KINDS)}.")
        check_params(nprobe=nprobe, hnsw_m=hnsw_m, ef_search=ef_search, ef_construction=ef_construction, nlist=nlist)
        name = self._t("entries_ann")
        with self._transaction() as c:
            c.execute(f"DROP INDEX IF EXISTS {name}")
            if kind == "hnsw":
                c.execute(
                    f"CREATE INDEX {name} ON {self._t('entries')} USING hnsw (vector vector_ip_ops) "
                    f"WITH (m = {int(hnsw_m)}, ef_construction = {int(ef_construction)})"
                )
            elif kind == "ivf":
                lists = nlist or max(1, len(self) // 1000)
                c.execute(
                    f"CREATE INDEX {name} ON {self._t('entries')} USING ivfflat (vector vector_ip_ops) "
                    f"WITH (lists = {int(lists)})"
                )
            for key, value in (("index_kind", kind), ("ef_search", ef_search), ("nprobe", nprobe)):
                if kind == "exact":
                    c.execute(f"DELETE FROM {self._t('meta')} WHERE key=%s", (key,))
                else:
                    self._set_meta(key, str(value))

    def index_info(self) -> dict | None:
        with self._lock:
            kind = self._index_kind()
        return None if kind is None else {"path": self.path, "kind": kind, "current": True}

    def recall_at_k(self, queries, k: int = 10, index: str | None = None) -> float:
        """Mean over queries of |index top-k  intersect  exact top-k| / k (entries)."""
        kind = index or self._index_kind()
        if kind not in APPROXIMATE or kind != self._index_kind():
            raise ConfigError("recall_at_k measures an approximate index: call build_index('hnsw' or 'ivf') first.")
        q = normalise(as_matrix(queries, "queries"), "queries")
        k = min(k, len(self))
        if k == 0:
            raise ConfigError(f"{self.path}: the gallery is empty; add embeddings before measuring recall.")
        hits = []
        with self._transaction() as c:
            c.execute(f"SET LOCAL hnsw.ef_search = {int(self._meta('ef_search') or 128)}")
            c.execute(f"SET LOCAL ivfflat.probes = {int(self._meta('nprobe') or 16)}")
            for row in q:
                exact = {r[0] for r in self._top(c, row, k, False)}
                approx = {r[0] for r in self._top(c, row, k, True)}
                hits.append(len(exact & approx))
        return float(np.mean(hits)) / k

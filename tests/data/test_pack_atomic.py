"""A packed set replaces the old one whole: a kill at any moment leaves the old set or the new, never a mix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import facezoo.io as fio
from facezoo.cli import main
from facezoo.data.pack import pack
from facezoo.data.recordio import RecordDataset
from facezoo.errors import DataError

from .test_pack_cli import make_folder, png


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def two_sources(tmp_path):
    make_folder(tmp_path / "old", {"a": 2, "b": 1})
    make_folder(tmp_path / "new", {"x": 1, "y": 2, "z": 3})
    out = tmp_path / "set"
    pack(tmp_path / "old", out)
    (out / "lfw.bin").write_bytes(b"a verification set kept beside the data")
    return tmp_path, out


def test_repack_keeps_other_files_and_replaces_the_set(two_sources):
    tmp_path, out = two_sources
    pack(tmp_path / "new", out)
    assert len(RecordDataset(out)) == 6 and RecordDataset(out).num_classes == 3
    assert (out / "lfw.bin").read_bytes() == b"a verification set kept beside the data"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


@pytest.mark.parametrize("where", ["exchange", "fallback-first-rename", "fallback-second-rename"])
def test_a_kill_during_the_swap_leaves_the_old_set_whole(two_sources, monkeypatch, where):
    tmp_path, out = two_sources
    before = snapshot(out)

    class Killed(BaseException):  # like SIGKILL: nothing after it runs (BaseException skips `except Exception`)
        pass

    if where == "exchange":
        monkeypatch.setattr(fio, "_exchange", lambda a, b: (_ for _ in ()).throw(Killed()))
    else:
        monkeypatch.setattr(fio, "_exchange", lambda a, b: False)  # a system without RENAME_EXCHANGE
        real = os.replace

        def replace(a, b):
            first, second = Path(a) == out, Path(b) == out and Path(a).name != "set"
            if (first and where == "fallback-first-rename") or (second and where == "fallback-second-rename"):
                raise Killed()
            return real(a, b)

        monkeypatch.setattr(fio.os, "replace", replace)
    with pytest.raises(Killed):
        pack(tmp_path / "new", out)
    monkeypatch.undo()
    if where == "fallback-second-rename":  # the documented moment with no set: the old one waits aside, whole
        assert not out.exists()
        aside = next(p for p in tmp_path.glob(".set.*.tmp") if (p / "set").is_dir())
        assert snapshot(aside / "set") == before
    else:
        assert snapshot(out) == before
        assert len(RecordDataset(out)) == 3
    fio.remove_stale(out)  # what the next write does first: the old set is back whole
    assert snapshot(out) == before
    pack(tmp_path / "new", out)  # and the next run succeeds without litter
    assert len(RecordDataset(out)) == 6
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_pack_into_a_file_or_from_nothing_is_one_clear_error(tmp_path, capsys):
    make_folder(tmp_path / "src", {"a": 1})
    (tmp_path / "file").write_text("x")
    assert main(["data", "pack", str(tmp_path / "src"), str(tmp_path / "file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(DataError, match="no images|empty"):
        pack(tmp_path / "empty.txt", tmp_path / "out")


def test_pack_without_image_size_keeps_every_image_byte_for_byte(tmp_path):
    (tmp_path / "src" / "a").mkdir(parents=True)
    odd = [png((1, 2, 3), (5, 4)), png((9, 9, 9), (7, 3))]  # the second has another size than the first
    for i, data in enumerate(odd):
        (tmp_path / "src" / "a" / f"{i}.png").write_bytes(data)
    pack(tmp_path / "src", tmp_path / "out")
    ds = RecordDataset(tmp_path / "out")
    assert [ds.read_encoded(i) for i in range(len(ds))] == odd

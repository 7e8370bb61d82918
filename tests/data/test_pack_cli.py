"""pack / unpack and the `facezoo data` command."""

from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pytest
from PIL import Image

import facezoo.cli as cli
import facezoo.data.pack as pack_module
from facezoo.data.image import decode_image
from facezoo.data.pack import pack, pack_encoded, unpack
from facezoo.data.recordio import RecordDataset, RecordIOFile, unpack_record


def png(color, size=(5, 4)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, tuple(color)).save(buf, format="PNG")
    return buf.getvalue()


def make_folder(root, counts: dict[str, int]) -> dict[str, list[bytes]]:
    files = {}
    for c, (name, n) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        files[name] = []
        for i in range(n):
            data = png((40 * c, 10 * i, 7))
            (root / name / f"{i}.png").write_bytes(data)
            files[name].append(data)
    return files


def read_layout(out_dir):
    """(record 0 label, [identity ranges], [(class, image bytes)]) straight from the records."""
    rec = RecordIOFile(out_dir / "train.rec")
    h0 = unpack_record(rec.read(0))[0]
    a, b = int(h0.label[0]), int(h0.label[1])
    ranges = [tuple(int(v) for v in unpack_record(rec.read(k))[0].label) for k in range(a, b)]
    images = []
    for k in range(1, a):
        h, data = unpack_record(rec.read(k))
        images.append((h.label, data))
    assert h0.flag == 2 and sorted(rec.keys) == list(range(b))
    return (a, b), ranges, images


def test_pack_image_folder_layout_and_unpack_bytes(tmp_path):
    files = make_folder(tmp_path / "faces", {"a": 2, "b": 1, "c": 3})
    out = tmp_path / "rec"
    result = pack(tmp_path / "faces", out)
    assert result["images"] == 6 and result["identities"] == 3
    header, ranges, images = read_layout(out)
    assert header == (7, 10)  # a = images + 1, b = a + classes
    assert ranges == [(1, 3), (3, 4), (4, 7)]
    expected = [(float(c), data) for c, name in enumerate("abc") for data in files[name]]
    assert images == expected  # bytes stored unchanged, grouped by label
    assert (out / "property").read_text().strip() == "3,4,5"

    back = tmp_path / "back"
    assert unpack(out, back) == 6
    for key, (label, data) in enumerate(expected, start=1):
        assert (back / str(int(label)) / f"{key}.png").read_bytes() == data


def test_pack_list_file_with_label_gaps(tmp_path):
    files = make_folder(tmp_path / "faces", {"a": 1, "c": 2})
    lst = tmp_path / "list.txt"
    lst.write_text("faces/c/0.png 2\nfaces/a/0.png 0\nfaces/c/1.png 2\n")
    pack(lst, tmp_path / "rec")
    header, ranges, images = read_layout(tmp_path / "rec")
    assert header == (4, 7)
    assert ranges[0] == (1, 2) and ranges[1][0] == ranges[1][1] and ranges[2] == (2, 4)  # class 1: empty range
    assert images == [(0.0, files["a"][0]), (2.0, files["c"][0]), (2.0, files["c"][1])]
    ds = RecordDataset(tmp_path / "rec")
    assert ds.labels.tolist() == [0, 2, 2] and ds.num_classes == 3


def test_pack_encoded_groups_by_label_stably(tmp_path):
    items = [(1, b"x1"), (0, b"y0"), (1, b"x2"), (0, b"y1"), (1, b"x3")]
    result = pack_encoded(iter(items), tmp_path / "rec", image_size=(112, 112))
    assert result["images"] == 5 and result["identities"] == 2
    header, ranges, images = read_layout(tmp_path / "rec")
    assert header == (6, 8) and ranges == [(1, 3), (3, 6)]
    assert [d for _, d in images] == [b"y0", b"y1", b"x1", b"x2", b"x3"]
    assert (tmp_path / "rec" / "property").read_text().strip() == "2,112,112"


def test_pack_resizes_only_other_sizes(tmp_path):
    (tmp_path / "f" / "a").mkdir(parents=True)
    same, other = png((9, 9, 9), (5, 4)), png((200, 100, 50), (8, 8))
    (tmp_path / "f" / "a" / "0.png").write_bytes(same)
    (tmp_path / "f" / "a" / "1.png").write_bytes(other)
    pack(tmp_path / "f", tmp_path / "rec", image_size=(4, 5))
    _, _, images = read_layout(tmp_path / "rec")
    assert images[0][1] == same
    resized = decode_image(images[1][1])
    assert resized.shape == (4, 5, 3) and images[1][1][:3] == b"\xff\xd8\xff"
    assert np.abs(resized.astype(int) - [200, 100, 50]).max() <= 3  # JPEG of a constant colour


def test_interrupted_pack_leaves_no_train_rec(tmp_path, monkeypatch):
    make_folder(tmp_path / "faces", {"a": 2, "b": 2})
    real, calls = pack_module.pack_record, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(pack_module, "pack_record", failing)
    with pytest.raises(KeyboardInterrupt):
        pack(tmp_path / "faces", tmp_path / "out" / "rec")
    leftovers = [p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")]
    assert leftovers in ([], ["rec"])  # at most the empty target folder; no temp files, no train.rec


@pytest.fixture
def run(monkeypatch, capsys):
    """facezoo.cli.main with only the `data` command registered; returns (rc, stdout, stderr)."""
    monkeypatch.setattr(cli, "MODULES", ("data",))

    def call(*argv):
        rc = cli.main(["data", *map(str, argv)])
        captured = capsys.readouterr()
        return rc, captured.out, captured.err

    return call


def test_cli_pack_unpack_inspect(tmp_path, run):
    make_folder(tmp_path / "faces", {"a": 2, "b": 1})
    rc, out, _ = run("pack", tmp_path / "faces", tmp_path / "rec")
    assert rc == 0 and "packed 3 images of 2 identities" in out
    rc, out, _ = run("unpack", tmp_path / "rec", tmp_path / "back")
    assert rc == 0 and sorted(p.name for p in (tmp_path / "back").rglob("*.png")) == ["1.png", "2.png", "3.png"]
    rc, out, _ = run("inspect", tmp_path / "rec", "--json")
    report = json.loads(out)
    assert rc == 0 and report["images"] == 3 and report["identities"] == 2 and report["corrupt"] == []
    rc, out, _ = run("inspect", tmp_path / "faces")
    assert rc == 0 and "identities:  2" in out


def test_cli_unpack_bin(tmp_path, run):
    images = [png((i, i, i)) for i in range(4)]
    (tmp_path / "v.bin").write_bytes(pickle.dumps((images, [True, False]), protocol=2))
    rc, out, _ = run("unpack-bin", tmp_path / "v.bin", tmp_path / "v")
    assert rc == 0 and "4 images" in out
    assert (tmp_path / "v" / "pairs.txt").read_text() == "0.png 1.png 1\n2.png 3.png 0\n"
    assert (tmp_path / "v" / "3.png").read_bytes() == images[3]


def test_cli_errors_exit_2_naming_the_file(tmp_path, run):
    rc, _out, err = run("inspect", tmp_path / "nowhere")
    assert rc == 2 and "nowhere: not found" in err and "Traceback" not in err
    (tmp_path / "bad.bin").write_bytes(b"\x80\x04not a pickle at all")
    rc, _, err = run("unpack-bin", tmp_path / "bad.bin", tmp_path / "o")
    assert rc == 2 and "bad.bin" in err and "Traceback" not in err
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "train.rec").write_bytes(b"\0" * 64)
    (tmp_path / "rec" / "train.idx").write_text("0\t0\n")
    rc, _, err = run("unpack", tmp_path / "rec", tmp_path / "o2")
    assert rc == 2 and "train.rec: key 0: bad magic" in err and "Traceback" not in err


def test_cli_synth(tmp_path, run):
    pytest.importorskip("facezoo.data.synthetic")
    rc, _out, _ = run(
        "synth",
        tmp_path / "s",
        "--identities",
        3,
        "--images-per-identity",
        2,
        "--seed",
        0,
        "--image-size",
        32,
        "--val-identities",
        2,
    )
    assert rc == 0 and any((tmp_path / "s").iterdir())

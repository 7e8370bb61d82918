"""Image folders, list files, layout detection and `inspect`."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
from PIL import Image

from facezoo.data.datasets import open_dataset
from facezoo.data.folders import ImageFolderDataset, ListFileDataset
from facezoo.data.inspect import format_report, inspect
from facezoo.data.recordio import RecordDataset
from facezoo.errors import DataError


def png(color, size=(5, 4)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, tuple(color)).save(buf, format="PNG")
    return buf.getvalue()


def make_folder(root, counts: dict[str, int], size=(5, 4)):
    """root/<name>/<i>.png with a colour that encodes (identity index, image index)."""
    for c, (name, n) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for i in range(n):
            (root / name / f"{i}.png").write_bytes(png((40 * c, 10 * i, 7), size))
    return root


def test_image_folder_labels_follow_sorted_names(tmp_path):
    root = make_folder(tmp_path / "faces", {"zed": 1, "amy": 2, "bob": 4})
    (root / "amy" / "notes.txt").write_text("not an image")
    ds = ImageFolderDataset(root)
    assert ds.classes == ["amy", "bob", "zed"]
    assert ds.labels.tolist() == [0, 0, 1, 1, 1, 1, 2]
    assert ds.num_classes == 3 and len(ds) == 7
    image, label = ds[2]  # bob/0.png; bob was created second (c=2), image 0
    assert label == 1 and image.shape == (4, 5, 3) and image.dtype == np.uint8
    assert (image == np.array([80, 0, 7], dtype=np.uint8)).all()


def test_empty_identity_folder_is_named(tmp_path):
    root = make_folder(tmp_path / "faces", {"amy": 1})
    (root / "ghost").mkdir()
    with pytest.raises(DataError, match=r"ghost: identity folder has no images"):
        ImageFolderDataset(root)


def test_corrupt_image_raises_or_is_skipped(tmp_path):
    root = make_folder(tmp_path / "faces", {"amy": 2})
    (root / "amy" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DataError, match=r"amy/1\.png"):
        ImageFolderDataset(root)[1]
    with pytest.warns(UserWarning, match=r"amy/1\.png"):
        assert ImageFolderDataset(root, skip_corrupt=True)[1] is None


def test_list_file_relative_and_absolute_paths(tmp_path):
    root = make_folder(tmp_path / "imgs", {"a": 1, "b": 1})
    lst = tmp_path / "train.txt"
    lst.write_text(f"imgs/a/0.png 3\n\n{root / 'b' / '0.png'} 0\n")
    ds = ListFileDataset(lst)
    assert ds.labels.tolist() == [3, 0] and ds.num_classes == 4
    assert (ds[0][0] == np.array([0, 0, 7], dtype=np.uint8)).all()
    assert (ds[1][0] == np.array([40, 0, 7], dtype=np.uint8)).all()
    other = ListFileDataset(lst, root=tmp_path / "elsewhere")
    assert other.sample_id(0) == str(tmp_path / "elsewhere" / "imgs" / "a" / "0.png")


@pytest.mark.parametrize("bad", ["imgs/a/0.png", "imgs/a/0.png minus1", "imgs/a/0.png -2"])
def test_list_file_bad_line_names_file_and_line(tmp_path, bad):
    lst = tmp_path / "train.txt"
    lst.write_text(f"x.png 0\n{bad}\n")
    with pytest.raises(DataError, match=r"train\.txt:2"):
        ListFileDataset(lst)


def write_minimal_rec(folder, labels):
    """Header-less RecordIO, built by hand: one record per label, image = a PNG."""
    folder.mkdir()
    blob, idx = b"", ""
    for k, label in enumerate(labels):
        payload = np.array([0], "<u4").tobytes() + np.array([label], "<f4").tobytes() + bytes(16) + png((1, 2, 3))
        idx += f"{k}\t{len(blob)}\n"
        blob += np.array([0xCED7230A, len(payload)], "<u4").tobytes() + payload + b"\0" * (-len(payload) % 4)
    (folder / "train.rec").write_bytes(blob)
    (folder / "train.idx").write_text(idx)
    return folder


def test_open_dataset_detects_each_layout(tmp_path):
    rec = write_minimal_rec(tmp_path / "rec", [1, 0])
    folder = make_folder(tmp_path / "faces", {"a": 1})
    lst = tmp_path / "list.txt"
    lst.write_text("faces/a/0.png 0\n")
    assert isinstance(open_dataset(rec), RecordDataset)
    assert isinstance(open_dataset(rec / "train.rec"), RecordDataset)
    assert isinstance(open_dataset(folder), ImageFolderDataset)
    assert isinstance(open_dataset(lst), ListFileDataset)
    assert open_dataset(rec).labels.tolist() == [1, 0]


def test_open_dataset_rejects_unknown_layouts(tmp_path):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "x.png").write_bytes(png((0, 0, 0)))
    (tmp_path / "blob.dat").write_bytes(b"\0\1\2\3")
    for path in (tmp_path / "flat", tmp_path / "blob.dat"):
        with pytest.raises(DataError, match="Accepted: a folder with train.rec"):
            open_dataset(path)
    with pytest.raises(DataError, match=r"missing: not found"):
        open_dataset(tmp_path / "missing")


def test_inspect_folder_statistics_and_corrupt(tmp_path):
    root = make_folder(tmp_path / "faces", {"a": 1, "b": 2, "c": 4}, size=(6, 3))
    (root / "c" / "3.png").write_bytes(b"broken")
    d = inspect(root)
    assert d["format"] == "image_folder" and d["images"] == 7 and d["identities"] == 3
    assert d["images_per_identity"] == {"min": 1, "median": 2.0, "mean": pytest.approx(7 / 3), "max": 4}
    assert d["image_sizes"] == {"3x6": 6}
    assert d["corrupt"] == [str(root / "c" / "3.png")]
    text = format_report(d)
    assert "images:      7" in text and "3.png" in text


def test_inspect_bin(tmp_path):
    path = tmp_path / "v.bin"
    path.write_bytes(pickle.dumps(([png((0, 0, 0))] * 3 + [b"junk"], [True, False]), protocol=2))
    d = inspect(path)
    assert (d["format"], d["images"], d["pairs"], d["positive_pairs"]) == ("verification_bin", 4, 2, 1)
    assert d["corrupt"] == [3] and d["image_sizes"] == {"4x5": 3}

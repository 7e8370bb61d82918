"""Open a training set by path: the layout is detected from what is on disk."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import DataError
from .folders import ImageFolderDataset, ListFileDataset
from .recordio import RecordDataset
from .tfrecord import TFRecordDataset, find_index, looks_like_index


def _is_rec_dir(p: Path) -> bool:
    return p.is_dir() and (p / "train.rec").is_file()


def _is_rec_file(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() == ".rec"


def _is_tfrecord_dir(p: Path) -> bool:
    return p.is_dir() and bool(find_index(p))


def _is_image_folder(p: Path) -> bool:
    return p.is_dir() and any(c.is_dir() and not c.name.startswith(".") for c in p.iterdir())


def is_text_file(p: Path) -> bool:
    """A file whose first 4 KiB are UTF-8 text without NUL bytes."""
    if not p.is_file() or p.suffix.lower() in (".rec", ".idx", ".bin"):
        return False
    with open(p, "rb") as f:
        head = f.read(4096)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:  # a multi-byte character cut at the end of the sample is fine
            return False
    return b"\0" not in head


# (what it looks like, how to open it, how to describe it): first match wins.
LAYOUTS: tuple[tuple[Callable[[Path], bool], Callable, str], ...] = (
    (_is_rec_dir, RecordDataset, "a folder with train.rec/train.idx (InsightFace RecordIO)"),
    (_is_rec_file, RecordDataset, "a .rec file (its .idx beside it)"),
    (_is_tfrecord_dir, TFRecordDataset, "a folder with a TFace index NAME.txt beside NAME/NAME-00000.tfrecord"),
    (looks_like_index, TFRecordDataset, "a TFace index file (tfrecord_name<TAB>shard<TAB>offset<TAB>label lines)"),
    (_is_image_folder, ImageFolderDataset, "an image folder with one sub-folder per identity"),
    (is_text_file, ListFileDataset, "a text list file of 'relative/path label' lines"),
)


def open_dataset(path, skip_corrupt: bool = False):
    """RecordDataset, TFRecordDataset, ImageFolderDataset or ListFileDataset for `path`, chosen by LAYOUTS."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: not found. Check the path.")
    for matches, open_, _ in LAYOUTS:
        if matches(p):
            return open_(p, skip_corrupt=skip_corrupt)
    accepted = "; ".join(desc for _, _, desc in LAYOUTS)
    raise DataError(f"{p}: not a dataset layout facezoo reads. Accepted: {accepted}.")

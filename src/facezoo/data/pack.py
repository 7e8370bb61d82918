"""Write training sets (InsightFace RecordIO, TFace TFRecord, image folder) from folders, list files or another
set, and unpack them back to files.

WRITERS maps an output format to `write(out_dir, groups, load, image_size, names=None, **options) -> summary`, with
groups = [(label, items)] sorted by label and load(item) -> encoded image bytes; each writer reads one image at a
time, so memory does not grow with the set. `names` (label -> identity name) is written as identities.txt
(`label<TAB>name` lines) beside the data.

RecordIO layout written: record 0 = header flag=2 labels [a, b]; image keys 1..a-1 grouped by label (ascending,
stable within a label), each `flag=0, label=class`; identity records a..b-1, record a+c = [first_key, end_key) of
class c (an empty range for a class with no images, so identity index == label); `property` = `num_classes,H,W`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from ..errors import DataError
from ..io import replace_dir, staged_dir
from ..progress import bar, counted, track
from ..registry import Registry
from .datasets import open_dataset
from .folders import folder_samples, list_samples
from .image import decode_image, encode_image, image_ext, resize_image
from .recordio import RecordDataset, RecordIOWriter, pack_record
from .tfrecord import SHARD_SIZE, TFRecordDataset, names_path, read_names, tfrecord_writer, write_names

T = TypeVar("T")
Groups = Sequence[tuple[int, Sequence[T]]]
WRITERS: Registry = Registry("output format")
IDENTITIES_FILE = "identities.txt"
_FLOAT32_EXACT = 1 << 24  # float32 holds every integer up to 2^24


def as_size(image_size) -> tuple[int, int] | None:
    """None, 112, (112, 96) or '112x96' -> (height, width) or None."""
    if image_size is None:
        return None
    if isinstance(image_size, str):
        image_size = [int(v) for v in image_size.lower().split("x")]
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = (int(v) for v in image_size)
    return h, w


def resize_encoded(data: bytes, size: tuple[int, int], quality: int | None, where: str) -> bytes:
    """Bytes unchanged when already `size` (h, w); else decoded, bilinear-resized and JPEG-encoded."""
    image = decode_image(data, where)
    if image.shape[:2] == tuple(size):
        return data
    return encode_image(resize_image(image, size), "jpeg", quality or 95)


def _check_groups(out_dir, groups: Groups) -> tuple[int, int]:
    """(images, num_classes) of (label, items) groups; DataError for bad labels or no images."""
    labels = [label for label, _ in groups]
    if any(not isinstance(c, int) or c < 0 for c in labels):
        raise DataError(f"labels must be non-negative integers, got {sorted(set(labels))[:5]}.")
    n = sum(len(items) for _, items in groups)
    if n == 0:
        raise DataError(f"{out_dir}: nothing to pack (no images).")
    return n, max(labels) + 1


def _summary(out_dir, fmt: str, groups: Groups, n: int, num_classes: int, image_size) -> dict:
    return {
        "out_dir": str(out_dir),
        "format": fmt,
        "images": n,
        "identities": num_classes,
        "nonempty_identities": sum(1 for _, items in groups if len(items)),
        "image_size": list(image_size) if image_size is not None else None,
    }


@WRITERS.register("recordio")
def write_insightface(
    out_dir, groups: Groups, load: Callable[[T], bytes], image_size: tuple[int, int], names=None
) -> dict:
    """Write train.rec/train.idx/property from (label, items) groups; the set replaces out_dir's as a whole
    (io.replace_dir: other files there, such as lfw.bin, are kept)."""
    n, num_classes = _check_groups(out_dir, groups)
    a, b = n + 1, n + 1 + num_classes
    if b > _FLOAT32_EXACT:
        raise DataError(
            f"{n} images + {num_classes} classes exceed 2^24 keys, which float32 labels of the "
            "InsightFace layout cannot address exactly. Split the dataset."
        )
    out_dir = Path(out_dir)
    ranges: dict[int, tuple[int, int]] = {}
    with replace_dir(out_dir) as tmp:
        with RecordIOWriter(tmp / "train.rec", tmp / "train.idx") as w:
            w.write(0, pack_record([a, b], b""))
            key = 1
            for label, items in groups:
                start = key
                for item in items:
                    w.write(key, pack_record(float(label), load(item)))
                    key += 1
                ranges[label] = (start, key)
            for c in range(num_classes):
                w.write(a + c, pack_record(list(ranges.get(c, (a, a))), b""))
        (tmp / "property").write_text(f"{num_classes},{image_size[0]},{image_size[1]}\n")
        if names is not None:
            write_names(tmp / IDENTITIES_FILE, names)
    return _summary(out_dir, "recordio", groups, n, num_classes, image_size)


@WRITERS.register("tfrecord")
def write_tfrecord(
    out_dir,
    groups: Groups,
    load: Callable[[T], bytes],
    image_size=None,
    names=None,
    *,
    name: str | None = None,
    shard_size: int = SHARD_SIZE,
) -> dict:
    """Write TFace shards NAME/NAME-%05d.tfrecord of `shard_size` records + index NAME.txt into `out_dir` (new or
    empty); the whole set appears at once (staged folder renamed into place)."""
    n, num_classes = _check_groups(out_dir, groups)
    with tfrecord_writer(out_dir, name, shard_size) as w:
        for label, items in groups:
            for item in items:
                w.write(load(item), label)
        if names is not None:
            write_names(names_path(w.folder / f"{w.name}.txt"), names)
    result = _summary(out_dir, "tfrecord", groups, n, num_classes, image_size)
    result.update(name=w.name, shards=w.shards, index=str(Path(out_dir) / f"{w.name}.txt"))
    return result


@WRITERS.register("folder")
def write_folder(out_dir, groups: Groups, load: Callable[[T], bytes], image_size=None, names=None) -> dict:
    """Write out_dir/<identity>/<n>.<ext> (new or empty folder, appearing at once).

    Folders are named after the identities when their names are distinct plain names already in label order (so
    that ImageFolderDataset, which numbers sorted folder names, gives back the same labels); otherwise after the
    zero-padded labels, with the names in identities.txt.
    """
    n, num_classes = _check_groups(out_dir, groups)
    width = len(str(num_classes - 1))
    plain = names is not None and list(names) == sorted(set(names)) and all(_plain_name(x) for x in names)
    with staged_dir(out_dir) as tmp:
        for label, items in groups:
            folder = tmp / (names[label] if plain else f"{label:0{width}d}")
            folder.mkdir(parents=True, exist_ok=True)
            for i, item in enumerate(items):
                data = load(item)
                (folder / f"{i:06d}.{image_ext(data)}").write_bytes(data)
        if names is not None and not plain:
            write_names(tmp / IDENTITIES_FILE, names)
    return _summary(out_dir, "folder", groups, n, num_classes, image_size)


def _plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and not name.startswith(".") and "/" not in name and "\\" not in name


def write_set(fmt: str, out_dir, groups: Groups, load: Callable[[T], bytes], image_size, names=None, **options):
    """Write a set in output format `fmt` (a WRITERS name); `options` are that writer's own keywords."""
    return WRITERS.create(fmt, out_dir=out_dir, groups=groups, load=load, image_size=image_size, names=names, **options)


def pack_encoded(items: Iterable[tuple[int, bytes]], out_dir, image_size=(112, 112)) -> dict:
    """Pack already-encoded images given as (label, bytes), any label order (grouped by label, stable)."""
    by_label: dict[int, list[bytes]] = defaultdict(list)
    for label, data in items:
        by_label[int(label)].append(data)
    groups = sorted(by_label.items())
    return write_insightface(out_dir, groups, lambda data: data, as_size(image_size))


def pack(src, out_dir, *, image_size=None, quality: int | None = None, format: str = "recordio", **options) -> dict:
    """Pack an identity-per-folder tree or a `path label` list file into `out_dir` in `format` (WRITERS):
    recordio (train.rec, train.idx, property), tfrecord (NAME.txt + NAME/ shards) or folder.

    Image bytes are stored unchanged; with `image_size` ((h, w) or int) images of another size are resized
    (bilinear) and re-encoded as JPEG at `quality` (default 95). `options` go to the writer (tfrecord: name,
    shard_size).
    """
    src = Path(src)
    if not src.exists():
        raise DataError(f"{src}: not found. Give an image folder (one sub-folder per identity) or a list file.")
    samples = folder_samples(src) if src.is_dir() else list_samples(src)
    if not samples:
        raise DataError(
            f"{src}: no images found to pack. Give an image folder (one sub-folder per identity) or a list file."
        )
    by_label: dict[int, list[Path]] = defaultdict(list)
    for path, label in samples:
        by_label[label].append(path)
    groups = sorted(by_label.items())
    size = as_size(image_size)

    def load(path: Path) -> bytes:
        try:
            data = path.read_bytes()
        except OSError as e:
            raise DataError(f"{path}: cannot read image: {e.strerror}. Fix the path or remove it.") from None
        return resize_encoded(data, size, quality, str(path)) if size else data

    recorded = size  # the size `property` states; without image_size, the first image's (bytes stay unchanged)
    if recorded is None:
        first = samples[0][0]
        recorded = decode_image(load(first), str(first)).shape[:2]
    names = sorted({p.parent.name for p, _ in samples}) if src.is_dir() else None
    with bar(len(samples), "pack", "img") as pbar:
        result = write_set(format, out_dir, groups, counted(load, pbar), recorded, names, **options)
    result["source"] = str(src)
    return result


def _groups_of(ds) -> list[tuple[int, list[int]]]:
    """[(label, sample indices)] of a dataset, labels ascending, index order kept within a label."""
    order = sorted(range(len(ds)), key=lambda i: int(ds.labels[i]))
    groups: dict[int, list[int]] = {}
    for i in order:
        groups.setdefault(int(ds.labels[i]), []).append(i)
    return list(groups.items())


def convert(src, out_dir, format: str, **options) -> dict:
    """Rewrite any set open_dataset reads (RecordIO, TFRecord, folder, list) in output `format`, image bytes
    unchanged, one image in memory at a time. Identity names (identities.txt or folder names) are carried over."""
    ds = open_dataset(src)
    if len(ds) == 0:
        raise DataError(f"{src}: no images to convert.")
    image_size = getattr(ds, "image_size", None) or decode_image(ds.read_encoded(0), ds.where(0)).shape[:2]
    names = getattr(ds, "classes", None) or read_names(_folder(src) / IDENTITIES_FILE, ds.num_classes)
    with bar(len(ds), "convert", "img") as pbar:
        result = write_set(
            format, out_dir, _groups_of(ds), counted(ds.read_encoded, pbar), tuple(image_size), names, **options
        )
    result["source"] = str(src)
    return result


def _folder(src) -> Path:
    p = Path(src)
    return p if p.is_dir() else p.parent


def unpack(src, out_dir) -> int:
    """Write every image of a RecordIO or TFRecord set, bytes unchanged, to out_dir/<label>/<id>.<ext> (id: the
    record key, or the position in a TFRecord index); returns the image count."""
    ds = open_dataset(src)
    if not isinstance(ds, (RecordDataset, TFRecordDataset)):
        raise DataError(f"{src}: unpack reads RecordIO (train.rec) or TFRecord (NAME.txt + shards) sets.")
    with staged_dir(out_dir) as tmp:
        for i in track(range(len(ds)), len(ds), "unpack", "img"):
            data = ds.read_encoded(i)
            folder = tmp / str(int(ds.labels[i]))
            folder.mkdir(exist_ok=True)
            (folder / f"{ds.sample_id(i)}.{image_ext(data)}").write_bytes(data)
    return len(ds)

"""Pack image folders / list files into InsightFace RecordIO, and unpack it back to files.

Layout written: record 0 = header flag=2 labels [a, b]; image keys 1..a-1 grouped by label (ascending, stable
within a label), each `flag=0, label=class`; identity records a..b-1, record a+c = [first_key, end_key) of class c
(an empty range for a class with no images, so identity index == label); `property` = `num_classes,H,W`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from ..errors import DataError
from ..io import atomic_dir, staged_dir
from .folders import folder_samples, list_samples
from .image import decode_image, encode_image, image_ext, resize_image
from .recordio import RecordDataset, RecordIOWriter, pack_record

T = TypeVar("T")
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


def write_insightface(
    out_dir, groups: Sequence[tuple[int, Sequence[T]]], load: Callable[[T], bytes], image_size: tuple[int, int]
) -> dict:
    """Write train.rec/train.idx/property atomically from (label, items) groups sorted by label."""
    labels = [label for label, _ in groups]
    if any(not isinstance(c, int) or c < 0 for c in labels):
        raise DataError(f"labels must be non-negative integers, got {sorted(set(labels))[:5]}.")
    n = sum(len(items) for _, items in groups)
    if n == 0:
        raise DataError(f"{out_dir}: nothing to pack (no images).")
    num_classes = max(labels) + 1
    a, b = n + 1, n + 1 + num_classes
    if b > _FLOAT32_EXACT:
        raise DataError(
            f"{n} images + {num_classes} classes exceed 2^24 keys, which float32 labels of the "
            "InsightFace layout cannot address exactly. Split the dataset."
        )
    out_dir = Path(out_dir)
    ranges: dict[int, tuple[int, int]] = {}
    with atomic_dir(out_dir) as tmp:
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
    return {
        "out_dir": str(out_dir),
        "images": n,
        "identities": num_classes,
        "nonempty_identities": sum(1 for _, items in groups if len(items)),
        "image_size": list(image_size),
    }


def pack_encoded(items: Iterable[tuple[int, bytes]], out_dir, image_size=(112, 112)) -> dict:
    """Pack already-encoded images given as (label, bytes), any label order (grouped by label, stable)."""
    by_label: dict[int, list[bytes]] = defaultdict(list)
    for label, data in items:
        by_label[int(label)].append(data)
    groups = sorted(by_label.items())
    return write_insightface(out_dir, groups, lambda data: data, as_size(image_size))


def pack(src, out_dir, *, image_size=None, quality: int | None = None) -> dict:
    """Pack an identity-per-folder tree or a `path label` list file into out_dir/train.rec, train.idx, property.

    Image bytes are stored unchanged; with `image_size` ((h, w) or int) images of another size are resized
    (bilinear) and re-encoded as JPEG at `quality` (default 95).
    """
    src = Path(src)
    if not src.exists():
        raise DataError(f"{src}: not found. Give an image folder (one sub-folder per identity) or a list file.")
    samples = folder_samples(src) if src.is_dir() else list_samples(src)
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

    if size is None:
        first = samples[0][0]
        size = decode_image(load(first), str(first)).shape[:2]
    result = write_insightface(out_dir, groups, load, size)
    result["source"] = str(src)
    return result


def unpack(rec_dir, out_dir) -> int:
    """Write every image record's bytes unchanged to out_dir/<label>/<key>.<ext>; returns the image count."""
    ds = RecordDataset(rec_dir)
    with staged_dir(out_dir) as tmp:
        for i in range(len(ds)):
            data = ds.read_encoded(i)
            folder = tmp / str(int(ds.labels[i]))
            folder.mkdir(exist_ok=True)
            (folder / f"{ds.sample_id(i)}.{image_ext(data)}").write_bytes(data)
    return len(ds)

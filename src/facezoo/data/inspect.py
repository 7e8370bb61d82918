"""Summarise a dataset on disk: counts, images per identity, image sizes, corrupt records."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import DataError
from .datasets import open_dataset
from .folders import ImageFolderDataset, ListFileDataset
from .image import decode_image
from .recordio import RecordDataset
from .tfrecord import TFRecordDataset
from .verification_bin import read_bin

_FORMATS = (
    (RecordDataset, "recordio"),
    (TFRecordDataset, "tfrecord"),
    (ImageFolderDataset, "image_folder"),
    (ListFileDataset, "list_file"),
)


def _scan(n: int, read, name, scan: bool, sample: int) -> tuple[dict[str, int], list]:
    """Decode every image (scan) or an even sample of them: ({'HxW': count}, ids of corrupt images)."""
    indices = range(n) if scan else np.unique(np.linspace(0, n - 1, min(n, sample)).astype(int)).tolist()
    sizes, corrupt = Counter(), []
    for i in indices:
        try:
            h, w = decode_image(read(i), where=str(name(i))).shape[:2]
            sizes[f"{h}x{w}"] += 1
        except DataError:
            corrupt.append(name(i))
    return dict(sizes.most_common()), corrupt


def _stats(counts: np.ndarray) -> dict[str, float]:
    if len(counts) == 0:
        return {"min": 0, "median": 0.0, "mean": 0.0, "max": 0}
    return {
        "min": int(counts.min()),
        "median": float(np.median(counts)),
        "mean": float(counts.mean()),
        "max": int(counts.max()),
    }


def _inspect_bin(path: Path, scan: bool, sample: int) -> dict:
    images, issame = read_bin(path)
    sizes, corrupt = _scan(len(images), images.__getitem__, lambda i: i, scan, sample)
    return {
        "path": str(path),
        "format": "verification_bin",
        "images": len(images),
        "pairs": len(issame),
        "positive_pairs": int(issame.sum()),
        "identities": None,
        "image_sizes": sizes,
        "corrupt": corrupt,
        "scanned": scan,
    }


def inspect(path, *, scan: bool = True, sample: int = 16) -> dict:
    """Counts, identities, images-per-identity (min/median/mean/max), image sizes and corrupt images of `path`.

    `scan=True` decodes every image (reports all corrupt ones; minutes for millions of images); otherwise sizes
    come from `sample` evenly spaced images and only those are checked.
    """
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".bin":
        return _inspect_bin(path, scan, sample)
    ds = open_dataset(path)
    fmt = next(name for cls, name in _FORMATS if isinstance(ds, cls))
    counts = np.bincount(ds.labels, minlength=ds.num_classes)
    sizes, corrupt = _scan(len(ds), ds.read_encoded, ds.where if fmt == "tfrecord" else ds.sample_id, scan, sample)
    extra = {"shards": len(ds.shard_files), "index": str(ds.index_path)} if fmt == "tfrecord" else {}
    return {
        "path": str(path),
        "format": fmt,
        "images": len(ds),
        "identities": int(ds.num_classes),
        "empty_identities": int((counts == 0).sum()),
        "images_per_identity": _stats(counts),
        "image_sizes": sizes,
        "corrupt": corrupt,
        "scanned": scan,
        **extra,
    }


def format_report(d: dict) -> str:
    """Human-readable lines for an `inspect` result."""
    lines = [f"{d['path']} ({d['format']})", f"  images:      {d['images']}"]
    if d.get("pairs") is not None:
        lines.append(
            f"  pairs:       {d['pairs']} ({d['positive_pairs']} same, {d['pairs'] - d['positive_pairs']} different)"
        )
    if d.get("identities") is not None:
        s = d["images_per_identity"]
        lines.append(
            f"  identities:  {d['identities']}" + (f" ({d['empty_identities']} empty)" if d["empty_identities"] else "")
        )
        lines.append(f"  per identity: min {s['min']}, median {s['median']:g}, mean {s['mean']:.2f}, max {s['max']}")
    sizes = ", ".join(f"{k} ({v})" for k, v in d["image_sizes"].items()) or "none decoded"
    lines.append(f"  image sizes: {sizes}" + ("" if d["scanned"] else " (sample)"))
    bad = d["corrupt"]
    shown = ", ".join(str(c) for c in bad[:10]) + (f", ... ({len(bad) - 10} more)" if len(bad) > 10 else "")
    lines.append(
        f"  corrupt:     {len(bad)}" + (f": {shown}" if bad else "") + ("" if d["scanned"] else " (in the sample)")
    )
    return "\n".join(lines)

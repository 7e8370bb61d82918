"""Aligned face crops for post-training quantisation and precision parity: a calibration set and a held-out set.

Sources, read through facezoo's readers: an InsightFace verification .bin (its distinct images: a .bin repeats
images across pairs, so held-out crops would otherwise also be calibration crops; pairs ignored), any training
set `facezoo.data.datasets.open_dataset` opens (RecordIO folder or .rec, TFRecord index, identity folders, list
file), a flat folder of aligned crops, or a uint8 (N, H, W, 3) RGB array (Python callers, tests).

Which images: `count + holdout` distinct indices drawn without replacement by numpy's default_rng(seed) (so they
spread over identities, not the first few folders), the first `count` for calibration and the rest held out.
Only the drawn images are decoded (memory: (count + holdout) x H x W x 3 bytes), each resized bilinearly to the
model's input size when it differs, as evaluation does. A source with fewer images keeps at least one held out
(a quarter of what it has, at most `holdout`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.image import decode_image, resize_image
from ..errors import ConfigError, DataError


@dataclass
class FaceSets:
    """uint8 (n, H, W, 3) RGB crops: `calibration` and `holdout`, and where they came from."""

    calibration: np.ndarray
    holdout: np.ndarray
    source: str


def _flat_images(root: Path) -> list[Path]:
    from ..data.folders import is_image_file

    return sorted(p for p in root.iterdir() if is_image_file(p))


def _encoded_reader(source) -> tuple[int, object, str]:
    """(number of images, read(i) -> (bytes, where), description) for a path."""
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: calibration data not found. Give a .bin, a RecordIO / TFRecord set or a folder.")
    if path.is_file() and path.suffix.lower() == ".bin":
        from ..data.verification_bin import read_bin

        images, _ = read_bin(path)
        first: dict[bytes, int] = {}  # a .bin repeats images across pairs: each distinct one once
        for i, data in enumerate(images):
            first.setdefault(hashlib.sha1(data).digest(), i)
        keep = sorted(first.values())
        what = f"{path} (verification .bin, {len(keep)} distinct images)"
        return len(keep), lambda i: (images[keep[i]], f"{path}: image {keep[i]}"), what
    if path.is_dir():
        flat = _flat_images(path)
        if flat:
            return len(flat), lambda i: (flat[i].read_bytes(), str(flat[i])), f"{path} (folder of crops)"
    from ..data.datasets import open_dataset

    ds = open_dataset(path)
    return len(ds), lambda i: (ds.read_encoded(i), ds.where(i)), f"{path} ({type(ds).__name__})"


def split_sizes(available: int, count: int, holdout: int) -> tuple[int, int]:
    """(calibration, held-out) sizes for a source of `available` images (see the module doc)."""
    if available < 2:
        raise DataError(f"the calibration data has {available} image(s); at least 2 are needed (one held out).")
    if available >= count + holdout:
        return count, holdout
    held = max(1, min(holdout, available // 4))
    return min(count, available - held), held


def _check_counts(count, holdout) -> None:
    for name, v in (("calibration images", count), ("held-out images", holdout)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"the number of {name} must be a positive int, got {v!r} (--calibration-images).")


def face_sets(source, input_size, count: int = 256, holdout: int = 256, seed: int = 0) -> FaceSets:
    """Calibration and held-out crops at input_size (H, W) from `source` (see the module doc)."""
    _check_counts(count, holdout)
    size = tuple(int(v) for v in input_size)
    rng = np.random.default_rng(seed)
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim != 4 or source.shape[-1] != 3:
            raise ConfigError(f"calibration images must be uint8 (N, H, W, 3) RGB, got {source.dtype} {source.shape}.")
        n_cal, n_hold = split_sizes(len(source), count, holdout)
        picked = source[rng.choice(len(source), n_cal + n_hold, replace=False)]
        if picked.shape[1:3] != size:
            picked = np.stack([resize_image(np.ascontiguousarray(im), size) for im in picked])
        return FaceSets(picked[:n_cal], picked[n_cal:], f"array of {len(source)} images")
    n, read, what = _encoded_reader(source)
    n_cal, n_hold = split_sizes(n, count, holdout)
    out = np.empty((n_cal + n_hold, *size, 3), np.uint8)
    for k, i in enumerate(rng.choice(n, n_cal + n_hold, replace=False)):
        data, where = read(int(i))
        out[k] = resize_image(decode_image(data, where=where), size)
    return FaceSets(out[:n_cal], out[n_cal:], what)


def random_faces(input_size, count: int, holdout: int, seed: int = 0) -> FaceSets:
    """Uniform random uint8 crops: the parity sets of an fp16 export given no data (not faces; a weaker test)."""
    _check_counts(count, holdout)
    rng = np.random.default_rng(seed)
    h, w = input_size
    images = rng.integers(0, 256, (count + holdout, h, w, 3), dtype=np.uint8)
    return FaceSets(images[:count], images[count:], "random uint8 images (no --calibrate data)")

"""Verification pair sets in InsightFace's `.bin` format: a pickle of (bins, issame_list).

`bins` holds 2N encoded images, pair i = (bins[2i], bins[2i+1]); `issame_list` N booleans. Files are read with a
restricted unpickler that refuses every global except the few that byte strings and numpy arrays need, so a
crafted file cannot run code. Python-2 files store images as `str`: they are unpickled as latin-1 text and turned
back into the identical bytes (latin-1 maps bytes 0..255 one to one; numpy's Python-2 pickles also need latin-1).
"""

from __future__ import annotations

import codecs
import io
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_write, staged_dir
from ..progress import track
from .image import decode_image, image_ext, resize_image

try:
    from numpy._core import multiarray as _multiarray
except ImportError:  # numpy < 2
    from numpy.core import multiarray as _multiarray


def _latin1_encode(obj, encoding="utf-8", errors="strict"):
    """`_codecs.encode` as protocol-2 pickles of bytes use it: only (text, 'latin1')."""
    if not isinstance(obj, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode({type(obj).__name__}, {encoding!r}) is not allowed")
    return obj.encode("latin-1", errors)


def _no_allocation(kind):
    """`bytes` / `bytearray` as pickles of byte strings call them: from data (bytes, or text + encoding) only.

    bytes(n) / bytearray(n) with an int would allocate n zero bytes from a file of a few bytes: refused.
    """

    def build(*args):
        if args and not isinstance(args[0], (bytes, bytearray, str)):
            raise pickle.UnpicklingError(f"{kind.__name__}({type(args[0]).__name__}) is not allowed")
        return kind(*args)

    return build


def _bounded_reconstruct(limit: int):
    """numpy's array re-creation, refusing a shape larger than the file itself could fill (`limit` bytes)."""

    def build(cls, shape, dtype):
        size = np.prod(np.asarray(shape, dtype=np.float64)) * np.dtype(dtype).itemsize
        if cls is not np.ndarray or not size <= limit:
            raise pickle.UnpicklingError(f"array of shape {shape!r} is larger than the file")
        return _multiarray._reconstruct(cls, shape, dtype)

    return build


def _allowed(limit: int) -> dict:
    reconstruct = _bounded_reconstruct(limit)
    return {
        ("_codecs", "encode"): _latin1_encode,
        ("builtins", "bytes"): _no_allocation(bytes),
        ("__builtin__", "bytes"): _no_allocation(bytes),
        ("builtins", "bytearray"): _no_allocation(bytearray),
        ("__builtin__", "bytearray"): _no_allocation(bytearray),
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
        ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
    }


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits lists, tuples, bytes, bools, numbers and numpy arrays/scalars; refuses every other global, and any
    constructor call that would allocate more than the pickle's own `data` holds."""

    def __init__(self, data: bytes, **kw):
        super().__init__(io.BytesIO(data), **kw)
        self.allowed = _allowed(len(data))

    def find_class(self, module: str, name: str):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global '{module}.{name}'") from None


def _as_bytes(item, path, i: int) -> bytes:
    if isinstance(item, (bytes, bytearray)):
        return bytes(item)
    if isinstance(item, str):
        return item.encode("latin-1")
    if isinstance(item, np.ndarray) and item.dtype == np.uint8:
        return item.tobytes()
    raise DataError(
        f"{path}: image {i} is a {type(item).__name__}, expected encoded image bytes. Not a verification .bin file."
    )


def read_bin(path) -> tuple[list[bytes], np.ndarray]:
    """(2N encoded images, bool issame of N) from a .bin; DataError naming the file if it is not one.

    Unpickling is restricted (no code runs), but only read files from a source you trust.
    """
    path = Path(path)
    try:
        obj = _RestrictedUnpickler(path.read_bytes(), encoding="latin1").load()
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}. Check the path.") from None
    except Exception as e:  # a malformed pickle raises many kinds
        raise DataError(
            f"{path}: not a verification .bin (pickle of (images, issame)): {type(e).__name__}: {e}."
        ) from None
    if not isinstance(obj, (tuple, list)) or len(obj) != 2 or not isinstance(obj[0], (list, tuple, np.ndarray)):
        raise DataError(
            f"{path}: expected a pickled (images, issame) pair, found {type(obj).__name__}"
            f"{f' of length {len(obj)}' if isinstance(obj, (tuple, list)) else ''}."
        )
    images = [_as_bytes(item, path, i) for i, item in enumerate(obj[0])]
    issame = _as_issame(obj[1], path)
    if len(images) != 2 * len(issame):
        raise DataError(f"{path}: {len(images)} images for {len(issame)} pairs; a .bin needs 2 images per pair.")
    if len(issame) == 0:
        raise DataError(f"{path}: holds no pairs.")
    return images, issame


def _as_issame(value, path) -> np.ndarray:
    """The issame labels as a bool (N,) array: a list/tuple/array of bools or 0/1 numbers, nothing else."""
    if isinstance(value, np.ndarray):
        items = value.reshape(-1).tolist() if value.dtype.kind in "biu" else None
    else:
        items = list(value) if isinstance(value, (list, tuple)) else None
    if items is None or not all(isinstance(v, (bool, np.bool_, int, np.integer)) and v in (0, 1) for v in items):
        what = type(value).__name__ if items is None else "values other than booleans"
        raise DataError(f"{path}: issame holds {what}; a verification .bin needs a list of N booleans.")
    return np.asarray(items, dtype=bool)


def write_bin(path, images: Sequence[bytes], issame: Sequence[bool]) -> None:
    """Write InsightFace's layout, (list of bytes, list of bool), pickle protocol 4, atomically."""
    images = [bytes(b) for b in images]
    issame = [bool(s) for s in issame]
    if len(images) != 2 * len(issame):
        raise DataError(f"{path}: {len(images)} images for {len(issame)} pairs; need exactly 2 images per pair.")
    with atomic_write(path, "wb") as f:
        pickle.dump((images, issame), f, protocol=4)


def unpack_bin(path, out_dir) -> int:
    """Write images unchanged as out_dir/<index>.<ext> (0-padded) and out_dir/pairs.txt (`name1 name2 1|0`)."""

    images, issame = read_bin(path)
    width = len(str(max(len(images) - 1, 0)))
    names = [f"{i:0{width}d}.{image_ext(data)}" for i, data in enumerate(images)]
    with staged_dir(out_dir) as tmp:
        for name, data in zip(names, images):
            (tmp / name).write_bytes(data)
        lines = [f"{names[2 * i]} {names[2 * i + 1]} {int(same)}\n" for i, same in enumerate(issame)]
        (tmp / "pairs.txt").write_text("".join(lines))
    return len(images)


def load_bin_images(path, image_size=(112, 112)) -> tuple[np.ndarray, np.ndarray]:
    """Decoded uint8 (2N, H, W, 3) RGB images, bilinear-resized to image_size (h, w) when different, and issame."""
    images, issame = read_bin(path)
    h, w = image_size
    out = np.empty((len(images), h, w, 3), dtype=np.uint8)
    for i, data in enumerate(track(images, len(images), f"decoding {Path(path).name}", "img")):
        out[i] = resize_image(decode_image(data, where=f"{path}: image {i}"), (h, w))
    return out, issame

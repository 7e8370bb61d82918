"""Embedding arrays as the gallery takes them: (N, D) float32 rows, checked and L2-normalised."""

from __future__ import annotations

import numpy as np
import torch

from ...errors import ConfigError, DataError


def as_matrix(x, what: str) -> np.ndarray:
    """A (N, D) float32 array from a (N, D) or (D,) array/tensor."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise DataError(f"{what} must be an array of shape (N, D) or (D,), got shape {tuple(np.shape(x))}.")
    return arr


def normalise(arr: np.ndarray, what: str) -> np.ndarray:
    """Rows divided by their L2 norm; DataError naming the first NaN/inf or zero row."""
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise DataError(f"{what}: row {row} contains NaN or infinite values; re-embed that face (was it detected?).")
    norms = np.linalg.norm(arr.astype(np.float64), axis=1)
    if (norms == 0).any():
        row = int(np.flatnonzero(norms == 0)[0])
        raise DataError(f"{what}: row {row} is an all-zero vector, which has no direction; re-embed that face.")
    return np.ascontiguousarray(arr / norms[:, None].astype(np.float32), dtype=np.float32)


def check_identity(name) -> str:
    """`name` when it is a usable identity: a non-empty string of at most 256 characters, encodable as UTF-8 (no
    lone surrogates) and without control characters; ConfigError otherwise."""
    if not isinstance(name, str) or not name.strip() or len(name) > 256:
        raise ConfigError(f"identity must be a non-empty string of at most 256 characters, got {name!r:.80}.")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(
            f"identity {name!r:.80} is not valid Unicode text (a lone surrogate); fix its encoding."
        ) from None
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ConfigError(f"identity {name!r:.80} contains control characters; use printable text.")
    return name


def decode_rows(blobs: list[bytes], d: int, where: str, rows: list[tuple]) -> np.ndarray:
    """Stored vector blobs -> (N, d) float32, each checked to be d little-endian float32 values, finite, and of unit
    norm (stored normalised, so |norm - 1| <= 1e-3); DataError naming the first damaged entry (rows[i] is its
    (entry id, identity)) and the fix."""
    bad = next((i for i, b in enumerate(blobs) if len(b) != 4 * d), None)
    if bad is not None:
        _damaged(where, rows[bad], f"{len(blobs[bad])} bytes where {d} float32 values take {4 * d}")
    arr = np.frombuffer(b"".join(blobs), dtype="<f4").astype(np.float32).reshape(len(blobs), d)
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        _damaged(where, rows[int(np.flatnonzero(~finite)[0])], "NaN or infinite values")
    norms = np.linalg.norm(arr.astype(np.float64), axis=1)
    off = np.abs(norms - 1.0) > 1e-3
    if off.any():
        i = int(np.flatnonzero(off)[0])
        _damaged(where, rows[i], f"norm {norms[i]:.6g} where stored vectors have norm 1")
    return arr


def _damaged(where: str, row: tuple, reason: str):
    entry, identity = row
    raise DataError(
        f"{where}: entry {entry} of identity '{identity}' has a damaged vector ({reason}); the gallery was changed "
        f"outside facezoo or corrupted. Remove that identity (`facezoo gallery remove {where} '{identity}'`) and "
        "enroll it again, or restore the gallery from a backup."
    )


def unknown_identity(where: str, identity: str, names: list[str]) -> ConfigError:
    """The error for an identity that is not enrolled, naming the closest enrolled name when one is close."""
    import difflib

    close = difflib.get_close_matches(str(identity), names, n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else f" `facezoo gallery list {where}` lists the enrolled names."
    return ConfigError(f"{where}: no identity '{identity}' in the gallery.{hint}")

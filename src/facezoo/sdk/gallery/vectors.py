"""Embedding arrays as the gallery takes them: (N, D) float32 rows, checked and L2-normalised."""

from __future__ import annotations

import numpy as np
import torch

from ...errors import DataError


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

"""The 1-D Wasserstein-1 distance between two samples (their empirical distributions), as SDD-FIQA's labels use it.

W1(u, v) = integral over x of |F_u(x) - F_v(x)| dx, F the empirical CDFs (each point of a sample weighs 1 / its size),
scipy.stats.wasserstein_distance's definition. For two samples of the same size k it is the mean absolute difference
of the sorted samples, W1 = (1/k) sum_i |u_(i) - v_(i)|, which `wasserstein_equal` computes for whole batches.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import DataError


def wasserstein_1d(u, v) -> float:
    """W1 between samples u and v of any sizes (float64): the area between their empirical CDFs."""
    u = np.asarray(u, np.float64).reshape(-1)
    v = np.asarray(v, np.float64).reshape(-1)
    if u.size == 0 or v.size == 0:
        raise DataError(f"the Wasserstein distance needs two non-empty samples, got sizes {u.size} and {v.size}")
    if not (np.isfinite(u).all() and np.isfinite(v).all()):
        raise DataError("the Wasserstein distance of samples holding NaN or inf is undefined")
    u, v = np.sort(u), np.sort(v)
    grid = np.concatenate([u, v])
    grid.sort(kind="mergesort")
    widths = np.diff(grid)
    cdf_u = np.searchsorted(u, grid[:-1], side="right") / u.size
    cdf_v = np.searchsorted(v, grid[:-1], side="right") / v.size
    return float(np.sum(np.abs(cdf_u - cdf_v) * widths))


def wasserstein_equal(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """W1 of each pair of equal-size samples along the last dimension: a (..., k), b (..., k) -> (...), mean |a_(i) -
    b_(i)| of the sorted samples (broadcast over the leading dimensions)."""
    if a.shape[-1] != b.shape[-1] or a.shape[-1] == 0:
        raise DataError(f"equal-size samples needed, got sizes {a.shape[-1]} and {b.shape[-1]}")
    return (a.sort(dim=-1).values - b.sort(dim=-1).values).abs().mean(dim=-1)
